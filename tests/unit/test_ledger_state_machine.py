"""Random batches against the ledger, checked against an independent model after every step.

The model below is a plain-dict reimplementation of docs/ledger.md written for this test; it
never calls the core. Hypothesis drives both with the same batches (new transfers, two-phase
settlements, repeats of earlier transfers as they were and with a changed field, id conflicts,
linked chains, invalid inputs) through `submit_transfers` on a MemoryStore, and the invariants
compare result codes, balances and the journal, and check the ledger's own invariants.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from reference_impl.adapters.memory import MemoryStore
from reference_impl.core.journal import first_broken_link
from reference_impl.core.ledger import Account, AccountResult, Transfer, TransferKind
from reference_impl.service.ledger import (
    create_accounts,
    read_balances,
    read_journal,
    submit_transfers,
)

TENANT = "acme"
MAX = 2**63 - 1
K = TransferKind

# (id, currency, overdraft); e0 and j0 are the banks that fund the others.
ACCOUNTS = [
    ("e0", "EUR", True),
    ("e1", "EUR", False),
    ("e2", "EUR", False),
    ("e3", "EUR", True),
    ("j0", "JPY", True),
    ("j1", "JPY", False),
    ("j2", "JPY", False),
]
BY_CURRENCY = {
    "EUR": [a for a, c, _ in ACCOUNTS if c == "EUR"],
    "JPY": [a for a, c, _ in ACCOUNTS if c == "JPY"],
}
IDS = [f"t{i}" for i in range(30)]
BAD_IDS = ["", "x" * 129]
BAD_AMOUNTS: list[Any] = [-5, 1.5, 10.0, True, MAX, MAX + 1]

# -- the model ---------------------------------------------------------------------------------


def _shape_error(t: Transfer) -> str | None:
    if t.id == "":
        return "id_must_not_be_empty"
    if len(t.id) > 128:
        return "id_too_long"
    if type(t.amount) is not int:
        return "amount_must_be_integer"
    if t.amount > MAX:
        return "amount_exceeds_maximum"
    if t.kind in (K.POST_PENDING, K.VOID):
        if t.pending_id == "":
            return "pending_id_required"
        if t.pending_id == t.id:
            return "pending_id_must_be_different"
        if t.amount < 0:
            return "amount_must_be_positive"
        if t.currency != "" and t.currency not in ("EUR", "JPY", "USD"):
            return "currency_unknown"
        return None
    if t.pending_id != "":
        return "pending_id_must_be_empty"
    if t.amount <= 0:
        return "amount_must_be_positive"
    if t.currency not in ("EUR", "JPY", "USD"):
        return "currency_unknown"
    if t.debit_account == t.credit_account:
        return "accounts_must_be_different"
    return None


class Model:
    """Accounts as dicts of four counters; transfers as dicts; the journal as tuples."""

    def __init__(self) -> None:
        self.accounts: dict[str, dict[str, Any]] = {}
        self.transfers: dict[str, dict[str, Any]] = {}
        self.journal: list[tuple[str, str, str, str, int, str, str]] = []

    def open(self, account_id: str, currency: str, overdraft: bool) -> None:
        self.accounts[account_id] = {
            "currency": currency,
            "overdraft": overdraft,
            "debits_posted": 0,
            "debits_pending": 0,
            "credits_posted": 0,
            "credits_pending": 0,
        }

    def apply(self, batch: list[Transfer]) -> list[str]:
        results: list[str] = []
        in_batch: set[str] = set()
        i = 0
        while i < len(batch):
            if not batch[i].linked:
                results.append(self._one(batch[i], in_batch))
                i += 1
                continue
            close = i
            while close < len(batch) and batch[close].linked:
                close += 1
            chain = batch[i : close + 1]
            saved = copy.deepcopy((self.accounts, self.transfers, self.journal, in_batch))
            codes = []
            for t in chain:
                codes.append(self._one(t, in_batch))
                if codes[-1] != "ok":
                    break
            if codes[-1] == "ok" and close == len(batch):
                codes[-1] = "linked_event_chain_open"
            if codes[-1] == "ok":
                results += codes
            else:
                self.accounts, self.transfers, self.journal, in_batch = saved
                failed = len(codes) - 1
                results += [
                    codes[failed] if k == failed else "linked_event_failed"
                    for k in range(len(chain))
                ]
            i = close + 1
        return results

    def _one(self, t: Transfer, in_batch: set[str]) -> str:
        error = _shape_error(t)
        if error:
            return error
        if t.id in in_batch:
            return "id_already_in_batch"
        if t.id in self.transfers:
            return self._exists(t, self.transfers[t.id])
        if t.kind in (K.POST_PENDING, K.VOID):
            return self._second_phase(t, in_batch)
        if t.debit_account not in self.accounts:
            return "debit_account_not_found"
        if t.credit_account not in self.accounts:
            return "credit_account_not_found"
        debit, credit = self.accounts[t.debit_account], self.accounts[t.credit_account]
        if debit["currency"] != t.currency or credit["currency"] != t.currency:
            return "currency_must_match_accounts"
        spent = debit["debits_posted"] + debit["debits_pending"] + t.amount
        if not debit["overdraft"] and spent > debit["credits_posted"]:
            return "insufficient_funds"
        if spent > MAX:
            return "overflows_debits"
        if credit["credits_posted"] + credit["credits_pending"] + t.amount > MAX:
            return "overflows_credits"
        if t.kind is K.PENDING:
            debit["debits_pending"] += t.amount
            credit["credits_pending"] += t.amount
        else:
            debit["debits_posted"] += t.amount
            credit["credits_posted"] += t.amount
        self._commit(t, t.debit_account, t.credit_account, t.amount, t.currency, in_batch)
        return "ok"

    def _exists(self, t: Transfer, s: dict[str, Any]) -> str:
        optional = t.kind in (K.POST_PENDING, K.VOID)  # empty fields default to the pending's
        if t.kind != s["kind"]:
            return "exists_with_different_kind"
        if t.pending_id != s["pending_id"]:
            return "exists_with_different_pending_id"
        for name in ("debit_account", "credit_account", "amount", "currency"):
            given = getattr(t, name)
            if (given or not optional) and given != s[name]:
                return f"exists_with_different_{name}"
        if t.payment_id != s["payment_id"]:
            return "exists_with_different_payment_id"
        return "exists"

    def _second_phase(self, t: Transfer, in_batch: set[str]) -> str:
        p = self.transfers.get(t.pending_id)
        if p is None:
            return "pending_transfer_not_found"
        if p["kind"] is not K.PENDING:
            return "pending_transfer_not_pending"
        if t.debit_account and t.debit_account != p["debit_account"]:
            return "pending_accounts_must_match"
        if t.credit_account and t.credit_account != p["credit_account"]:
            return "pending_accounts_must_match"
        if t.currency and t.currency != p["currency"]:
            return "pending_currency_must_match"
        if p["state"] == "posted":
            return "pending_already_posted"
        if p["state"] == "voided":
            return "pending_already_voided"
        amount = t.amount if t.amount else p["amount"]
        if amount > p["amount"] or (t.kind is K.VOID and amount != p["amount"]):
            return "pending_amount_exceeded"
        debit, credit = self.accounts[p["debit_account"]], self.accounts[p["credit_account"]]
        debit["debits_pending"] -= p["amount"]
        credit["credits_pending"] -= p["amount"]
        if t.kind is K.POST_PENDING:
            debit["debits_posted"] += amount
            credit["credits_posted"] += amount
            p["state"] = "posted"
        else:
            p["state"] = "voided"
        self._commit(t, p["debit_account"], p["credit_account"], amount, p["currency"], in_batch)
        return "ok"

    def _commit(
        self, t: Transfer, debit: str, credit: str, amount: int, currency: str, in_batch: set[str]
    ) -> None:
        self.transfers[t.id] = {
            "kind": t.kind,
            "pending_id": t.pending_id,
            "debit_account": debit,
            "credit_account": credit,
            "amount": amount,
            "currency": currency,
            "payment_id": t.payment_id,
            "state": "pending" if t.kind is K.PENDING else None,
        }
        in_batch.add(t.id)
        self.journal.append((t.id, t.kind.value, debit, credit, amount, currency, t.payment_id))

    def pending(self) -> dict[str, dict[str, Any]]:
        return {k: s for k, s in self.transfers.items() if s["kind"] is K.PENDING}


# -- strategies --------------------------------------------------------------------------------

ALL_ACCOUNTS = [a for a, _, _ in ACCOUNTS]
good_ids = st.sampled_from(IDS)
good_amounts = st.integers(min_value=1, max_value=400)
# Now and then an amount that an overdraft account can move, to reach the 64-bit counter limits.
new_amounts = st.one_of(*[good_amounts] * 9, st.integers(min_value=MAX // 3, max_value=MAX))
payment_ids = st.sampled_from(["", "pay-1", "pay-2"])
linked = st.sampled_from([False, False, False, True])

# One way each to break a field of an otherwise valid transfer.
BREAKS: dict[str, st.SearchStrategy[Any]] = {
    "id": st.sampled_from(BAD_IDS),
    "amount": st.sampled_from([0, *BAD_AMOUNTS]),
    "currency": st.sampled_from(["USD", "XXX", "", "JPY", "EUR"]),
    "debit_account": st.sampled_from([*ALL_ACCOUNTS, "ghost"]),
    "credit_account": st.sampled_from([*ALL_ACCOUNTS, "ghost"]),
    "pending_id": st.sampled_from(["", *IDS[:3]]),
    "kind": st.sampled_from(list(TransferKind)),
}


def maybe_broken(draw: st.DrawFn, t: Transfer) -> Transfer:
    """`t` as it is three times out of four, else with one or two fields set to a random value."""
    for _ in range(draw(st.sampled_from([0, 0, 0, 0, 0, 0, 1, 2]))):
        field = draw(st.sampled_from(sorted(BREAKS)))
        t = replace(t, **{field: draw(BREAKS[field])})
    return t


@st.composite
def new_transfers(draw: st.DrawFn) -> Transfer:
    """A post or pending transfer between two accounts of its currency, sometimes broken."""
    cur = draw(st.sampled_from(["EUR", "EUR", "JPY"]))
    debit, credit = draw(st.permutations(BY_CURRENCY[cur]))[:2]
    t = Transfer(
        id=draw(good_ids),
        debit_account=debit,
        credit_account=credit,
        amount=draw(new_amounts),
        currency=cur,
        kind=draw(st.sampled_from([K.POST, K.PENDING])),
        linked=draw(linked),
        payment_id=draw(payment_ids),
    )
    return maybe_broken(draw, t)


@st.composite
def second_phases(draw: st.DrawFn, pending: dict[str, dict[str, Any]] | None = None) -> Transfer:
    """A post_pending (full or partial) or void of one of `pending`, or of any id."""
    if pending:
        pending_id = draw(st.sampled_from(sorted(pending)))
        p = pending[pending_id]
        amount = draw(st.sampled_from([0, 0, p["amount"], p["amount"] + 1, -1]))
        if amount == -1:
            amount = draw(st.integers(min_value=1, max_value=p["amount"]))
        given = draw(st.sampled_from([(), (), (), ("debit_account", "credit_account", "currency")]))
        fields = {name: p[name] for name in given}
    else:
        pending_id = draw(st.sampled_from([*IDS, ""]))
        amount = draw(st.sampled_from([0, 0, 0, 50]))
        fields = {}
    t = Transfer(
        id=draw(good_ids),
        amount=amount,
        kind=draw(st.sampled_from([K.POST_PENDING, K.POST_PENDING, K.VOID])),
        pending_id=pending_id,
        linked=draw(linked),
        payment_id=draw(payment_ids),
        **fields,
    )
    return maybe_broken(draw, t)


any_transfer = st.one_of(new_transfers(), new_transfers(), second_phases())

CHANGES: dict[str, st.SearchStrategy[Any]] = {
    "kind": st.sampled_from(list(TransferKind)),
    "pending_id": st.sampled_from(IDS),
    "debit_account": st.sampled_from(ALL_ACCOUNTS),
    "credit_account": st.sampled_from(ALL_ACCOUNTS),
    "amount": good_amounts,
    "currency": st.sampled_from(["EUR", "JPY", "USD"]),
    "payment_id": payment_ids,
}

# -- the machine -------------------------------------------------------------------------------


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.store = MemoryStore()
        self.model = Model()
        self.now = 0.0
        self.accepted: list[Transfer] = []
        self.results: list[str] = []
        self.expected: list[str] = []

    def submit(self, batch: list[Transfer]) -> None:
        self.now += 1.0
        self.expected = self.model.apply(batch)
        results = submit_transfers(self.store, TENANT, batch, self.now)
        self.results = [r.value for r in results]
        self.accepted += [t for t, r in zip(batch, self.results, strict=True) if r == "ok"]

    @initialize(funding=st.lists(st.integers(min_value=0, max_value=2_000), min_size=5, max_size=5))
    def open_accounts(self, funding: list[int]) -> None:
        accounts = [Account(a, c, overdraft) for a, c, overdraft in ACCOUNTS]
        assert create_accounts(self.store, TENANT, accounts) == [AccountResult.OK] * len(ACCOUNTS)
        for a, c, overdraft in ACCOUNTS:
            self.model.open(a, c, overdraft)
        funded = ["e1", "e2", "e3", "j1", "j2"]
        self.submit(
            [
                Transfer(f"fund-{a}", f"{a[0]}0", a, amount, "EUR" if a[0] == "e" else "JPY")
                for a, amount in zip(funded, funding, strict=True)
            ]
        )

    @rule(batch=st.lists(any_transfer, min_size=1, max_size=5))
    def submit_batch(self, batch: list[Transfer]) -> None:
        self.submit(batch)

    @precondition(lambda self: self.model.pending())
    @rule(data=st.data(), extra=st.lists(any_transfer, max_size=2))
    def settle_pending(self, data: st.DataObject, extra: list[Transfer]) -> None:
        settle = data.draw(second_phases(self.model.pending()))
        self.submit([settle, *extra] if data.draw(st.booleans()) else [*extra, settle])

    @precondition(lambda self: self.accepted)
    @rule(data=st.data(), change=st.sampled_from([None, None, *CHANGES]))
    def repeat_accepted(self, data: st.DataObject, change: str | None) -> None:
        earlier = data.draw(st.sampled_from(self.accepted))
        again = replace(earlier, linked=False)
        if change is not None:
            again = replace(again, **{change: data.draw(CHANGES[change])})
        self.submit([again])

    @precondition(lambda self: self.accepted)
    @rule(data=st.data(), size=st.integers(min_value=1, max_value=3), tail=new_transfers())
    def linked_chain(self, data: st.DataObject, size: int, tail: Transfer) -> None:
        members = any_transfer
        if self.model.pending():
            members = st.one_of(any_transfer, second_phases(self.model.pending()))
        chain = [replace(data.draw(members), linked=True) for _ in range(size)]
        if data.draw(st.booleans()):
            chain.insert(data.draw(st.integers(0, size)), data.draw(st.sampled_from(self.accepted)))
            chain = [replace(t, linked=True) for t in chain]
        # Transfers after the chain see what its rollback left (pending states, funds, ids).
        after = data.draw(st.lists(members.map(lambda t: replace(t, linked=False)), max_size=2))
        self.submit([*chain, tail, *after])

    # -- invariants ----------------------------------------------------------------------------

    def balances(self) -> dict[str, Account]:
        return read_balances(self.store, TENANT, [a for a, _, _ in ACCOUNTS])

    @invariant()
    def result_codes_match_the_model(self) -> None:
        assert self.results == self.expected

    @invariant()
    def balances_match_the_model(self) -> None:
        actual = {
            a.id: {
                "currency": a.currency,
                "overdraft": a.overdraft,
                "debits_posted": a.debits_posted,
                "debits_pending": a.debits_pending,
                "credits_posted": a.credits_posted,
                "credits_pending": a.credits_pending,
            }
            for a in self.balances().values()
        }
        assert actual == self.model.accounts

    @invariant()
    def no_overdraft_without_permission(self) -> None:
        for a in self.balances().values():
            if not a.overdraft:
                assert a.debits_posted + a.debits_pending <= a.credits_posted, a

    @invariant()
    def debits_equal_credits_per_currency(self) -> None:
        totals: Counter[tuple[str, str]] = Counter()
        for a in self.balances().values():
            totals[a.currency, "debits_posted"] += a.debits_posted
            totals[a.currency, "credits_posted"] += a.credits_posted
            totals[a.currency, "debits_pending"] += a.debits_pending
            totals[a.currency, "credits_pending"] += a.credits_pending
        for cur in BY_CURRENCY:
            assert totals[cur, "debits_posted"] == totals[cur, "credits_posted"]
            assert totals[cur, "debits_pending"] == totals[cur, "credits_pending"]

    @invariant()
    def journal_matches_the_model(self) -> None:
        journal = read_journal(self.store, TENANT, 0, 10**6)
        actual = [
            (
                e.transfer_id,
                e.kind,
                e.debit_account,
                e.credit_account,
                e.amount,
                e.currency,
                e.payment_id,
            )
            for e in journal
        ]
        assert actual == self.model.journal

    @invariant()
    def journal_has_each_transfer_once_and_chains(self) -> None:
        journal = read_journal(self.store, TENANT, 0, 10**6)
        ids = [e.transfer_id for e in journal]
        assert len(ids) == len(set(ids))
        assert first_broken_link(journal) == 0

    @invariant()
    def balances_replay_from_the_journal(self) -> None:
        journal = read_journal(self.store, TENANT, 0, 10**6)
        # The journal does not name the pending transfer a post_pending or void settles (see
        # test_journal.py), so that one field is looked up in the stored transfer.
        settling = [e.transfer_id for e in journal if e.kind in ("post_pending", "void")]
        with self.store.unit_of_work() as uow:
            stored = uow.get_transfers(TENANT, settling)
        replay = {a: [0, 0, 0, 0] for a, _, _ in ACCOUNTS}
        pending_amounts: dict[str, int] = {}
        for e in journal:
            debit, credit = replay[e.debit_account], replay[e.credit_account]
            if e.kind in ("post_pending", "void"):
                released = pending_amounts.pop(stored[e.transfer_id].pending_id)
                debit[1] -= released
                credit[3] -= released
            if e.kind == "pending":
                pending_amounts[e.transfer_id] = e.amount
                debit[1] += e.amount
                credit[3] += e.amount
            elif e.kind in ("post", "post_pending"):
                debit[0] += e.amount
                credit[2] += e.amount
        actual = {
            a.id: [a.debits_posted, a.debits_pending, a.credits_posted, a.credits_pending]
            for a in self.balances().values()
        }
        assert actual == replay


LedgerMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLedgerStateMachine = LedgerMachine.TestCase
