"""What a PostgreSQL unit of work sends: two round trips per ledger transaction, every statement
answered, a failed one reported and nothing of its transaction written.

A round trip is a Sync and the server's ReadyForQuery; libpq's protocol trace shows both. psycopg's
own pipeline mode added a Sync behind `BEGIN` and another when the pipeline was left, four per
transfer; the store now sends the lock and the reads with one Sync and the writes and the COMMIT
with the other.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from psycopg import pq

from reference_impl.adapters.postgres import PostgresStore
from reference_impl.adapters.postgres_pipeline import Pipeline
from reference_impl.core.ledger import Account, Transfer, TransferResult
from reference_impl.service.ledger import (
    create_accounts,
    read_balances,
    read_journal,
    submit_transfers,
)
from reference_impl.service.ports import StoreError

pytestmark = pytest.mark.postgres


def _traced_messages(store: PostgresStore, trace: Path, run: Callable[[], None]) -> list[str]:
    """The protocol messages of `run()`, made on the connection the pool hands out next."""
    uow = store.unit_of_work()
    uow.get_accounts("t", ["a"])  # takes a connection from the pool ...
    assert uow._conn is not None
    pgconn = uow._conn.pgconn
    uow.rollback()  # ... and gives it back: the next unit of work takes it again
    with trace.open("w") as f:
        pgconn.trace(f.fileno())
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        try:
            run()
        finally:
            pgconn.untrace()
    # A line of the trace: direction (F, B), length, message type, its fields.
    return [" ".join(line.split("\t")[0:3:2]).strip() for line in trace.read_text().splitlines()]


def test_a_transfer_makes_two_round_trips(postgres_store: PostgresStore, tmp_path: Path) -> None:
    create_accounts(postgres_store, "t", [Account("a", "EUR", True), Account("b", "EUR", True)])
    assert submit_transfers(postgres_store, "t", [Transfer("x0", "a", "b", 1, "EUR")], 1.0) == [
        "ok"
    ]

    def transfer() -> None:
        results = submit_transfers(postgres_store, "t", [Transfer("x1", "a", "b", 2, "EUR")], 2.0)
        assert results == [TransferResult.OK]

    messages = _traced_messages(postgres_store, tmp_path / "trace", transfer)
    syncs = [i for i, m in enumerate(messages) if m == "F Sync"]
    ready = [m for m in messages if m.startswith("B ReadyForQuery")]
    assert len(syncs) == 2, messages
    assert len(ready) == 2, messages
    # Every statement has a Sync behind it: the last message the client sent is one.
    assert max(i for i, m in enumerate(messages) if m.startswith("F ")) == syncs[-1]
    assert read_balances(postgres_store, "t", ["a"])["a"].debits_posted == 3
    assert [e.transfer_id for e in read_journal(postgres_store, "t")] == ["x0", "x1"]


def test_a_failed_write_is_reported_at_commit_and_nothing_of_its_transaction_is_written(
    postgres_store: PostgresStore,
) -> None:
    create_accounts(postgres_store, "t", [Account("a", "EUR", True), Account("b", "EUR", True)])
    uow = postgres_store.unit_of_work()
    uow.put_record("kind", "t", "key", "value")
    uow.insert_accounts("t", [Account("a", "EUR", True)])  # the primary key refuses it
    uow.put_record("kind", "t", "other", "value")
    with pytest.raises(StoreError, match="duplicate key"):
        uow.commit()
    # The connection went back to the pool in a state the next unit of work can use.
    assert submit_transfers(postgres_store, "t", [Transfer("x", "a", "b", 1, "EUR")], 1.0) == ["ok"]
    with postgres_store.unit_of_work() as check:
        assert check.get_record("kind", "t", "key") is None
        assert check.get_record("kind", "t", "other") is None
    assert read_balances(postgres_store, "t", ["a"])["a"].debits_posted == 1


@pytest.mark.timeout(120)
def test_a_round_trip_larger_than_the_socket_buffers_completes(
    postgres_store: PostgresStore,
) -> None:
    """The server answers the first statement while the client still sends the second: once
    both sockets' buffers are full, the client must read to let the server read again."""
    size = 32 * 1024 * 1024  # more than loopback's socket buffers hold, both ways
    pipe = Pipeline(postgres_store._pool.acquire)
    answer = pipe.execute("SELECT length(repeat('x', %s))::bigint, repeat('y', %s)", (size, size))
    echo = pipe.execute("SELECT length(%s)::bigint", ("z" * size,))
    pipe.sync()
    assert answer[0][0] == size
    assert len(answer[0][1]) == size
    assert echo == [(size,)]
    session = pipe.end()
    assert session is not None and session.reusable
    postgres_store._pool.release(session)
