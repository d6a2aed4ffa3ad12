"""Counters stay within 64 bits in every store: a transfer that would overflow one is refused."""

from reference_impl.adapters.memory import MemoryStore
from reference_impl.core.ledger import Account, Transfer, TransferKind, TransferResult
from reference_impl.core.money import MAX_AMOUNT
from reference_impl.service.ledger import create_accounts, read_balances, submit_transfers


def _store() -> MemoryStore:
    store = MemoryStore()
    create_accounts(store, "t", [Account("w", "EUR", overdraft=True), Account("a", "EUR")])
    return store


def test_debits_that_would_overflow_are_refused_and_nothing_is_written() -> None:
    store = _store()
    assert submit_transfers(store, "t", [Transfer("1", "w", "a", MAX_AMOUNT, "EUR")], 0.0) == [
        TransferResult.OK
    ]
    results = submit_transfers(store, "t", [Transfer("2", "w", "a", 1, "EUR")], 1.0)
    assert results == [TransferResult.OVERFLOWS_DEBITS]
    w = read_balances(store, "t", ["w"])["w"]
    assert w.debits_posted == MAX_AMOUNT


def test_pending_counts_towards_the_credit_limit() -> None:
    store = _store()
    create_accounts(store, "t", [Account("v", "EUR", overdraft=True)])
    batch = [
        Transfer("1", "w", "a", MAX_AMOUNT, "EUR", TransferKind.PENDING),
        Transfer("2", "v", "a", 1, "EUR"),
    ]
    assert submit_transfers(store, "t", batch, 0.0) == [
        TransferResult.OK,
        TransferResult.OVERFLOWS_CREDITS,
    ]
    assert read_balances(store, "t", ["a"])["a"].credits_posted == 0
