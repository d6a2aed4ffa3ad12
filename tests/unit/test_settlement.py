"""Settlement core: the batch state table, the statement rules, reconciliation per break kind,
partner routing and the bank partner simulator."""

from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from reference_impl.adapters.bank_partner import (
    BankPartnerSimulator,
    MemoryBook,
    PartnerBehaviour,
    PartnerUnavailable,
)
from reference_impl.core.errors import IllegalTransition, InvalidAmount
from reference_impl.core.settlement import (
    BatchStatus,
    Break,
    BreakKind,
    InvalidStatement,
    ItemStatus,
    LineKind,
    Reconciliation,
    SettlementBatch,
    SettlementItem,
    Statement,
    StatementLine,
    batch_id,
    reconcile_statement,
)
from reference_impl.service.settlement import partner_for

B = BatchStatus
CREDIT, FEE, REVERSAL = LineKind.CREDIT, LineKind.FEE, LineKind.REVERSAL


def batch(*amounts: int) -> SettlementBatch:
    b = SettlementBatch(batch_id("acme", "bank-a", "EUR", 1), "acme", "bank-a", "EUR")
    for i, amount in enumerate(amounts):
        b = b.add(f"p{i}", amount)
    return b


# -- batches -----------------------------------------------------------------------------------
def test_a_batch_nets_its_payments_into_a_count_and_a_total() -> None:
    b = batch(100, 250, 1)
    assert (b.count, b.total, b.payment_ids, b.amounts) == (
        3,
        351,
        ("p0", "p1", "p2"),
        (100, 250, 1),
    )


def test_a_batch_moves_open_closed_sent_reconciled() -> None:
    b = batch(100).move(B.CLOSED, closed_at=1.0).move(B.SENT, sent_at=2.0)
    b = b.move(B.RECONCILED, reconciled_at=3.0)
    assert (b.status, b.closed_at, b.sent_at, b.reconciled_at) == (B.RECONCILED, 1.0, 2.0, 3.0)


@pytest.mark.parametrize(
    ("path", "illegal"),
    [
        ((), B.SENT),
        ((), B.RECONCILED),
        ((B.CLOSED,), B.OPEN),
        ((B.CLOSED,), B.RECONCILED),
        ((B.CLOSED, B.SENT), B.CLOSED),
        ((B.CLOSED, B.SENT, B.RECONCILED), B.SENT),
    ],
)
def test_an_illegal_batch_move_raises_and_changes_nothing(
    path: tuple[BatchStatus, ...], illegal: BatchStatus
) -> None:
    b = batch(100)
    for step in path:
        b = b.move(step)
    before = b
    with pytest.raises(IllegalTransition, match=f"{b.status} -> {illegal}"):
        b.move(illegal)
    assert b == before


def test_only_an_open_batch_takes_payments_and_only_positive_integer_amounts() -> None:
    with pytest.raises(IllegalTransition, match="closed"):
        batch(100).move(B.CLOSED).add("late", 5)
    for bad in (0, -5, 1.5, True):
        with pytest.raises(InvalidAmount, match="amount"):
            batch().add("p", bad)  # type: ignore[arg-type]


def test_batch_ids_are_deterministic_and_sort_by_sequence() -> None:
    assert batch_id("acme", "bank-a", "EUR", 7) == batch_id("acme", "bank-a", "EUR", 7)
    ids = [batch_id("acme", "bank-a", "EUR", n) for n in (1, 2, 10, 100)]
    assert sorted(ids) == ids
    assert len({batch_id("acme", "bank-a", c, 1) for c in ("EUR", "USD")}) == 2


def test_records_survive_a_json_round_trip() -> None:
    b = batch(100, 200).move(B.CLOSED, closed_at=4.0)
    assert SettlementBatch.from_json(b.to_json()) == b
    st = statement([line("p0", 100), line("p0", 5, FEE), line("p1", -7, REVERSAL)], opening=3)
    assert Statement.from_json(st.to_json()) == st
    rec = reconcile_statement(st, items(p0=95, p1=7))
    assert rec.breaks
    assert Reconciliation.from_json(rec.to_json()) == rec


