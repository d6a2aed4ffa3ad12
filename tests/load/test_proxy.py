"""The link proxy through which a load run's latency, loss and partitions act."""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from loadtest.faults import Links, LoadFaults, Window, links_needed
from loadtest.proxy import DOWN, LinkProxy
from scenarios.fault_specs import Latency, Loss, Partition

DEADLINE = 30.0


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    """A TCP echo server on 127.0.0.1."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    done = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    def accept() -> None:
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()
    done.set()
    thread.join(5)
    server.close()


def connect(proxy: LinkProxy) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", proxy.port), timeout=DEADLINE)
    return conn


def round_trip(conn: socket.socket, data: bytes) -> float:
    started = time.monotonic()
    conn.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = conn.recv(65536)
        assert chunk, "the connection closed"
        got += chunk
    assert got == data
    return time.monotonic() - started


def test_bytes_pass_both_ways_in_order(echo: tuple[str, int]) -> None:
    with LinkProxy("t", echo, random.Random(1)) as proxy, connect(proxy) as conn:
        payload = bytes(range(256)) * 1000
        round_trip(conn, payload)
        assert proxy.counters.connections == 1


def test_latency_is_added_each_way_and_removed_with_the_window(echo: tuple[str, int]) -> None:
    with LinkProxy("t", echo, random.Random(1)) as proxy, connect(proxy) as conn:
        proxy.add_latency(0.1)
        proxy.add_latency(0.05)  # overlapping windows add up
        assert round_trip(conn, b"ping") >= 2 * 0.15
        proxy.remove_latency(0.1)
        proxy.remove_latency(0.05)
        round_trip(conn, b"pong")  # still open, nothing held back for good


def test_loss_cuts_the_connection_and_counts_it(echo: tuple[str, int]) -> None:
    with LinkProxy("t", echo, random.Random(1)) as proxy:
        proxy.add_loss(1.0)
        with connect(proxy) as conn:
            conn.sendall(b"lost")
            with contextlib.suppress(ConnectionResetError):  # reset, or ...
                assert conn.recv(10) == b""  # ... closed without an answer
        assert proxy.counters.cut == 1
        proxy.remove_loss(1.0)
        with connect(proxy) as conn:
            round_trip(conn, b"after")


def test_a_partition_holds_one_direction_until_it_heals(echo: tuple[str, int]) -> None:
    with LinkProxy("t", echo, random.Random(1)) as proxy, connect(proxy) as conn:
        proxy.hold(DOWN)
        conn.sendall(b"held")
        conn.settimeout(0.3)
        with pytest.raises(TimeoutError):
            conn.recv(10)
        conn.settimeout(DEADLINE)
        proxy.release(DOWN)
        assert conn.recv(10) == b"held"  # delivered on healing, as TCP retransmits would
        assert proxy.counters.held == 1


def _window(fault: object) -> Window:
    return Window(0.0, fault)  # type: ignore[arg-type]


def test_only_the_links_the_faults_need_are_proxied() -> None:
    latency = _window(Latency(kind="latency", extra=0.05))
    loss = _window(Loss(kind="loss", probability=0.1))
    to_ledger = _window(Partition(kind="partition", between=["payments-1", "ledger"]))
    zones = _window(Partition(kind="partition", between=["a", "b"]))
    assert links_needed([], postgres=True) == (False, False)
    assert links_needed([latency], postgres=True) == (True, True)
    assert links_needed([latency], postgres=False) == (True, False)
    assert links_needed([loss], postgres=True) == (True, False)
    assert links_needed([to_ledger], postgres=True) == (False, True)
    assert links_needed([zones], postgres=True) == (False, False)


class _System:
    store_url = "sqlite:///x.db"


def test_a_partition_of_a_link_not_proxied_is_listed_as_not_applied(echo: tuple[str, int]):
    with LinkProxy("clients", echo, random.Random(1)) as clients:
        faults = LoadFaults(_System(), [], 0.0, random.Random(1), Links(clients=clients))  # type: ignore[arg-type]
        target, detail, _ = faults._open(Partition(kind="partition", between=["ledger", "a"]))
        assert detail == "not applied: services<->ledger is not proxied in this run"
        target, detail, _ = faults._open(Partition(kind="partition", between=["a", "b"]))
        assert detail.startswith("not applied: a partition in a load run cuts clients<->gateway")
        target, detail, heal = faults._open(
            Partition(kind="partition", between=["gateway", "clients"], one_way=True)
        )
        assert (target, detail) == ("gateway->clients", "one-way")
        with connect(clients) as conn:
            conn.sendall(b"x")
            conn.settimeout(0.3)
            with pytest.raises(TimeoutError):
                conn.recv(1)
            heal()
            conn.settimeout(DEADLINE)
            assert conn.recv(1) == b"x"


class _TwoWorkers:
    store_url = "postgresql://x/y"
    processes = {"gateway": None, "payments-1": None, "payments-2": None, "settlement": None}


def _answers(conn: socket.socket) -> bool:
    """Whether the echo behind `conn`'s link answers (waited for, within the deadline)."""
    conn.sendall(b"?")
    return conn.recv(1) == b"?"


