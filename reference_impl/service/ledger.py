"""Ledger handlers: create accounts, submit a batch of transfers, read balances and the journal.

The `*_in` functions work inside a caller's unit of work, so a consumer can post transfers,
append its outbox events and advance its offset in one commit; the others open their own.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from reference_impl.core.journal import JournalEntry
from reference_impl.core.ledger import (
    Account,
    AccountResult,
    LedgerChanges,
    LedgerView,
    Transfer,
    TransferResult,
    apply_transfers,
    check_new_account,
    ids_to_load,
    pending_accounts,
)
from reference_impl.service.ports import Store, UnitOfWork


def create_accounts_in(
    uow: UnitOfWork, tenant: str, accounts: Sequence[Account]
) -> list[AccountResult]:
    """A result per account; only the `ok` ones are inserted (with zero balances)."""
    uow.journal_head(tenant)  # the tenant's write lock: no two creators race on one id
    existing = uow.get_accounts(tenant, [a.id for a in accounts])
    results: list[AccountResult] = []
    new: list[Account] = []
    for a in accounts:
        code = check_new_account(a, existing.get(a.id))
        results.append(code)
        if code is AccountResult.OK:
            fresh = Account(a.id, a.currency, a.overdraft, a.holder_name)
            existing[a.id] = fresh
            new.append(fresh)
    if new:
        uow.insert_accounts(tenant, new)
    return results


def submit_transfers_in(
    uow: UnitOfWork, tenant: str, batch: Sequence[Transfer], now: float
) -> LedgerChanges:
    """Apply a batch inside `uow`; each transfer gets its own result code."""
    account_ids, transfer_ids = ids_to_load(batch)
    head, accounts, transfers = uow.lock_and_load(tenant, account_ids, transfer_ids)
    # Phase two of a two-phase transfer names only the pending one: its accounts come second.
    more = pending_accounts(transfers) - account_ids
    if more:
        accounts.update(uow.get_accounts(tenant, more))
    changes = apply_transfers(batch, LedgerView(accounts, transfers, head), now)
    if changes.transfers:
        uow.write_ledger(tenant, changes)
    return changes


def create_accounts(store: Store, tenant: str, accounts: Sequence[Account]) -> list[AccountResult]:
    with store.unit_of_work() as uow:
        results = create_accounts_in(uow, tenant, accounts)
        uow.commit()
    return results


def submit_transfers(
    store: Store, tenant: str, batch: Sequence[Transfer], now: float
) -> list[TransferResult]:
    """The fast path: the whole batch validated and committed in one transaction."""
    with store.unit_of_work() as uow:
        changes = submit_transfers_in(uow, tenant, batch, now)
        uow.commit()
    return changes.results


def read_balances(store: Store, tenant: str, ids: Collection[str]) -> dict[str, Account]:
    with store.unit_of_work() as uow:
        return uow.get_accounts(tenant, ids)


def read_journal(
    store: Store, tenant: str, after: int = 0, limit: int = 1000
) -> list[JournalEntry]:
    with store.unit_of_work() as uow:
        return uow.read_journal(tenant, after, limit)
