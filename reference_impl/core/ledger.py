"""The double-entry ledger: accounts, transfers, two-phase transfers, linked chains.

Sans-I/O in the TigerBeetle style: `apply_transfers` takes a batch and a read-only view of the
state it touches, and returns a result code per transfer plus the changes to write. Nothing here
reads a clock, draws an id or touches storage; the store executes what this returns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from reference_impl.core.journal import JournalEntry, JournalHead, chain_entry
from reference_impl.core.money import MAX_AMOUNT, is_currency
from reference_impl.core.serial import evolve

MAX_ID_LENGTH = 128


class TransferKind(StrEnum):
    POST = "post"
    """A single-phase transfer, posted at once."""
    PENDING = "pending"
    """Phase one: reserve the amount (debits_pending, credits_pending)."""
    POST_PENDING = "post_pending"
    """Phase two: post all or part of a pending transfer."""
    VOID = "void"
    """Phase two: release a pending transfer."""


class PendingState(StrEnum):
    PENDING = "pending"
    POSTED = "posted"
    VOIDED = "voided"


class AccountResult(StrEnum):
    OK = "ok"
    EXISTS = "exists"
    EXISTS_WITH_DIFFERENT_CURRENCY = "exists_with_different_currency"
    EXISTS_WITH_DIFFERENT_OVERDRAFT = "exists_with_different_overdraft"
    EXISTS_WITH_DIFFERENT_HOLDER_NAME = "exists_with_different_holder_name"
    ID_MUST_NOT_BE_EMPTY = "id_must_not_be_empty"
    ID_TOO_LONG = "id_too_long"
    CURRENCY_UNKNOWN = "currency_unknown"


class TransferResult(StrEnum):
    """One code per rule, so a client always knows which rule refused its transfer."""

    OK = "ok"
    EXISTS = "exists"
    EXISTS_WITH_DIFFERENT_KIND = "exists_with_different_kind"
    EXISTS_WITH_DIFFERENT_PENDING_ID = "exists_with_different_pending_id"
    EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT = "exists_with_different_debit_account"
    EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT = "exists_with_different_credit_account"
    EXISTS_WITH_DIFFERENT_AMOUNT = "exists_with_different_amount"
    EXISTS_WITH_DIFFERENT_CURRENCY = "exists_with_different_currency"
    EXISTS_WITH_DIFFERENT_PAYMENT_ID = "exists_with_different_payment_id"
    LINKED_EVENT_FAILED = "linked_event_failed"
    LINKED_EVENT_CHAIN_OPEN = "linked_event_chain_open"
    ID_MUST_NOT_BE_EMPTY = "id_must_not_be_empty"
    ID_TOO_LONG = "id_too_long"
    ID_ALREADY_IN_BATCH = "id_already_in_batch"
    AMOUNT_MUST_BE_INTEGER = "amount_must_be_integer"
    AMOUNT_MUST_BE_POSITIVE = "amount_must_be_positive"
    AMOUNT_EXCEEDS_MAXIMUM = "amount_exceeds_maximum"
    CURRENCY_UNKNOWN = "currency_unknown"
    ACCOUNTS_MUST_BE_DIFFERENT = "accounts_must_be_different"
    DEBIT_ACCOUNT_NOT_FOUND = "debit_account_not_found"
    CREDIT_ACCOUNT_NOT_FOUND = "credit_account_not_found"
    CURRENCY_MUST_MATCH_ACCOUNTS = "currency_must_match_accounts"
    PENDING_ID_MUST_BE_EMPTY = "pending_id_must_be_empty"
    PENDING_ID_REQUIRED = "pending_id_required"
    PENDING_ID_MUST_BE_DIFFERENT = "pending_id_must_be_different"
    PENDING_TRANSFER_NOT_FOUND = "pending_transfer_not_found"
    PENDING_TRANSFER_NOT_PENDING = "pending_transfer_not_pending"
    PENDING_ACCOUNTS_MUST_MATCH = "pending_accounts_must_match"
    PENDING_CURRENCY_MUST_MATCH = "pending_currency_must_match"
    PENDING_AMOUNT_EXCEEDED = "pending_amount_exceeded"
    PENDING_ALREADY_POSTED = "pending_already_posted"
    PENDING_ALREADY_VOIDED = "pending_already_voided"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    OVERFLOWS_DEBITS = "overflows_debits"
    OVERFLOWS_CREDITS = "overflows_credits"


@dataclass(slots=True)
class Account:
    """An account and its four balance counters, in minor units of `currency`.

    Without `overdraft`, debits_posted + debits_pending never exceed credits_posted.
    """

    id: str
    currency: str
    overdraft: bool = False
    holder_name: str = ""
    debits_posted: int = 0
    debits_pending: int = 0
    credits_posted: int = 0
    credits_pending: int = 0

    @property
    def posted(self) -> int:
        return self.credits_posted - self.debits_posted

    @property
    def pending(self) -> int:
        return self.credits_pending - self.debits_pending

    @property
    def available(self) -> int:
        return self.credits_posted - self.debits_posted - self.debits_pending

    def copy(self) -> Account:
        return Account(
            self.id,
            self.currency,
            self.overdraft,
            self.holder_name,
            self.debits_posted,
            self.debits_pending,
            self.credits_posted,
            self.credits_pending,
        )


@dataclass(frozen=True, slots=True)
class Transfer:
    """A request to move `amount` from `debit_account` to `credit_account`.

    For POST_PENDING and VOID, `pending_id` names the pending transfer; accounts and currency may
    be left empty (they are taken from it) and `amount` 0 means the full pending amount.
    `linked` chains this transfer with the next one in the batch: all of a chain commits or none.
    """

    id: str
    debit_account: str = ""
    credit_account: str = ""
    amount: int = 0
    currency: str = ""
    kind: TransferKind = TransferKind.POST
    pending_id: str = ""
    linked: bool = False
    payment_id: str = ""


@dataclass(frozen=True, slots=True)
class StoredTransfer:
    """A transfer as the ledger committed it: every field resolved, with its commit time."""

    id: str
    debit_account: str
    credit_account: str
    amount: int
    currency: str
    kind: TransferKind
    pending_id: str
    payment_id: str
    at: float
    pending_state: PendingState | None = None
    """For PENDING transfers: still pending, posted or voided. None for the other kinds."""


class LedgerView:
    """What `apply_transfers` needs to read: the accounts and transfers a batch names.

    Stores build one from a prefetch (`ids_to_load`), so the core never does I/O.
    """

    __slots__ = ("accounts", "head", "transfers")

    def __init__(
        self,
        accounts: Mapping[str, Account],
        transfers: Mapping[str, StoredTransfer],
        head: JournalHead,
    ) -> None:
        self.accounts = accounts
        self.transfers = transfers
        self.head = head


@dataclass(slots=True)
class LedgerChanges:
    """What a batch changed, for the store to write in one transaction."""

    results: list[TransferResult] = field(default_factory=list)
    accounts: dict[str, Account] = field(default_factory=dict)
    transfers: list[StoredTransfer] = field(default_factory=list)
    pending_states: dict[str, PendingState] = field(default_factory=dict)
    journal: list[JournalEntry] = field(default_factory=list)
    head: JournalHead | None = None

    @property
    def ok(self) -> bool:
        return all(r is TransferResult.OK for r in self.results)


def ids_to_load(batch: Sequence[Transfer]) -> tuple[set[str], set[str]]:
    """The account ids and transfer ids a batch may read: prefetch these, then apply."""
    account_ids: set[str] = set()
    transfer_ids: set[str] = set()
    for t in batch:
        transfer_ids.add(t.id)
        if t.debit_account:
            account_ids.add(t.debit_account)
        if t.credit_account:
            account_ids.add(t.credit_account)
        if t.pending_id:
            transfer_ids.add(t.pending_id)
    return account_ids, transfer_ids


def pending_accounts(view_transfers: Mapping[str, StoredTransfer]) -> set[str]:
    """Accounts of pending transfers named by a batch: a second prefetch for two-phase batches."""
    ids: set[str] = set()
    for t in view_transfers.values():
        if t.kind is TransferKind.PENDING:
            ids.add(t.debit_account)
            ids.add(t.credit_account)
    return ids


def check_new_account(account: Account, existing: Account | None) -> AccountResult:
    if not account.id:
        return AccountResult.ID_MUST_NOT_BE_EMPTY
    if len(account.id) > MAX_ID_LENGTH:
        return AccountResult.ID_TOO_LONG
    if not is_currency(account.currency):
        return AccountResult.CURRENCY_UNKNOWN
    if existing is None:
        return AccountResult.OK
    if existing.currency != account.currency:
        return AccountResult.EXISTS_WITH_DIFFERENT_CURRENCY
    if existing.overdraft != account.overdraft:
        return AccountResult.EXISTS_WITH_DIFFERENT_OVERDRAFT
    if existing.holder_name != account.holder_name:
        return AccountResult.EXISTS_WITH_DIFFERENT_HOLDER_NAME
    return AccountResult.EXISTS


class _Batch:
    """Working state while a batch is applied: copies of touched accounts and an undo log."""

    __slots__ = ("accounts", "changes", "in_batch", "pending_states", "transfers", "view")

    def __init__(self, view: LedgerView) -> None:
        self.view = view
        self.accounts: dict[str, Account] = {}
        self.transfers: dict[str, StoredTransfer] = {}
        self.pending_states: dict[str, PendingState] = {}
        self.in_batch: set[str] = set()
        self.changes = LedgerChanges(head=view.head)

    def account(self, account_id: str) -> Account | None:
        acc = self.accounts.get(account_id)
        if acc is None:
            stored = self.view.accounts.get(account_id)
            if stored is None:
                return None
            acc = self.accounts[account_id] = stored.copy()
        return acc

    def transfer(self, transfer_id: str) -> StoredTransfer | None:
        t = self.transfers.get(transfer_id)
        return t if t is not None else self.view.transfers.get(transfer_id)

    def pending_state(self, t: StoredTransfer) -> PendingState | None:
        return self.pending_states.get(t.id, t.pending_state)


def _exists_result(t: Transfer, s: StoredTransfer) -> TransferResult:
    two_phase = t.kind in (TransferKind.POST_PENDING, TransferKind.VOID)
    if t.kind is not s.kind:
        return TransferResult.EXISTS_WITH_DIFFERENT_KIND
    if t.pending_id != s.pending_id:
        return TransferResult.EXISTS_WITH_DIFFERENT_PENDING_ID
    if (t.debit_account or not two_phase) and t.debit_account != s.debit_account:
        return TransferResult.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT
    if (t.credit_account or not two_phase) and t.credit_account != s.credit_account:
        return TransferResult.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT
    if (t.amount or not two_phase) and t.amount != s.amount:
        return TransferResult.EXISTS_WITH_DIFFERENT_AMOUNT
    if (t.currency or not two_phase) and t.currency != s.currency:
        return TransferResult.EXISTS_WITH_DIFFERENT_CURRENCY
    if t.payment_id != s.payment_id:
        return TransferResult.EXISTS_WITH_DIFFERENT_PAYMENT_ID
    return TransferResult.EXISTS


def _check_shape(t: Transfer) -> TransferResult | None:
    """Rules that need no state: id, amount type and range, currency, pending_id presence."""
    if not t.id:
        return TransferResult.ID_MUST_NOT_BE_EMPTY
    if len(t.id) > MAX_ID_LENGTH:
        return TransferResult.ID_TOO_LONG
    amount = t.amount
    if isinstance(amount, bool) or not isinstance(amount, int):
        return TransferResult.AMOUNT_MUST_BE_INTEGER
    if amount > MAX_AMOUNT:
        return TransferResult.AMOUNT_EXCEEDS_MAXIMUM
    two_phase = t.kind in (TransferKind.POST_PENDING, TransferKind.VOID)
    if two_phase:
        if not t.pending_id:
            return TransferResult.PENDING_ID_REQUIRED
        if t.pending_id == t.id:
            return TransferResult.PENDING_ID_MUST_BE_DIFFERENT
        if amount < 0:
            return TransferResult.AMOUNT_MUST_BE_POSITIVE
        if t.currency and not is_currency(t.currency):
            return TransferResult.CURRENCY_UNKNOWN
        return None
    if t.pending_id:
        return TransferResult.PENDING_ID_MUST_BE_EMPTY
    if amount <= 0:
        return TransferResult.AMOUNT_MUST_BE_POSITIVE
    if not is_currency(t.currency):
        return TransferResult.CURRENCY_UNKNOWN
    if t.debit_account == t.credit_account:
        return TransferResult.ACCOUNTS_MUST_BE_DIFFERENT
    return None


def _apply_one(b: _Batch, t: Transfer, now: float) -> TransferResult:
    code = _check_shape(t)
    if code is not None:
        return code
    if t.id in b.in_batch:
        return TransferResult.ID_ALREADY_IN_BATCH
    existing = b.transfer(t.id)
    if existing is not None:
        return _exists_result(t, existing)
    if t.kind in (TransferKind.POST_PENDING, TransferKind.VOID):
        return _apply_second_phase(b, t, now)

    debit = b.account(t.debit_account)
    if debit is None:
        return TransferResult.DEBIT_ACCOUNT_NOT_FOUND
    credit = b.account(t.credit_account)
    if credit is None:
        return TransferResult.CREDIT_ACCOUNT_NOT_FOUND
    if debit.currency != t.currency or credit.currency != t.currency:
        return TransferResult.CURRENCY_MUST_MATCH_ACCOUNTS
    amount = t.amount
    if (
        not debit.overdraft
        and debit.debits_posted + debit.debits_pending + amount > debit.credits_posted
    ):
        return TransferResult.INSUFFICIENT_FUNDS
    # Counters are 64-bit in the SQL stores: refuse what would overflow them, in every store.
    if debit.debits_posted + debit.debits_pending + amount > MAX_AMOUNT:
        return TransferResult.OVERFLOWS_DEBITS
    if credit.credits_posted + credit.credits_pending + amount > MAX_AMOUNT:
        return TransferResult.OVERFLOWS_CREDITS

    if t.kind is TransferKind.PENDING:
        debit.debits_pending += amount
        credit.credits_pending += amount
        state: PendingState | None = PendingState.PENDING
    else:
        debit.debits_posted += amount
        credit.credits_posted += amount
        state = None
    _record(b, t, t.debit_account, t.credit_account, amount, t.currency, state, now)
    return TransferResult.OK


def _apply_second_phase(b: _Batch, t: Transfer, now: float) -> TransferResult:
    pending = b.transfer(t.pending_id)
    if pending is None:
        return TransferResult.PENDING_TRANSFER_NOT_FOUND
    if pending.kind is not TransferKind.PENDING:
        return TransferResult.PENDING_TRANSFER_NOT_PENDING
    if t.debit_account and t.debit_account != pending.debit_account:
        return TransferResult.PENDING_ACCOUNTS_MUST_MATCH
    if t.credit_account and t.credit_account != pending.credit_account:
        return TransferResult.PENDING_ACCOUNTS_MUST_MATCH
    if t.currency and t.currency != pending.currency:
        return TransferResult.PENDING_CURRENCY_MUST_MATCH
    state = b.pending_state(pending)
    if state is PendingState.POSTED:
        return TransferResult.PENDING_ALREADY_POSTED
    if state is PendingState.VOIDED:
        return TransferResult.PENDING_ALREADY_VOIDED
    amount = t.amount or pending.amount
    if amount > pending.amount or (t.kind is TransferKind.VOID and amount != pending.amount):
        return TransferResult.PENDING_AMOUNT_EXCEEDED
    debit = b.account(pending.debit_account)
    credit = b.account(pending.credit_account)
    if debit is None:
        return TransferResult.DEBIT_ACCOUNT_NOT_FOUND
    if credit is None:
        return TransferResult.CREDIT_ACCOUNT_NOT_FOUND
    # The whole reservation is released; a (partial) post then moves `amount` to posted.
    debit.debits_pending -= pending.amount
    credit.credits_pending -= pending.amount
    if t.kind is TransferKind.POST_PENDING:
        debit.debits_posted += amount
        credit.credits_posted += amount
        b.pending_states[pending.id] = PendingState.POSTED
    else:
        b.pending_states[pending.id] = PendingState.VOIDED
    _record(
        b, t, pending.debit_account, pending.credit_account, amount, pending.currency, None, now
    )
    return TransferResult.OK


def _record(
    b: _Batch,
    t: Transfer,
    debit: str,
    credit: str,
    amount: int,
    currency: str,
    state: PendingState | None,
    now: float,
) -> None:
    stored = StoredTransfer(
        t.id, debit, credit, amount, currency, t.kind, t.pending_id, t.payment_id, now, state
    )
    b.transfers[t.id] = stored
    b.in_batch.add(t.id)
    b.changes.transfers.append(stored)


def apply_transfers(batch: Sequence[Transfer], view: LedgerView, now: float) -> LedgerChanges:
    """Validate and apply `batch` in order against `view`; a result code per transfer.

    A failed transfer changes nothing. A chain of `linked` transfers is all-or-nothing: when one
    fails, it keeps its own code and every other member of the chain gets linked_event_failed.
    """
    b = _Batch(view)
    results = b.changes.results
    i = 0
    n = len(batch)
    while i < n:
        if not batch[i].linked:
            results.append(_apply_one(b, batch[i], now))
            i += 1
            continue
        end = i
        while end < n and batch[end].linked:
            end += 1
        chain = batch[i : end + 1]
        _apply_chain(b, chain, end == n, now)
        i = end + 1
    _finish(b, now)
    return b.changes


def _apply_chain(b: _Batch, chain: Sequence[Transfer], open_chain: bool, now: float) -> None:
    saved_accounts = {k: a.copy() for k, a in b.accounts.items()}
    saved_pending = dict(b.pending_states)
    first_new = len(b.changes.transfers)
    codes: list[TransferResult] = []
    failed_at = -1
    for j, t in enumerate(chain):
        code = _apply_one(b, t, now)
        codes.append(code)
        if code is not TransferResult.OK:
            failed_at = j
            break
    if failed_at < 0 and open_chain:
        failed_at = len(chain) - 1
        codes[failed_at] = TransferResult.LINKED_EVENT_CHAIN_OPEN
    if failed_at < 0:
        b.changes.results.extend(codes)
        return
    for stored in b.changes.transfers[first_new:]:
        del b.transfers[stored.id]
        b.in_batch.discard(stored.id)
    del b.changes.transfers[first_new:]
    b.accounts = saved_accounts
    b.pending_states = saved_pending
    for j in range(len(chain)):
        b.changes.results.append(
            codes[failed_at] if j == failed_at else TransferResult.LINKED_EVENT_FAILED
        )


def _finish(b: _Batch, now: float) -> None:
    changes = b.changes
    if not changes.transfers:
        return
    touched: set[str] = set()
    for s in changes.transfers:
        touched.add(s.debit_account)
        touched.add(s.credit_account)
    changes.accounts = {k: b.accounts[k] for k in touched}
    # A pending transfer posted or voided in its own batch is written once, in its final state.
    states = dict(b.pending_states)
    changes.transfers = [
        evolve(s, pending_state=states.pop(s.id)) if s.id in states else s
        for s in changes.transfers
    ]
    changes.pending_states = states
    head = b.view.head
    journal = changes.journal
    for s in changes.transfers:
        entry = chain_entry(head, s)
        journal.append(entry)
        head = JournalHead(entry.seq, entry.hash)
    changes.head = head