# -- statements --------------------------------------------------------------------------------
def line(pid: str, amount: int, kind: LineKind = CREDIT, at: float = 150.0) -> StatementLine:
    return StatementLine(pid, amount, "EUR", at, at, kind)


def statement(
    lines: list[StatementLine], opening: int = 0, sid: str = "st-1", start: float = 100.0
) -> Statement:
    total = sum(ln.amount for ln in lines)
    return Statement(
        sid,
        "bank-a",
        "EUR",
        opening,
        opening + total,
        tuple(lines),
        start + 110.0,
        start,
        start + 100,
    )


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        ({"closing_balance": 99}, "opening_balance \\+ sum\\(lines\\) must equal"),
        ({"lines": (StatementLine("p", 5, "USD", 1, 1),)}, "currency must be EUR"),
        ({"lines": (line("p", -5),)}, "negative for a reversal"),
        ({"lines": (line("p", 5, REVERSAL),)}, "negative for a reversal"),
        ({"lines": (line("p", 0, FEE),)}, "negative for a reversal, positive otherwise"),
        ({"period_end": 50.0}, "period_end is before period_start"),
    ],
)
def test_a_malformed_statement_is_refused_naming_the_rule(
    change: dict[str, object], rule: str
) -> None:
    fields: dict[str, object] = {
        "id": "st",
        "partner": "bank-a",
        "currency": "EUR",
        "opening_balance": 0,
        "closing_balance": 0,
        "lines": (),
        "created_at": 210.0,
        "period_start": 100.0,
        "period_end": 200.0,
    }
    fields.update(change)
    if "lines" in change:
        fields["closing_balance"] = sum(ln.amount for ln in change["lines"])  # type: ignore[attr-defined]
    with pytest.raises(InvalidStatement, match=rule):
        Statement(**fields)  # type: ignore[arg-type]


# -- reconciliation ----------------------------------------------------------------------------
def items(sent_at: float = 120.0, **amounts: int) -> dict[str, SettlementItem]:
    """Sent items of batch b1, one per keyword (payment id = amount)."""
    return {
        pid: SettlementItem(pid, "acme", "bank-a", "EUR", amount, "b1", ItemStatus.SENT, sent_at)
        for pid, amount in amounts.items()
    }


def kinds(rec: Reconciliation) -> list[tuple[BreakKind, str]]:
    return [(b.kind, b.payment_id) for b in rec.breaks]


def accounted(st: Statement, expected_total: int, breaks: list[Break]) -> bool:
    """The reconciliation identity: the breaks explain every difference in money."""
    lines = sum(ln.amount for ln in st.lines if ln.kind is not FEE)
    return expected_total == lines - sum(b.difference for b in breaks if not b.resolved_by)


def status(rec: Reconciliation) -> Mapping[str, ItemStatus]:
    return {i.payment_id: i.status for i in rec.items}


def test_a_clean_statement_settles_every_payment_without_breaks() -> None:
    st = statement([line("a", 100), line("b", 250)])
    rec = reconcile_statement(st, items(a=100, b=250))
    assert rec.breaks == ()
    assert [(s.payment_id, s.batch_id, s.value_at) for s in rec.settled] == [
        ("a", "b1", 150.0),
        ("b", "b1", 150.0),
    ]
    assert status(rec) == {"a": ItemStatus.SETTLED, "b": ItemStatus.SETTLED}
    assert accounted(st, 350, list(rec.breaks))


def test_a_payment_sent_in_the_period_without_a_line_is_missing() -> None:
    st = statement([line("a", 100)])
    rec = reconcile_statement(st, items(a=100, b=250))
    assert kinds(rec) == [(BreakKind.MISSING, "b")]
    missing = rec.breaks[0]
    assert (missing.expected, missing.actual, missing.batch_id, missing.tenant) == (
        250,
        0,
        "b1",
        "acme",
    )
    assert status(rec)["b"] is ItemStatus.MISSING
    assert rec.items[-1].missing_break == missing.id
    assert [s.payment_id for s in rec.settled] == ["a"]
    assert accounted(st, 350, list(rec.breaks))


