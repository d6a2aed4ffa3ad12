"""kill -9 in the middle of traffic, then restart: nothing acknowledged is lost, nothing doubles.

Redelivery after a crash comes only from the committed offsets: a worker killed mid-batch has
committed neither the batch's effects nor its offset, so its replacement applies the batch again
from the start, and the keyed effects make anything it had already committed a no-op.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import test_serve_load
from test_serve_load import (
    Ledger,
    audit,
    check_projection,
    drain,
    open_accounts,
    retry_unacknowledged,
    run_clients,
    serve,
    wait_for_acks,
)

store_url = test_serve_load.store_url  # the fixture: each test on SQLite and on PostgreSQL


def wait_for(predicate: object, timeout: float, what: str) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.timeout(300)
def test_kill_9_of_worker_processes_mid_stream_loses_and_duplicates_nothing(
    store_url: str,
) -> None:
    ledger = Ledger()
    stop = threading.Event()
    with serve(store_url, workers=1) as server:
        open_accounts(server.url, ledger, funds=50_000)
        first = server.pids()
        assert {"payments-1", "settlement", "reporting"} <= set(first), server.output
        clients = threading.Thread(
            target=run_clients, args=(server.url, ledger, 6, 10_000, 3, stop)
        )
        clients.start()
        try:
            for name in ("payments-1", "reporting", "payments-1", "settlement"):
                # Each kill lands mid-stream: more payments came in since the previous one.
                wait_for_acks(ledger, len(ledger.acked) + 15)
                old = server.pids()[name]
                os.kill(old, signal.SIGKILL)
                wait_for(lambda n=name, o=old: server.pids()[n] != o, 60, f"{name} restarted")
            wait_for_acks(ledger, len(ledger.acked) + 15)  # and traffic goes on after them
        finally:
            stop.set()
            clients.join(60)
        drain(server.url)
        statuses = audit(server.url, ledger)
        assert server.stop() == 0, server.output
    assert f"payments-1 exited with {-signal.SIGKILL}; restarting" in server.output
    assert statuses["posted"] > 0
    check_projection(store_url)


@pytest.mark.timeout(300)
def test_kill_9_of_the_whole_server_then_restart_loses_nothing_acknowledged(
    store_url: str,
) -> None:
    ledger = Ledger()
    stop = threading.Event()
    with serve(store_url) as server:
        open_accounts(server.url, ledger, funds=50_000)
        funded = len(ledger.acked)
        clients = threading.Thread(
            target=run_clients, args=(server.url, ledger, 6, 10_000, 4, stop, 3)
        )
        clients.start()
        wait_for_acks(ledger, funded + 20)
        server.kill()  # gateway and workers die together, mid-request and mid-batch
        stop.set()
        clients.join(60)
    assert not clients.is_alive()
    with serve(store_url) as server:
        retry_unacknowledged(server.url, ledger)
        drain(server.url)
        audit(server.url, ledger)
        assert server.stop() == 0, server.output
    check_projection(store_url)
