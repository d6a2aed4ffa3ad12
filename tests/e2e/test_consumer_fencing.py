"""A payments worker stopped (SIGSTOP) past its lease: its partitions move, payments keep being
posted, and when it wakes (SIGCONT) it is fenced: nothing it had in hand is applied twice.

Real processes (`testbed serve --workers 2`) on PostgreSQL with payments flowing; the claims are
read from the store, the outcome checked through the HTTP API (every acknowledged payment posted
or rejected exactly once, per the journal). tests/sim/test_faults.py makes the same pause in the
sim and expects the same outcome.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from test_serve_load import Ledger, audit, drain, open_accounts, run_clients, serve

from reference_impl.adapters import open_store
from reference_impl.service.ports import PartitionClaim

LEASE_S = 2.0


def claims(store_url: str) -> list[PartitionClaim]:
    store = open_store(store_url)
    try:
        with store.unit_of_work() as uow:
            return uow.list_claims("payments")
    finally:
        store.close()


def wait_for(predicate: object, timeout: float, what: str) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def sessions(store_url: str) -> str:
    """The database's sessions in a transaction, with what each waits on: why a claim did not
    move, when one does not."""
    import psycopg

    with psycopg.connect(store_url.split("?")[0], autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid, state, wait_event_type, wait_event, pg_blocking_pids(pid),"
            " now() - xact_start, left(query, 80) FROM pg_stat_activity"
            " WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid()"
        ).fetchall()
    return "\n".join(map(str, rows))


def posted(url: str) -> int:
    import httpx

    text = httpx.get(f"{url}/metrics", timeout=10.0).text
    return sum(
        int(float(line.split()[-1]))
        for line in text.splitlines()
        if line.startswith("testbed_payments_by_status{") and 'status="posted"' in line
    )


@pytest.mark.postgres
@pytest.mark.timeout(180)
def test_a_worker_paused_past_its_lease_is_fenced_and_nothing_applies_twice(
    postgres_url: str,
) -> None:
    ledger = Ledger()
    stop = threading.Event()
    extra = ["--session-timeout", str(LEASE_S)]
    with serve(postgres_url, workers=2, extra=extra) as server:
        open_accounts(server.url, ledger, funds=100_000)
        wait_for(lambda: len({c.member for c in claims(postgres_url)}) == 2, 60, "two members")
        clients = threading.Thread(
            target=run_clients, args=(server.url, ledger, 4, 10_000, 5, stop, 5)
        )
        clients.start()
        try:
            time.sleep(1.0)
            before = {c.partition: c for c in claims(postgres_url)}
            zombie_member = ""
            paused = server.pids()["payments-1"]
            os.kill(paused, signal.SIGSTOP)
            try:
                # The other member takes every partition over once the lease runs out ...
                try:
                    wait_for(
                        lambda: len({c.member for c in claims(postgres_url)}) == 1,
                        10 * LEASE_S,
                        "the partitions to move",
                    )
                except AssertionError as e:
                    raise AssertionError(f"{e}; sessions:\n{sessions(postgres_url)}") from None
                after = {c.partition: c for c in claims(postgres_url)}
                [survivor] = {c.member for c in after.values()}
                moved = [p for p, c in before.items() if c.member != survivor]
                zombie_member = before[moved[0]].member
                assert moved and all(after[p].epoch > before[p].epoch for p in moved)
                # ... and payments keep being posted while the worker is stopped.
                start = posted(server.url)
                wait_for(lambda: posted(server.url) > start + 20, 60, "payments posted")
            finally:
                os.kill(paused, signal.SIGCONT)
            # Awake, the zombie's old epochs are refused; it rejoins and gets partitions anew.
            wait_for(
                lambda: zombie_member in {c.member for c in claims(postgres_url)},
                30,
                "the woken worker to rejoin",
            )
            rejoined = {c.partition: c for c in claims(postgres_url)}
            assert all(rejoined[p].epoch > before[p].epoch for p in moved)
            time.sleep(1.0)
        finally:
            stop.set()
            clients.join(60)
        drain(server.url, timeout=60)
        statuses = audit(server.url, ledger)  # each acknowledged payment posted at most once
        assert server.stop() == 0, server.output
    assert statuses["posted"] > 50