def test_a_payment_stamped_before_the_period_but_never_checked_is_missing_now() -> None:
    # Stamped at 50 (a clock that jumped back, a delayed cut-off) but sent after the statement
    # for [0, 100) was ingested: still outstanding, so this statement is the first to miss it.
    st = statement([line("a", 100)])
    rec = reconcile_statement(st, {**items(a=100), **items(sent_at=50.0, early=70)})
    assert kinds(rec) == [(BreakKind.MISSING, "early")]
    assert status(rec)["early"] is ItemStatus.MISSING
    assert accounted(st, 170, list(rec.breaks))


def test_a_payment_sent_after_the_period_is_not_expected_yet() -> None:
    st = statement([])
    rec = reconcile_statement(st, items(sent_at=200.0, late=100))
    assert rec.breaks == () and rec.items == ()


def test_a_second_line_for_one_payment_is_a_duplicate_and_settles_once() -> None:
    st = statement([line("a", 100), line("a", 100)])
    rec = reconcile_statement(st, items(a=100))
    assert kinds(rec) == [(BreakKind.DUPLICATE, "a")]
    assert len(rec.settled) == 1
    assert accounted(st, 100, list(rec.breaks))


def test_a_credit_for_a_payment_settled_on_an_earlier_statement_is_a_duplicate() -> None:
    settled = {k: replace(v, status=ItemStatus.SETTLED) for k, v in items(a=100).items()}
    st = statement([line("a", 100)])
    rec = reconcile_statement(st, settled)
    assert kinds(rec) == [(BreakKind.DUPLICATE, "a")]
    assert rec.settled == () and rec.items == ()


def test_a_credit_of_another_amount_is_an_amount_break_naming_the_fee() -> None:
    st = statement([line("a", 95), line("a", 5, FEE)])
    rec = reconcile_statement(st, items(a=100))
    assert kinds(rec) == [(BreakKind.AMOUNT, "a")]
    brk = rec.breaks[0]
    assert (brk.expected, brk.actual, brk.difference) == (100, 95, -5)
    assert "5 charged as fees" in brk.detail
    assert rec.fees == 5
    # The beneficiary was credited, so the payment settled; the break records the shortfall.
    assert [s.payment_id for s in rec.settled] == ["a"]
    assert accounted(st, 100, list(rec.breaks))


def test_a_line_booked_on_a_later_statement_is_a_timing_break() -> None:
    st = statement([line("a", 100)])
    rec = reconcile_statement(st, items(sent_at=50.0, a=100))
    assert kinds(rec) == [(BreakKind.TIMING, "a")]
    assert "later statement" in rec.breaks[0].detail
    assert rec.breaks[0].difference == 0
    assert [s.payment_id for s in rec.settled] == ["a"]


def test_a_value_date_after_the_period_is_a_timing_break() -> None:
    st = statement([line("a", 100, at=230.0)])
    rec = reconcile_statement(st, items(a=100))
    assert kinds(rec) == [(BreakKind.TIMING, "a")]
    assert "value date" in rec.breaks[0].detail


def test_a_missing_payment_that_turns_up_later_is_timing_and_resolves_the_missing_break() -> None:
    first = statement([], sid="st-1")
    rec1 = reconcile_statement(first, items(a=100))
    [missing] = rec1.breaks
    second = statement([line("a", 100, at=250.0)], sid="st-2", start=200.0)
    rec2 = reconcile_statement(second, {i.payment_id: i for i in rec1.items})
    assert kinds(rec2) == [(BreakKind.TIMING, "a")]
    assert rec2.resolved == ((missing.id, rec2.breaks[0].id),)
    assert [s.payment_id for s in rec2.settled] == ["a"]
    both = [replace(missing, resolved_by=rec2.breaks[0].id), *rec2.breaks]
    combined = statement([line("a", 100)])
    assert accounted(combined, 100, both)


def test_a_reversal_of_a_settled_payment_is_a_reversal_break() -> None:
    st = statement([line("a", 100), line("a", -100, REVERSAL)])
    rec = reconcile_statement(st, items(a=100))
    assert kinds(rec) == [(BreakKind.REVERSAL, "a")]
    assert "settled payment" in rec.breaks[0].detail
    assert status(rec)["a"] is ItemStatus.REVERSED
    assert accounted(st, 100, list(rec.breaks))