def _held(conn: socket.socket, link: LinkProxy) -> bool:
    """Whether `link` holds what `conn` sends: its held count goes up (waited for) and nothing
    comes back. A count, not a timeout, so that a slow machine cannot make a held link of one
    that is only slow."""
    before = link.counters.held
    conn.sendall(b"?")
    deadline = time.monotonic() + DEADLINE
    while link.counters.held == before:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    conn.setblocking(False)
    try:
        conn.recv(1)
        return False
    except BlockingIOError:
        return True
    finally:
        conn.settimeout(DEADLINE)


def test_a_partition_from_the_ledger_cuts_only_the_named_process_link(
    echo: tuple[str, int],
) -> None:
    with contextlib.ExitStack() as stack:
        database = {
            n: stack.enter_context(LinkProxy(f"{n}<->ledger", echo, random.Random(1)))
            for n in ("payments-1", "payments-2", "settlement")
        }
        faults = LoadFaults(_TwoWorkers(), [], 0.0, random.Random(1), Links(database=database))  # type: ignore[arg-type]
        conns = {n: stack.enter_context(connect(link)) for n, link in database.items()}
        target, detail, heal = faults._open(
            Partition(kind="partition", between=["payments-1", "ledger"])
        )
        assert (target, detail) == ("payments-1<->ledger", "symmetric")
        assert _held(conns["payments-1"], database["payments-1"])
        assert _answers(conns["payments-2"]) and _answers(conns["settlement"])
        assert heal() == "1 chunks held until it healed"
        assert conns["payments-1"].recv(1) == b"?"  # held, then delivered on healing
        # `services` names every service's link, as before.
        target, detail, heal = faults._open(
            Partition(kind="partition", between=["services", "ledger"])
        )
        assert (target, detail) == ("services<->ledger", "symmetric (3 links, one per process)")
        assert all(_held(c, database[n]) for n, c in conns.items())
        heal()
        # One way, from the ledger's side: the process's requests pass, the answers do not.
        target, detail, heal = faults._open(
            Partition(kind="partition", between=["ledger", "settlement"], one_way=True)
        )
        assert (target, detail) == ("ledger->settlement", "one-way")
        heal()
        # Two processes have no link of their own to cut: they meet only in the store.
        target, detail, _ = faults._open(
            Partition(kind="partition", between=["payments-1", "settlement"])
        )
        assert target == "payments-1<->settlement"
        assert detail.startswith("not applied: there is no link between payments-1 and settlement")
        assert "only through the store" in detail and "[payments-1, ledger]" in detail
        _, detail, _ = faults._open(Partition(kind="partition", between=["payments-3", "ledger"]))
        assert detail == "not applied: no process 'payments-3' in this run"
