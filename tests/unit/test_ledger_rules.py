"""The ledger rules (docs/ledger.md), one result code at a time.

Every refusal is checked the same way (`Ledger.refused`): the result codes are exactly the ones
expected, and no account balance, stored transfer or journal entry changed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from ledger_harness import Ledger, counters

from reference_impl.core.journal import JournalHead
from reference_impl.core.ledger import (
    MAX_ID_LENGTH,
    Account,
    AccountResult,
    LedgerView,
    PendingState,
    Transfer,
    TransferKind,
    TransferResult,
    apply_transfers,
)
from reference_impl.core.money import MAX_AMOUNT

K = TransferKind
R = TransferResult

# The fixture's accounts: alice 10_000 EUR, bob 500 EUR, carol EUR with overdraft, yen 1_000 JPY.


def post(
    tid: str, debit: str = "alice", credit: str = "bob", amount: int = 100, **kw: Any
) -> Transfer:
    kw.setdefault("currency", "EUR")
    return Transfer(tid, debit, credit, amount, **kw)


def pend(
    tid: str, debit: str = "alice", credit: str = "bob", amount: int = 100, **kw: Any
) -> Transfer:
    return post(tid, debit, credit, amount, kind=K.PENDING, **kw)


def post_pending(tid: str, pending_id: str, amount: int = 0, **kw: Any) -> Transfer:
    return Transfer(tid, amount=amount, kind=K.POST_PENDING, pending_id=pending_id, **kw)


def void(tid: str, pending_id: str, amount: int = 0, **kw: Any) -> Transfer:
    return Transfer(tid, amount=amount, kind=K.VOID, pending_id=pending_id, **kw)


def ok(led: Ledger, *batch: Transfer) -> None:
    assert led.submit(*batch) == [R.OK] * len(batch)


# -- refusals: one case per result code (some codes have several ways in) ---------------------

Refusal = tuple[list[Transfer], list[TransferResult]]
Case = Callable[[Ledger], Refusal]
CASES: dict[str, Case] = {}


def case(name: str) -> Callable[[Case], Case]:
    def register(fn: Case) -> Case:
        assert name not in CASES
        CASES[name] = fn
        return fn

    return register


@case("id_must_not_be_empty")
def _(led: Ledger) -> Refusal:
    return [post("")], [R.ID_MUST_NOT_BE_EMPTY]


@case("id_too_long")
def _(led: Ledger) -> Refusal:
    return [post("x" * (MAX_ID_LENGTH + 1))], [R.ID_TOO_LONG]


@case("amount_must_be_integer/float")
def _(led: Ledger) -> Refusal:
    return [post("t", amount=100.0)], [R.AMOUNT_MUST_BE_INTEGER]  # type: ignore[arg-type]


@case("amount_must_be_integer/bool")
def _(led: Ledger) -> Refusal:
    return [post("t", amount=True)], [R.AMOUNT_MUST_BE_INTEGER]


@case("amount_must_be_integer/two_phase_float")
def _(led: Ledger) -> Refusal:
    ok(led, pend("p"))
    return [post_pending("pp", "p", amount=50.0)], [R.AMOUNT_MUST_BE_INTEGER]  # type: ignore[arg-type]


@case("amount_must_be_positive/zero")
def _(led: Ledger) -> Refusal:
    return [post("t", amount=0)], [R.AMOUNT_MUST_BE_POSITIVE]


@case("amount_must_be_positive/negative")
def _(led: Ledger) -> Refusal:
    return [post("t", "bob", "alice", amount=-100)], [R.AMOUNT_MUST_BE_POSITIVE]


@case("amount_must_be_positive/zero_pending")
def _(led: Ledger) -> Refusal:
    return [pend("t", amount=0)], [R.AMOUNT_MUST_BE_POSITIVE]


@case("amount_must_be_positive/negative_post_pending")
def _(led: Ledger) -> Refusal:
    ok(led, pend("p"))
    return [post_pending("pp", "p", amount=-1)], [R.AMOUNT_MUST_BE_POSITIVE]


@case("amount_exceeds_maximum")
def _(led: Ledger) -> Refusal:
    return [post("t", "carol", "bob", amount=MAX_AMOUNT + 1)], [R.AMOUNT_EXCEEDS_MAXIMUM]


@case("currency_unknown")
def _(led: Ledger) -> Refusal:
    return [post("t", currency="EURO")], [R.CURRENCY_UNKNOWN]


@case("currency_unknown/empty")
def _(led: Ledger) -> Refusal:
    return [post("t", currency="")], [R.CURRENCY_UNKNOWN]


@case("currency_unknown/two_phase")
def _(led: Ledger) -> Refusal:
    ok(led, pend("p"))
    return [post_pending("pp", "p", currency="XYZ")], [R.CURRENCY_UNKNOWN]


@case("accounts_must_be_different")
def _(led: Ledger) -> Refusal:
    return [post("t", "alice", "alice")], [R.ACCOUNTS_MUST_BE_DIFFERENT]


@case("debit_account_not_found")
def _(led: Ledger) -> Refusal:
    return [post("t", "mallory", "bob")], [R.DEBIT_ACCOUNT_NOT_FOUND]


@case("credit_account_not_found")
def _(led: Ledger) -> Refusal:
    return [post("t", "alice", "mallory")], [R.CREDIT_ACCOUNT_NOT_FOUND]


@case("debit_account_not_found/other_tenant")
def _(led: Ledger) -> Refusal:
    other = Ledger("globex")
    other.store = led.store
    other.open("dave", funds=1_000)
    return [post("t", "dave", "bob")], [R.DEBIT_ACCOUNT_NOT_FOUND]


@case("currency_must_match_accounts/credit")
def _(led: Ledger) -> Refusal:
    return [post("t", "alice", "yen")], [R.CURRENCY_MUST_MATCH_ACCOUNTS]


@case("currency_must_match_accounts/debit")
def _(led: Ledger) -> Refusal:
    return [post("t", "yen", "alice", currency="JPY")], [R.CURRENCY_MUST_MATCH_ACCOUNTS]


@case("currency_must_match_accounts/both")
def _(led: Ledger) -> Refusal:
    return [post("t", currency="USD")], [R.CURRENCY_MUST_MATCH_ACCOUNTS]


@case("insufficient_funds")
def _(led: Ledger) -> Refusal:
    return [post("t", "bob", "alice", amount=501)], [R.INSUFFICIENT_FUNDS]


@case("insufficient_funds/pending_reserves")
def _(led: Ledger) -> Refusal:
    ok(led, pend("p", "bob", "alice", amount=300))
    return [post("t", "bob", "alice", amount=201)], [R.INSUFFICIENT_FUNDS]


@case("insufficient_funds/pending_credit_is_not_funds")
def _(led: Ledger) -> Refusal:
    ok(led, pend("p", "alice", "bob", amount=5_000))
    return [post("t", "bob", "carol", amount=501)], [R.INSUFFICIENT_FUNDS]


@case("insufficient_funds/pending")
def _(led: Ledger) -> Refusal:
    return [pend("t", "bob", "alice", amount=501)], [R.INSUFFICIENT_FUNDS]


@case("overflows_debits")
def _(led: Ledger) -> Refusal:
    led.open("sink")
    ok(led, post("t1", "carol", "sink", amount=MAX_AMOUNT - 10))
    return [post("t2", "carol", "bob", amount=11)], [R.OVERFLOWS_DEBITS]


@case("overflows_debits/pending")
def _(led: Ledger) -> Refusal:
    led.open("sink")
    ok(led, pend("p", "carol", "sink", amount=MAX_AMOUNT))
    return [pend("t2", "carol", "bob", amount=1)], [R.OVERFLOWS_DEBITS]


@case("overflows_credits")
def _(led: Ledger) -> Refusal:
    led.open("sink")
    ok(led, post("t1", "carol", "sink", amount=MAX_AMOUNT))
    return [post("t2", "alice", "sink", amount=1)], [R.OVERFLOWS_CREDITS]


@case("overflows_credits/pending")
def _(led: Ledger) -> Refusal:
    led.open("sink")
    ok(led, pend("p", "carol", "sink", amount=MAX_AMOUNT - 1))
    return [pend("t2", "bob", "sink", amount=2)], [R.OVERFLOWS_CREDITS]


@case("pending_id_must_be_empty")
def _(led: Ledger) -> Refusal:
    ok(led, pend("p"))
    return [post("t", pending_id="p")], [R.PENDING_ID_MUST_BE_EMPTY]


@case("pending_id_must_be_empty/pending")
def _(led: Ledger) -> Refusal:
    ok(led, pend("p"))
    return [pend("t", pending_id="p")], [R.PENDING_ID_MUST_BE_EMPTY]


@case("pending_id_required/post_pending")
def _(led: Ledger) -> Refusal:
    return [post_pending("pp", "")], [R.PENDING_ID_REQUIRED]


@case("pending_id_required/void")
def _(led: Ledger) -> Refusal:
    return [void("v", "")], [R.PENDING_ID_REQUIRED]


@case("pending_id_must_be_different")
def _(led: Ledger) -> Refusal:
    return [post_pending("pp", "pp")], [R.PENDING_ID_MUST_BE_DIFFERENT]


@case("pending_transfer_not_found")
def _(led: Ledger) -> Refusal:
    return [post_pending("pp", "nope")], [R.PENDING_TRANSFER_NOT_FOUND]


@case("pending_transfer_not_found/void")
def _(led: Ledger) -> Refusal:
    return [void("v", "nope")], [R.PENDING_TRANSFER_NOT_FOUND]


@case("pending_transfer_not_pending")
def _(led: Ledger) -> Refusal:
    ok(led, post("t1"))
    return [post_pending("pp", "t1")], [R.PENDING_TRANSFER_NOT_PENDING]


@case("pending_transfer_not_pending/post_pending")
def _(led: Ledger) -> Refusal:
    ok(led, pend("p"), post_pending("pp", "p", amount=10))
    return [void("v", "pp")], [R.PENDING_TRANSFER_NOT_PENDING]


@case("pending_accounts_must_match/debit")
def _(led: Ledger) -> Refusal:
    ok(led, pend("p"))
    return [post_pending("pp", "p", debit_account="carol")], [R.PENDING_ACCOUNTS_MUST_MATCH]


@case("pending_accounts_must_match/credit")
def _(led: Ledger) -> Refusal:
    ok(led, pend("p"))
    return [void("v", "p", credit_account="carol")], [R.PENDING_ACCOUNTS_MUST_MATCH]


@case("pending_currency_must_match")
def _(led: Ledger) -> Refusal:
    ok(led, pend("p"))
    return [post_pending("pp", "p", currency="JPY")], [R.PENDING_CURRENCY_MUST_MATCH]


@case("pending_amount_exceeded")
def _(led: Ledger) -> Refusal:
    ok(led, pend("p", amount=100))
    return [post_pending("pp", "p", amount=101)], [R.PENDING_AMOUNT_EXCEEDED]


@case("pending_amount_exceeded/partial_void")
def _(led: Ledger) -> Refusal:
    ok(led, pend("p", amount=100))
    return [void("v", "p", amount=40)], [R.PENDING_AMOUNT_EXCEEDED]


@case("pending_already_posted")
def _(led: Ledger) -> Refusal:
    ok(led, pend("p"), post_pending("pp", "p", amount=30))
    return [post_pending("pp2", "p", amount=30)], [R.PENDING_ALREADY_POSTED]


@case("pending_already_posted/void")
def _(led: Ledger) -> Refusal:
    ok(led, pend("p"), post_pending("pp", "p"))
    return [void("v", "p")], [R.PENDING_ALREADY_POSTED]


@case("pending_already_voided")
def _(led: Ledger) -> Refusal:
    ok(led, pend("p"), void("v", "p"))
    return [post_pending("pp", "p")], [R.PENDING_ALREADY_VOIDED]


@case("pending_already_voided/void")
def _(led: Ledger) -> Refusal:
    ok(led, pend("p"))
    ok(led, void("v", "p"))
    return [void("v2", "p")], [R.PENDING_ALREADY_VOIDED]


@case("exists")
def _(led: Ledger) -> Refusal:
    ok(led, post("t1", payment_id="pay-1"))
    return [post("t1", payment_id="pay-1")], [R.EXISTS]


@case("exists/even_when_it_could_no_longer_apply")
def _(led: Ledger) -> Refusal:
    ok(led, post("t1", "bob", "alice", amount=500))
    return [post("t1", "bob", "alice", amount=500)], [R.EXISTS]


@case("exists/two_phase_with_fields_left_out")
def _(led: Ledger) -> Refusal:
    ok(led, pend("p", amount=100), post_pending("pp", "p", amount=60))
    return [post_pending("pp", "p", amount=60), post_pending("pp", "p")], [R.EXISTS, R.EXISTS]


@case("exists/two_phase_with_fields_given")
def _(led: Ledger) -> Refusal:
    ok(led, pend("p", amount=100), void("v", "p"))
    full = void("v", "p", amount=100, debit_account="alice", credit_account="bob", currency="EUR")
    return [full], [R.EXISTS]


@case("exists_with_different_kind")
def _(led: Ledger) -> Refusal:
    ok(led, post("t1"))
    return [pend("t1")], [R.EXISTS_WITH_DIFFERENT_KIND]


@case("exists_with_different_kind/two_phase")
def _(led: Ledger) -> Refusal:
    ok(led, pend("p"), post_pending("pp", "p"))
    return [void("pp", "p")], [R.EXISTS_WITH_DIFFERENT_KIND]


@case("exists_with_different_pending_id")
def _(led: Ledger) -> Refusal:
    ok(led, pend("p1"), pend("p2"), post_pending("pp", "p1"))
    return [post_pending("pp", "p2")], [R.EXISTS_WITH_DIFFERENT_PENDING_ID]


@case("exists_with_different_debit_account")
def _(led: Ledger) -> Refusal:
    ok(led, post("t1"))
    return [post("t1", "carol", "bob")], [R.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT]


@case("exists_with_different_credit_account")
def _(led: Ledger) -> Refusal:
    ok(led, post("t1"))
    return [post("t1", "alice", "carol")], [R.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT]


@case("exists_with_different_amount")
def _(led: Ledger) -> Refusal:
    ok(led, post("t1", amount=100))
    return [post("t1", amount=101)], [R.EXISTS_WITH_DIFFERENT_AMOUNT]


@case("exists_with_different_amount/partial_post")
def _(led: Ledger) -> Refusal:
    ok(led, pend("p", amount=100), post_pending("pp", "p", amount=60))
    return [post_pending("pp", "p", amount=100)], [R.EXISTS_WITH_DIFFERENT_AMOUNT]


@case("exists_with_different_currency")
def _(led: Ledger) -> Refusal:
    ok(led, post("t1"))
    return [post("t1", currency="USD")], [R.EXISTS_WITH_DIFFERENT_CURRENCY]


@case("exists_with_different_payment_id")
def _(led: Ledger) -> Refusal:
    ok(led, post("t1", payment_id="pay-1"))
    return [post("t1", payment_id="pay-2")], [R.EXISTS_WITH_DIFFERENT_PAYMENT_ID]


@case("linked_event_failed")
def _(led: Ledger) -> Refusal:
    batch = [
        post("a", linked=True),
        post("b", "bob", "alice", amount=10_000, linked=True),
        post("c", "carol", "alice"),
    ]
    return batch, [R.LINKED_EVENT_FAILED, R.INSUFFICIENT_FUNDS, R.LINKED_EVENT_FAILED]


@case("linked_event_failed/first_fails")
def _(led: Ledger) -> Refusal:
    batch = [post("a", "mallory", "bob", linked=True), post("b"), post("c", amount=0)]
    return batch, [R.DEBIT_ACCOUNT_NOT_FOUND, R.LINKED_EVENT_FAILED, R.AMOUNT_MUST_BE_POSITIVE]


@case("linked_event_failed/exists_breaks_the_chain")
def _(led: Ledger) -> Refusal:
    ok(led, post("t1"))
    batch = [post("a", linked=True), post("t1", linked=True), post("c")]
    return batch, [R.LINKED_EVENT_FAILED, R.EXISTS, R.LINKED_EVENT_FAILED]


@case("linked_event_failed/two_phase_rolled_back")
def _(led: Ledger) -> Refusal:
    batch = [
        pend("p", amount=400, linked=True),
        post_pending("pp", "p", amount=300, linked=True),
        post("x", "bob", "carol", amount=10_000),
        # The chain's pending transfer no longer exists after the rollback.
        void("v", "p"),
    ]
    codes = [R.LINKED_EVENT_FAILED, R.LINKED_EVENT_FAILED, R.INSUFFICIENT_FUNDS]
    return batch, [*codes, R.PENDING_TRANSFER_NOT_FOUND]


@case("linked_event_chain_open")
def _(led: Ledger) -> Refusal:
    batch = [post("a", linked=True), post("b", linked=True)]
    return batch, [R.LINKED_EVENT_FAILED, R.LINKED_EVENT_CHAIN_OPEN]


@case("linked_event_chain_open/single")
def _(led: Ledger) -> Refusal:
    return [post("a", linked=True)], [R.LINKED_EVENT_CHAIN_OPEN]


@pytest.mark.parametrize("name", sorted(CASES))
def test_refused_transfer_writes_nothing(ledger: Ledger, name: str) -> None:
    batch, expected = CASES[name](ledger)
    assert ledger.refused(*batch) == expected


def test_every_refusal_code_has_a_case() -> None:
    covered = {name.split("/")[0] for name in CASES}
    refusals = {r.value for r in TransferResult} - {"ok", "id_already_in_batch"}
    assert refusals <= covered, sorted(refusals - covered)
    assert covered <= refusals


# -- codes that come with a partial write -----------------------------------------------------


def test_id_already_in_batch_keeps_only_the_first(ledger: Ledger) -> None:
    alice, bob = ledger.balances("alice"), ledger.balances("bob")
    journal_before = len(ledger.journal())
    results = ledger.submit(post("t1", amount=100), post("t1", amount=100), post("t1", amount=7))
    assert results == [R.OK, R.ID_ALREADY_IN_BATCH, R.ID_ALREADY_IN_BATCH]
    assert ledger.balances("alice")[0] == alice[0] + 100
    assert ledger.balances("bob")[2] == bob[2] + 100
    assert [e.transfer_id for e in ledger.journal()[journal_before:]] == ["t1"]


def test_a_refused_transfer_does_not_claim_its_id(ledger: Ledger) -> None:
    """A transfer that fails is not stored, so a later one in the batch may use its id."""
    results = ledger.submit(post("t1", "bob", "alice", amount=501), post("t1", amount=10))
    assert results == [R.INSUFFICIENT_FUNDS, R.OK]
    stored = ledger.transfer("t1")
    assert stored is not None and (stored.debit_account, stored.amount) == ("alice", 10)


def test_a_rolled_back_chain_frees_its_ids_and_funds(ledger: Ledger) -> None:
    results = ledger.submit(
        post("a", "bob", "carol", amount=500, linked=True),
        post("b", "alice", "yen"),
        post("a", "bob", "alice", amount=500),
    )
    assert results == [R.LINKED_EVENT_FAILED, R.CURRENCY_MUST_MATCH_ACCOUNTS, R.OK]
    assert ledger.balances("carol") == (0, 0, 0, 0)
    assert ledger.balances("bob") == (500, 0, 500, 0)
    assert [e.transfer_id for e in ledger.journal()[-1:]] == ["a"]
    stored = ledger.transfer("a")
    assert stored is not None and stored.credit_account == "alice"


def test_a_rolled_back_chain_leaves_an_earlier_pending_transfer_pending(ledger: Ledger) -> None:
    ok(ledger, pend("p1", amount=100), pend("p2", amount=100))
    results = ledger.submit(
        post_pending("pp", "p1", linked=True),
        void("v", "p2", linked=True),
        post("x", "mallory", "bob"),
        post("y", amount=1),
    )
    assert results == [
        R.LINKED_EVENT_FAILED,
        R.LINKED_EVENT_FAILED,
        R.DEBIT_ACCOUNT_NOT_FOUND,
        R.OK,
    ]
    for pending_id in ("p1", "p2"):
        stored = ledger.transfer(pending_id)
        assert stored is not None and stored.pending_state is PendingState.PENDING
    assert ledger.balances("alice") == (1, 200, 10_000, 0)
    ok(ledger, post_pending("pp", "p1"), void("v", "p2"))


def test_a_failed_chain_leaves_the_rest_of_the_batch(ledger: Ledger) -> None:
    before = len(ledger.journal())
    results = ledger.submit(
        post("x", amount=1),
        post("a", linked=True),
        post("b", "bob", "alice", amount=10**6),
        post("y", amount=2, linked=True),
        post("z", amount=3),
    )
    assert results == [R.OK, R.LINKED_EVENT_FAILED, R.INSUFFICIENT_FUNDS, R.OK, R.OK]
    assert [e.transfer_id for e in ledger.journal()[before:]] == ["x", "y", "z"]
    assert ledger.balances("bob")[2] == 500 + 6


# -- what is allowed ---------------------------------------------------------------------------


def test_post_moves_posted_balances_and_journals_once(ledger: Ledger) -> None:
    before = len(ledger.journal())
    ok(ledger, post("t1", amount=250, payment_id="pay-1"))
    assert ledger.balances("alice") == (250, 0, 10_000, 0)
    assert ledger.balances("bob") == (0, 0, 750, 0)
    [entry] = ledger.journal()[before:]
    assert (entry.transfer_id, entry.payment_id, entry.kind) == ("t1", "pay-1", "post")
    assert (entry.debit_account, entry.credit_account, entry.amount, entry.currency) == (
        "alice",
        "bob",
        250,
        "EUR",
    )
    assert entry.at == ledger.now


def test_debit_up_to_the_whole_balance_is_allowed(ledger: Ledger) -> None:
    ok(ledger, pend("p", "bob", "alice", amount=200), post("t", "bob", "alice", amount=300))
    assert ledger.account("bob").available == 0
    assert ledger.refused(post("t2", "bob", "alice", amount=1)) == [R.INSUFFICIENT_FUNDS]


def test_overdraft_account_may_go_below_zero(ledger: Ledger) -> None:
    ok(ledger, post("t1", "carol", "alice", amount=10**9), pend("p", "carol", "bob", amount=5))
    assert ledger.balances("carol") == (10**9, 5, 0, 0)
    assert ledger.account("carol").available == -(10**9) - 5


def test_maximum_amount_is_allowed(ledger: Ledger) -> None:
    ledger.open("sink")
    ok(ledger, post("t1", "carol", "sink", amount=MAX_AMOUNT))
    assert ledger.balances("carol")[0] == MAX_AMOUNT
    assert ledger.balances("sink")[2] == MAX_AMOUNT


def test_transfer_in_a_zero_exponent_currency(ledger: Ledger) -> None:
    ledger.open("yen2", "JPY")
    ok(ledger, post("t1", "yen", "yen2", amount=1_000, currency="JPY"))
    assert ledger.balances("yen2") == (0, 0, 1_000, 0)


def test_pending_reserves_without_posting(ledger: Ledger) -> None:
    ok(ledger, pend("p", amount=700))
    assert ledger.balances("alice") == (0, 700, 10_000, 0)
    assert ledger.balances("bob") == (0, 0, 500, 700)
    stored = ledger.transfer("p")
    assert stored is not None and stored.pending_state is PendingState.PENDING
    assert ledger.journal()[-1].kind == "pending"


@pytest.mark.parametrize("amount", [0, 700])
def test_post_pending_in_full(ledger: Ledger, amount: int) -> None:
    ok(ledger, pend("p", amount=700))
    ok(ledger, post_pending("pp", "p", amount=amount, payment_id="pay"))
    assert ledger.balances("alice") == (700, 0, 10_000, 0)
    assert ledger.balances("bob") == (0, 0, 1_200, 0)
    pending, posted = ledger.transfer("p"), ledger.transfer("pp")
    assert pending is not None and pending.pending_state is PendingState.POSTED
    assert posted is not None and (posted.debit_account, posted.amount) == ("alice", 700)
    entry = ledger.journal()[-1]
    assert (entry.kind, entry.amount, entry.debit_account, entry.credit_account) == (
        "post_pending",
        700,
        "alice",
        "bob",
    )


def test_partial_post_releases_the_rest(ledger: Ledger) -> None:
    ok(ledger, pend("p", amount=700))
    ok(ledger, post_pending("pp", "p", amount=300))
    assert ledger.balances("alice") == (300, 0, 10_000, 0)
    assert ledger.balances("bob") == (0, 0, 800, 0)
    assert ledger.journal()[-1].amount == 300
    # The released 400 is available again and the pending transfer cannot be posted twice.
    assert ledger.account("alice").available == 9_700
    assert ledger.refused(post_pending("pp2", "p", amount=400)) == [R.PENDING_ALREADY_POSTED]


def test_post_pending_with_matching_accounts_and_currency_given(ledger: Ledger) -> None:
    ok(ledger, pend("p", amount=700))
    full = post_pending("pp", "p", 1, debit_account="alice", credit_account="bob", currency="EUR")
    ok(ledger, full)
    assert ledger.balances("bob") == (0, 0, 501, 0)


def test_void_releases_the_reservation(ledger: Ledger) -> None:
    ok(ledger, pend("p", "bob", "alice", amount=500))
    assert ledger.account("bob").available == 0
    ok(ledger, void("v", "p"))
    assert ledger.balances("bob") == (0, 0, 500, 0)
    assert ledger.balances("alice") == (0, 0, 10_000, 0)
    stored = ledger.transfer("p")
    assert stored is not None and stored.pending_state is PendingState.VOIDED
    entry = ledger.journal()[-1]
    assert (entry.kind, entry.amount, entry.debit_account) == ("void", 500, "bob")


def test_pending_and_its_post_in_one_batch(ledger: Ledger) -> None:
    before = len(ledger.journal())
    results = ledger.submit(
        pend("p", amount=100), post_pending("pp", "p", amount=40), void("v", "p")
    )
    assert results == [R.OK, R.OK, R.PENDING_ALREADY_POSTED]
    assert ledger.balances("alice") == (40, 0, 10_000, 0)
    stored = ledger.transfer("p")
    assert stored is not None and stored.pending_state is PendingState.POSTED
    assert [e.kind for e in ledger.journal()[before:]] == ["pending", "post_pending"]


def test_linked_chain_commits_whole(ledger: Ledger) -> None:
    before = len(ledger.journal())
    results = ledger.submit(
        pend("p", "bob", "carol", amount=500, linked=True),
        post_pending("pp", "p", amount=200, linked=True),
        post("t", "carol", "alice", amount=200),
    )
    assert results == [R.OK, R.OK, R.OK]
    assert ledger.balances("bob") == (200, 0, 500, 0)
    assert ledger.balances("carol") == (200, 0, 200, 0)
    assert [e.transfer_id for e in ledger.journal()[before:]] == ["p", "pp", "t"]


# -- accounts ----------------------------------------------------------------------------------


def test_create_account_starts_at_zero(ledger: Ledger) -> None:
    assert ledger.create(Account("dave", "KWD", True, "Dave")) == [AccountResult.OK]
    dave = ledger.account("dave")
    assert (dave.currency, dave.overdraft, dave.holder_name) == ("KWD", True, "Dave")
    assert counters(dave) == (0, 0, 0, 0)


def test_create_account_ignores_balances_given_by_the_caller(ledger: Ledger) -> None:
    assert ledger.create(Account("dave", "EUR", credits_posted=1_000)) == [AccountResult.OK]
    assert ledger.balances("dave") == (0, 0, 0, 0)


ACCOUNT_REFUSALS = [
    (Account("bob", "EUR"), AccountResult.EXISTS),
    (Account("bob", "USD"), AccountResult.EXISTS_WITH_DIFFERENT_CURRENCY),
    (Account("bob", "EUR", overdraft=True), AccountResult.EXISTS_WITH_DIFFERENT_OVERDRAFT),
    (Account("bob", "EUR", holder_name="Bob"), AccountResult.EXISTS_WITH_DIFFERENT_HOLDER_NAME),
    (Account("", "EUR"), AccountResult.ID_MUST_NOT_BE_EMPTY),
    (Account("x" * (MAX_ID_LENGTH + 1), "EUR"), AccountResult.ID_TOO_LONG),
    (Account("dave", "EURO"), AccountResult.CURRENCY_UNKNOWN),
    (Account("dave", ""), AccountResult.CURRENCY_UNKNOWN),
]


@pytest.mark.parametrize(("account", "code"), ACCOUNT_REFUSALS)
def test_refused_account_writes_nothing(
    ledger: Ledger, account: Account, code: AccountResult
) -> None:
    accounts_before = dict(ledger.store.table("accounts"))
    assert ledger.create(account) == [code]
    assert dict(ledger.store.table("accounts")) == accounts_before


def test_every_account_code_has_a_case() -> None:
    covered = {code for _, code in ACCOUNT_REFUSALS}
    assert covered | {AccountResult.OK} == set(AccountResult)


def test_account_id_repeated_in_one_batch(ledger: Ledger) -> None:
    results = ledger.create(Account("dave", "EUR"), Account("dave", "EUR"), Account("dave", "USD"))
    assert results == [
        AccountResult.OK,
        AccountResult.EXISTS,
        AccountResult.EXISTS_WITH_DIFFERENT_CURRENCY,
    ]
    assert ledger.account("dave").currency == "EUR"


def test_account_id_of_maximum_length(ledger: Ledger) -> None:
    assert ledger.create(Account("x" * MAX_ID_LENGTH, "EUR")) == [AccountResult.OK]


# -- the pure core, without a store ------------------------------------------------------------


def test_apply_transfers_never_mutates_its_view() -> None:
    alice = Account("alice", "EUR", credits_posted=1_000)
    bob = Account("bob", "EUR")
    view = LedgerView({"alice": alice, "bob": bob}, {}, JournalHead())
    changes = apply_transfers(
        [post("t1", amount=600), post("t2", amount=600), pend("p", amount=400)], view, now=5.0
    )
    assert changes.results == [R.OK, R.INSUFFICIENT_FUNDS, R.OK]
    assert counters(alice) == (0, 0, 1_000, 0) and counters(bob) == (0, 0, 0, 0)
    assert counters(changes.accounts["alice"]) == (600, 400, 1_000, 0)
    assert counters(changes.accounts["bob"]) == (0, 0, 600, 400)
    assert [t.id for t in changes.transfers] == ["t1", "p"]
    assert [e.seq for e in changes.journal] == [1, 2]
    assert changes.head == JournalHead(2, changes.journal[-1].hash)
    assert not changes.ok


def test_apply_transfers_refused_batch_changes_nothing() -> None:
    head = JournalHead(7, "ab" * 32)
    view = LedgerView({"alice": Account("alice", "EUR")}, {}, head)
    changes = apply_transfers([post("t1", "alice", "nobody"), post("")], view, now=5.0)
    assert changes.results == [R.CREDIT_ACCOUNT_NOT_FOUND, R.ID_MUST_NOT_BE_EMPTY]
    assert (changes.accounts, changes.transfers, changes.journal) == ({}, [], [])
    assert changes.pending_states == {}
    assert changes.head == head


def test_apply_transfers_chains_the_journal_from_the_view_head() -> None:
    head = JournalHead(41, "cd" * 32)
    view = LedgerView(
        {"a": Account("a", "EUR", overdraft=True), "b": Account("b", "EUR")}, {}, head
    )
    changes = apply_transfers([post("t1", "a", "b"), post("t2", "a", "b")], view, now=1.0)
    first, second = changes.journal
    assert (first.seq, first.prev_hash) == (42, head.hash)
    assert (second.seq, second.prev_hash) == (43, first.hash)
