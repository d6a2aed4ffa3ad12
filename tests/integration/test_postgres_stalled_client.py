"""A PostgreSQL client that stops mid-transaction (SIGSTOP, a frozen VM) must not hold its locks
for longer than the server's idle-in-transaction timeout.

The server arms that timeout only once it has answered a Sync; psycopg's pipeline sends each
statement as it is executed. A unit of work that sent a write and then stopped, before its next
read or its COMMIT, would have left the session `active` for as long as it was stopped: its
locks held, every other writer of the tenant and every heartbeat of the group waiting behind
them. The store therefore sends writes only together with the next read or the COMMIT, each
followed by a Sync.
"""

from __future__ import annotations

import time

import psycopg
import pytest

from reference_impl.adapters.postgres import IDLE_IN_TRANSACTION_TIMEOUT_MS, PostgresStore

pytestmark = pytest.mark.postgres


def _state(conn: psycopg.Connection[tuple[str]], pid: int) -> str | None:
    row = conn.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    return row[0] if row else None


@pytest.mark.timeout(120)
def test_a_client_stopped_after_a_write_is_idle_in_its_transaction_and_its_locks_expire(
    postgres_store: PostgresStore,
) -> None:
    uow = postgres_store.unit_of_work()
    uow.lock_group("payments")  # a read: the group's lock, as a heartbeat takes it
    uow.put_record("kind", "acme", "key", "value")  # a write, then the client stops
    assert uow._conn is not None
    pid = uow._conn.info.backend_pid
    with psycopg.connect(postgres_store.conninfo, autocommit=True) as other:
        # Idle in its transaction (not active): the server's timeout runs.
        assert _state(other, pid) == "idle in transaction"
        deadline = time.monotonic() + IDLE_IN_TRANSACTION_TIMEOUT_MS / 1000 + 60
        while _state(other, pid) is not None:  # the server ends the session ...
            assert time.monotonic() < deadline, "the stalled session was never ended"
            time.sleep(0.2)
        # ... and its lock is free for the next heartbeat (a transaction takes it at once).
        other.execute("SET lock_timeout = '5s'")
        with other.transaction():
            key = f"{postgres_store.schema or ''}/consumer-group/payments"
            other.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (key,))
    uow.rollback()