def test_a_reversal_of_a_payment_never_credited_accounts_for_the_missing_credit() -> None:
    st = statement([line("a", -100, REVERSAL)])
    rec = reconcile_statement(st, items(a=100))
    assert kinds(rec) == [(BreakKind.REVERSAL, "a")]
    assert "never credited" in rec.breaks[0].detail
    assert rec.settled == ()
    assert accounted(st, 100, list(rec.breaks))


def test_a_second_reversal_is_a_duplicate() -> None:
    reversed_ = {k: replace(v, status=ItemStatus.REVERSED) for k, v in items(a=100).items()}
    rec = reconcile_statement(statement([line("a", -100, REVERSAL)]), reversed_)
    assert kinds(rec) == [(BreakKind.DUPLICATE, "a")]


def test_a_line_for_a_payment_we_did_not_send_is_unknown() -> None:
    batched = {k: replace(v, status=ItemStatus.BATCHED) for k, v in items(b=50).items()}
    st = statement([line("zz", 70), line("b", 50)])
    rec = reconcile_statement(st, batched)
    assert kinds(rec) == [(BreakKind.UNKNOWN, "zz"), (BreakKind.UNKNOWN, "b")]
    assert rec.settled == ()
    assert accounted(st, 0, list(rec.breaks))


# -- determinism across processes ---------------------------------------------------------------
# Python salts str hashes per process (PYTHONHASHSEED): code that let a set's or a dict-of-hash
# order decide break ids, line order or which item is missing gives the same answer twice in one
# process and a different one in the next. So the same input is reconciled in fresh interpreters
# with different hash seeds, and every answer must be the one this process computes.
HASH_SEEDS = ("0", "1", "2", "3")


def in_fresh_processes(sample: str) -> set[str]:
    """What this module's `sample()` prints, once per hash seed, each in a new interpreter."""
    here = str(Path(__file__).parent)
    code = (
        f"import sys; sys.path.insert(0, {here!r}); "
        f"import test_settlement as t; print(t.{sample}())"
    )
    outputs = set()
    for seed in HASH_SEEDS:
        done = subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        outputs.add(done.stdout)
    return outputs


def reconciliation_sample() -> str:
    """A statement with every kind of break, several missing payments among them."""
    lines = [line("a", 95), line("a", 5, FEE), line("c", 10), line("c", 10), line("zz", 7),
             line("yy", 3), line("d", 4), line("d", -4, REVERSAL)]  # fmt: skip
    sent = items(a=100, b=1, c=10, d=4, e=2, f=3, g=8, h=5)
    return reconcile_statement(statement(lines), sent).to_json()


def test_reconciliation_is_the_same_in_every_process() -> None:
    expected = reconciliation_sample()
    assert len(json.loads(expected)["breaks"]) >= 6  # the sample exercises many breaks
    assert in_fresh_processes("reconciliation_sample") == {expected + "\n"}


# -- routing -----------------------------------------------------------------------------------
def test_partner_for_is_a_stable_crc32_choice() -> None:
    partners = ("bank-a", "bank-b", "bank-c")
    chosen = {partner_for(f"acct-{i}", partners) for i in range(100)}
    assert chosen == set(partners)
    assert partner_for("acct-7", partners) == partner_for("acct-7", partners)
    assert partner_for("acct-7", ("bank-a",)) == "bank-a"
    with pytest.raises(ValueError, match="partners"):
        partner_for("acct-7", ())


# -- the partner simulator ---------------------------------------------------------------------
def sent_batch(n: int, amount: int = 100, currency: str = "EUR", seq: int = 1) -> SettlementBatch:
    b = SettlementBatch(batch_id("acme", "bank-a", currency, seq), "acme", "bank-a", currency)
    for i in range(n):
        b = b.add(f"{currency}-{seq}-{i}", amount)
    return b.move(B.CLOSED, closed_at=10.0).move(B.SENT, sent_at=10.0)


def simulator(seed: int = 1, **behaviour: Any) -> BankPartnerSimulator:
    return BankPartnerSimulator(
        "bank-a", PartnerBehaviour(**behaviour), random.Random(seed), day_length=100.0
    )


