"""The memory store's failure model, which the sim relies on: what a crash or a failover loses.

Only the memory store models these (the SQL stores are durable and unreplicated here), so these
tests are not part of the shared contract.
"""

from __future__ import annotations

from reference_impl.adapters.memory import MemoryStore
from reference_impl.core.journal import first_broken_link
from reference_impl.core.ledger import Account, Transfer, TransferResult
from reference_impl.service.ledger import create_accounts, read_journal, submit_transfers

TENANT = "acme"


def setup_accounts(store: MemoryStore) -> None:
    create_accounts(store, TENANT, [Account("m", "EUR", overdraft=True), Account("x", "EUR")])


def post(store: MemoryStore, *ids: str) -> None:
    for i in ids:
        assert submit_transfers(store, TENANT, [Transfer(i, "m", "x", 1, "EUR")], 1.0) == [
            TransferResult.OK
        ]


def journal_ids(store: MemoryStore) -> list[str]:
    entries = read_journal(store, TENANT, 0, 1000)
    assert first_broken_link(entries) == 0
    return [e.transfer_id for e in entries]


def test_crash_loses_exactly_the_commits_not_yet_synced() -> None:
    store = MemoryStore(durable_commits=False)
    setup_accounts(store)
    post(store, "a", "b")
    store.sync()
    post(store, "c", "d", "e")
    assert store.committed_seq - store.durable_seq == 3
    assert store.crash() == 3
    assert journal_ids(store) == ["a", "b"]
    assert store.table("accounts")[(TENANT, "x")].credits_posted == 2
    # After the crash the store goes on from the durable state: the lost ids are free again.
    post(store, "c")
    assert journal_ids(store) == ["a", "b", "c"]


def test_durable_commits_survive_a_crash() -> None:
    store = MemoryStore()
    setup_accounts(store)
    post(store, "a", "b")
    assert store.crash() == 0
    assert journal_ids(store) == ["a", "b"]


def test_async_failover_loses_the_commits_not_replicated() -> None:
    store = MemoryStore(replication="async")
    setup_accounts(store)
    post(store, "a", "b")
    store.replicate()
    post(store, "c", "d")
    store.replicate(upto=store.committed_seq - 1)
    post(store, "e")
    assert store.failover() == 2
    assert journal_ids(store) == ["a", "b", "c"]


def test_sync_failover_loses_nothing() -> None:
    store = MemoryStore(replication="sync")
    setup_accounts(store)
    post(store, "a", "b", "c")
    assert store.replica_seq == store.committed_seq
    assert store.failover() == 0
    assert journal_ids(store) == ["a", "b", "c"]
