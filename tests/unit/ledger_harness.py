"""A small harness over the service layer and the memory store for the ledger unit tests.

A plain module (not conftest.py) so that tests can import `Ledger` by name; tests/unit has no
__init__.py, so pytest puts this directory on sys.path.
"""

from __future__ import annotations

from reference_impl.adapters.memory import MemoryStore
from reference_impl.core.journal import JournalEntry
from reference_impl.core.ledger import (
    Account,
    AccountResult,
    StoredTransfer,
    Transfer,
    TransferResult,
)
from reference_impl.service.ledger import (
    create_accounts,
    read_balances,
    read_journal,
    submit_transfers,
)

Balances = tuple[int, int, int, int]
"""(debits_posted, debits_pending, credits_posted, credits_pending)."""


def counters(a: Account) -> Balances:
    return (a.debits_posted, a.debits_pending, a.credits_posted, a.credits_pending)


class Ledger:
    """One tenant's ledger in a fresh MemoryStore, with a funding account per currency."""

    def __init__(self, tenant: str = "acme") -> None:
        self.store = MemoryStore()
        self.tenant = tenant
        self.now = 1_000.0
        self._account_ids: set[str] = set()
        self._funding: dict[str, str] = {}

    def open(
        self, account_id: str, currency: str = "EUR", *, overdraft: bool = False, funds: int = 0
    ) -> None:
        [code] = self.create(Account(account_id, currency, overdraft))
        assert code is AccountResult.OK
        if funds:
            self.fund(account_id, currency, funds)

    def create(self, *accounts: Account) -> list[AccountResult]:
        results = create_accounts(self.store, self.tenant, accounts)
        self._account_ids.update(a.id for a in accounts if a.id)
        return results

    def fund(self, account_id: str, currency: str, amount: int) -> None:
        source = self._funding.get(currency)
        if source is None:
            source = self._funding[currency] = f"funding-{currency}"
            self.open(source, currency, overdraft=True)
        [code] = self.submit(
            Transfer(f"fund-{account_id}-{self.now}", source, account_id, amount, currency)
        )
        assert code is TransferResult.OK

    def submit(self, *batch: Transfer) -> list[TransferResult]:
        self.now += 1.0
        return submit_transfers(self.store, self.tenant, batch, self.now)

    def account(self, account_id: str) -> Account:
        return read_balances(self.store, self.tenant, [account_id])[account_id]

    def balances(self, account_id: str) -> Balances:
        return counters(self.account(account_id))

    def snapshot(self) -> dict[str, Balances]:
        found = read_balances(self.store, self.tenant, self._account_ids)
        return {k: counters(a) for k, a in found.items()}

    def journal(self) -> list[JournalEntry]:
        return read_journal(self.store, self.tenant, 0, 1_000_000)

    def transfer(self, transfer_id: str) -> StoredTransfer | None:
        with self.store.unit_of_work() as uow:
            return uow.get_transfers(self.tenant, [transfer_id]).get(transfer_id)

    def refused(self, *batch: Transfer) -> list[TransferResult]:
        """Submit a batch expected to write nothing; assert that it did not."""
        before, journal_before = self.snapshot(), self.journal()
        transfers_before = dict(self.store.table("transfers"))
        results = self.submit(*batch)
        assert TransferResult.OK not in results
        assert self.snapshot() == before
        assert self.journal() == journal_before
        assert dict(self.store.table("transfers")) == transfers_before
        return results