def test_a_perfect_partner_books_every_payment_on_the_days_statement() -> None:
    sim = simulator(statement_delay=20.0)
    sim.submit(sent_batch(3), 10.0)
    sim.submit(sent_batch(2, 7, "USD"), 30.0)
    sim.submit(sent_batch(3), 40.0)  # the same batch id again: not booked twice
    assert sim.statements_after(0, 119.0) == []
    eur, usd = sorted(sim.statements_after(0, 120.0), key=lambda s: s.currency)
    assert [ln.end_to_end_id for ln in eur.lines] == ["EUR-1-0", "EUR-1-1", "EUR-1-2"]
    assert (eur.opening_balance, eur.closing_balance, eur.period_start, eur.period_end) == (
        0,
        300,
        0.0,
        100.0,
    )
    assert (usd.closing_balance, usd.created_at) == (14, 120.0)
    # The feed keeps what it issued: read again from the start, the same statements; from
    # after them, nothing new until the next day ends.
    assert sorted(sim.statements_after(0, 120.0), key=lambda s: s.currency) == [eur, usd]
    assert sim.statements_after(2, 120.0) == []
    [next_day] = [s for s in sim.statements_after(2, 220.0) if s.currency == "EUR"]
    assert (next_day.opening_balance, next_day.closing_balance, next_day.lines) == (300, 300, ())


def simulated_statements(seed: int) -> list[Statement]:
    sim = simulator(
        seed,
        late_probability=0.3,
        duplicate_line_probability=0.3,
        missing_line_probability=0.3,
        fee_probability=0.3,
        fee_amount=3,
        reversal_probability=0.3,
    )
    for seq in range(1, 4):
        sim.submit(sent_batch(10, seq=seq), 10.0 * seq)
    return sim.statements_after(0, 1_000.0)


def simulator_sample() -> str:
    return "\n".join(s.to_json() for s in simulated_statements(5))


def test_the_simulator_is_the_same_in_every_process_given_its_seed() -> None:
    assert in_fresh_processes("simulator_sample") == {simulator_sample() + "\n"}
    assert simulated_statements(5) != simulated_statements(6)


def test_a_misbehaving_partner_misbehaves_in_every_way() -> None:
    sim = simulator(
        3,
        late_probability=0.5,
        duplicate_line_probability=0.2,
        missing_line_probability=0.2,
        fee_probability=0.2,
        fee_amount=3,
        reversal_probability=0.2,
    )
    for seq in range(1, 9):
        sim.submit(sent_batch(10, seq=seq), 5.0 * seq)
    statements = sim.statements_after(0, 1_000.0)
    lines = [ln for s in statements for ln in s.lines]
    credits = [ln.end_to_end_id for ln in lines if ln.kind is CREDIT]
    sent = {f"EUR-{seq}-{i}" for seq in range(1, 9) for i in range(10)}
    assert sent - set(credits), "no missing line"
    assert len(credits) > len(set(credits)), "no duplicate line"
    assert any(ln.kind is FEE and ln.amount == 3 for ln in lines), "no fee"
    assert any(ln.kind is CREDIT and ln.amount == 97 for ln in lines), "no fee deducted"
    assert any(ln.kind is REVERSAL for ln in lines), "no reversal"
    assert statements[0].lines and statements[1].lines, "no batch booked late"
    assert any(ln.booking_at >= 100.0 and ln.kind is CREDIT for ln in statements[1].lines)
    for prev, nxt in itertools.pairwise(statements):
        assert nxt.opening_balance == prev.closing_balance


def test_an_outage_refuses_batches_and_withholds_statements_until_it_ends() -> None:
    sim = simulator(outage_until=50.0)
    with pytest.raises(PartnerUnavailable, match="bank-a"):
        sim.submit(sent_batch(1), 10.0)
    assert isinstance(sim.book, MemoryBook) and sim.book.booked == set()
    sim.submit(sent_batch(1), 60.0)
    sim.behaviour = replace(sim.behaviour, outage_until=250.0)
    assert sim.statements_after(0, 240.0) == []
    day0, day1 = sim.statements_after(0, 250.0)
    assert [ln.end_to_end_id for ln in day0.lines] == ["EUR-1-0"]
    assert (day1.period_start, day1.lines) == (100.0, ())
