"""Settlement: batches to a bank partner, its statement, and their reconciliation.

Pure: values in, values out. Posted payments are batched per (tenant, partner, currency); at a
cut-off a batch is closed, netted (its count and total) and sent. The partner answers with an
end-of-day, camt.053-like statement per currency, and `reconcile_statement` matches it line by
line (EndToEndId = payment id) against what we sent, classifying every difference as a `Break`,
so that the batch totals always equal the statement totals once the open breaks are accounted for.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from reference_impl.core.errors import IllegalTransition, InvalidAmount, InvalidInput
from reference_impl.core.serial import Memo, dumps, evolve, to_dict


class BatchStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    SENT = "sent"
    RECONCILED = "reconciled"


B = BatchStatus
BATCH_TRANSITIONS: dict[BatchStatus, frozenset[BatchStatus]] = {
    B.OPEN: frozenset({B.CLOSED}),
    B.CLOSED: frozenset({B.SENT}),
    B.SENT: frozenset({B.RECONCILED}),
    B.RECONCILED: frozenset(),
}


def batch_id(tenant: str, partner: str, currency: str, sequence: int) -> str:
    """Deterministic, so a batch replayed after a crash gets the id the partner already saw.

    The zero-padded sequence makes ids of one (tenant, partner, currency) sort in order.
    """
    return f"stl:{tenant}:{partner}:{currency}:{sequence:08d}"


@dataclass(frozen=True, slots=True)
class SettlementBatch:
    id: str
    tenant: str
    partner: str
    currency: str
    payment_ids: tuple[str, ...] = ()
    amounts: tuple[int, ...] = ()
    total: int = 0
    """The net amount to settle: every payment is an outgoing credit, so netting is the sum."""
    opened_at: float = 0.0
    closed_at: float | None = None
    sent_at: float | None = None
    status: BatchStatus = B.OPEN
    reconciled_at: float | None = None

    @property
    def count(self) -> int:
        return len(self.payment_ids)

    def add(self, payment_id: str, amount: int) -> SettlementBatch:
        """The batch with one more payment; only an open batch takes payments."""
        if self.status is not B.OPEN:
            raise IllegalTransition(
                f"batch {self.id}: cannot add a payment to a {self.status} batch"
            )
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise InvalidAmount(
                f"amount: must be a positive integer of minor units, not {amount!r}"
            )
        return evolve(
            self,
            payment_ids=(*self.payment_ids, payment_id),
            amounts=(*self.amounts, amount),
            total=self.total + amount,
        )

    def move(self, to: BatchStatus, **changes: Any) -> SettlementBatch:
        """The batch in state `to`, or IllegalTransition if the table forbids the move."""
        if to not in BATCH_TRANSITIONS[self.status]:
            raise IllegalTransition(f"batch {self.id}: {self.status} -> {to} is not allowed")
        return evolve(self, status=to, **changes)

    def to_json(self) -> str:
        return dumps(to_dict(self))

    @classmethod
    def from_json(cls, text: str) -> SettlementBatch:
        data = json.loads(text)
        data["payment_ids"] = tuple(data["payment_ids"])
        data["amounts"] = tuple(data["amounts"])
        data["status"] = BatchStatus(data["status"])
        return cls(**data)

    def public(self) -> dict[str, Any]:
        body = to_dict(self)
        body["payment_ids"] = list(self.payment_ids)
        body["amounts"] = list(self.amounts)
        body["status"] = self.status.value
        body["count"] = self.count
        return body


class LineKind(StrEnum):
    CREDIT = "credit"
    """The partner credited the beneficiary (amount > 0)."""
    FEE = "fee"
    """A charge the partner kept for the payment (amount > 0); it explains an amount break."""
    REVERSAL = "reversal"
    """The partner took back an earlier credit (amount < 0), e.g. a closed beneficiary account."""


class InvalidStatement(InvalidInput):
    """The partner sent a statement that breaks the format's rules: its fault, not ours."""


@dataclass(frozen=True, slots=True)
class StatementLine:
    end_to_end_id: str
    amount: int
    """Signed, as it moves the statement balance: credits and fees > 0, reversals < 0."""
    currency: str
    booking_at: float
    value_at: float
    kind: LineKind = LineKind.CREDIT


@dataclass(frozen=True, slots=True)
class Statement:
    """One account statement (camt.053-like): opening + sum(lines) == closing.

    It covers bookings in [period_start, period_end) (camt.053 FrToDt); every payment we sent in
    that period should be on it. With no period_end it covers everything up to created_at.
    """

    id: str
    partner: str
    currency: str
    opening_balance: int
    closing_balance: int
    lines: tuple[StatementLine, ...]
    created_at: float
    period_start: float = 0.0
    period_end: float | None = None

    def __post_init__(self) -> None:
        for name in ("opening_balance", "closing_balance"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidStatement(f"statement {self.id}: {name} must be an integer")
        for i, line in enumerate(self.lines):
            where = f"statement {self.id}: lines[{i}]"
            if isinstance(line.amount, bool) or not isinstance(line.amount, int):
                raise InvalidStatement(f"{where}.amount must be an integer of minor units")
            if line.currency != self.currency:
                raise InvalidStatement(f"{where}.currency must be {self.currency}")
            if (line.kind is LineKind.REVERSAL) != (line.amount < 0) or line.amount == 0:
                raise InvalidStatement(
                    f"{where}.amount must be negative for a reversal, positive otherwise"
                )
        if self.opening_balance + sum(ln.amount for ln in self.lines) != self.closing_balance:
            raise InvalidStatement(
                f"statement {self.id}: opening_balance + sum(lines) must equal closing_balance"
            )
        if self.covers_until < self.period_start:
            raise InvalidStatement(f"statement {self.id}: period_end is before period_start")

    @property
    def covers_until(self) -> float:
        return self.created_at if self.period_end is None else self.period_end

    def to_json(self) -> str:
        return dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Statement:
        data = json.loads(text)
        lines = tuple(
            StatementLine(**{**ln, "kind": LineKind(ln["kind"])}) for ln in data.pop("lines")
        )
        return cls(lines=lines, **data)


class ItemStatus(StrEnum):
    """Where one payment is in settlement."""

    BATCHED = "batched"
    SENT = "sent"
    SETTLED = "settled"
    MISSING = "missing"
    """Absent from the statement that should have had it; a later line turns it into timing."""
    REVERSED = "reversed"


_ITEM_STATUS_OF = {s.value: s for s in ItemStatus}
"""A dict lookup is ten times cheaper than ItemStatus(value), paid on every item read."""
_ITEMS: Memo[str, SettlementItem] = Memo(1 << 15)
"""Items by their record's text: an item is read by each step of settlement (batched, closed,
sent, reconciled), mostly just after it was written."""


@dataclass(frozen=True, slots=True)
class SettlementItem:
    """One payment's settlement state, keyed by payment id (the EndToEndId the partner echoes)."""

    payment_id: str
    tenant: str
    partner: str
    currency: str
    amount: int
    batch_id: str
    status: ItemStatus = ItemStatus.BATCHED
    sent_at: float | None = None
    missing_break: str = ""
    """The id of the missing break to resolve when the payment turns up on a later statement."""

    def to_json(self) -> str:
        text = dumps(to_dict(self))
        _ITEMS.put(text, self)
        return text

    @classmethod
    def from_json(cls, text: str) -> SettlementItem:
        return _ITEMS.decoded(text, cls._parse)

    @classmethod
    def _parse(cls, text: str) -> SettlementItem:
        data = json.loads(text)
        status = data["status"]
        data["status"] = _ITEM_STATUS_OF.get(status) or ItemStatus(status)
        return cls(**data)


class BreakKind(StrEnum):
    MISSING = "missing"
    DUPLICATE = "duplicate"
    AMOUNT = "amount"
    TIMING = "timing"
    REVERSAL = "reversal"
    UNKNOWN = "unknown"
    """A line whose EndToEndId names no payment we sent to this partner in this currency."""


@dataclass(frozen=True, slots=True)
class Break:
    """A difference between what we sent and what the statement says.

    `actual - expected` is the money the break accounts for, so that over all sent batches
    sum(batch totals) == sum(credit and reversal lines) - sum(open breaks' differences).
    A timing break accounts for no money (the line was late, not wrong).
    """

    id: str
    partner: str
    batch_id: str
    payment_id: str
    kind: BreakKind
    detail: str
    tenant: str = ""
    statement_id: str = ""
    expected: int = 0
    actual: int = 0
    resolved_by: str = ""
    """Set when a later break supersedes this one (a missing payment that arrived late)."""

    @property
    def difference(self) -> int:
        return self.actual - self.expected

    def to_json(self) -> str:
        return dumps(to_dict(self))

    @classmethod
    def from_json(cls, text: str) -> Break:
        data = json.loads(text)
        data["kind"] = BreakKind(data["kind"])
        return cls(**data)

    def public(self) -> dict[str, Any]:
        body = to_dict(self)
        body["kind"] = self.kind.value
        return body


@dataclass(frozen=True, slots=True)
class SettledPayment:
    payment_id: str
    tenant: str
    batch_id: str
    value_at: float


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """The outcome of one statement: what settled, what broke, and the items' new states."""

    statement_id: str
    partner: str
    currency: str
    settled: tuple[SettledPayment, ...] = ()
    breaks: tuple[Break, ...] = ()
    resolved: tuple[tuple[str, str], ...] = ()
    """(missing break id, the timing break id that resolves it)."""
    items: tuple[SettlementItem, ...] = ()
    """Every item whose status changed."""
    fees: int = 0
    replayed: bool = False
    """True when the statement had been ingested before and nothing was done this time."""

    def to_json(self) -> str:
        # What asdict would give, built shallowly: asdict deep-copies every item and break,
        # and a statement's reconciliation holds one of each per payment of the day.
        data = to_dict(self)
        data["settled"] = [to_dict(s) for s in self.settled]
        data["breaks"] = [to_dict(b) for b in self.breaks]
        data["items"] = [to_dict(i) for i in self.items]
        return dumps(data)

    @classmethod
    def from_json(cls, text: str) -> Reconciliation:
        data = json.loads(text)
        return cls(
            data["statement_id"],
            data["partner"],
            data["currency"],
            tuple(SettledPayment(**s) for s in data["settled"]),
            tuple(Break.from_json(json.dumps(b)) for b in data["breaks"]),
            tuple((m, t) for m, t in data["resolved"]),
            tuple(SettlementItem.from_json(json.dumps(i)) for i in data["items"]),
            data["fees"],
            data["replayed"],
        )


@dataclass(slots=True)
class _Run:
    """Scratch state while one statement is read: items as updated so far, and the output."""

    statement: Statement
    items: dict[str, SettlementItem]
    changed: dict[str, SettlementItem] = field(default_factory=dict)
    settled: list[SettledPayment] = field(default_factory=list)
    breaks: list[Break] = field(default_factory=list)
    resolved: list[tuple[str, str]] = field(default_factory=list)

    def set(self, item: SettlementItem) -> None:
        self.items[item.payment_id] = self.changed[item.payment_id] = item

    def add_break(
        self, item: SettlementItem | None, payment_id: str, kind: BreakKind, **fields: Any
    ) -> Break:
        # Numbered in reading order: the same statement always yields the same break ids.
        brk = Break(
            f"{self.statement.id}:{len(self.breaks):05d}",
            self.statement.partner,
            item.batch_id if item else "",
            payment_id,
            kind,
            tenant=item.tenant if item else "",
            statement_id=self.statement.id,
            **fields,
        )
        self.breaks.append(brk)
        return brk


def reconcile_statement(
    statement: Statement, items: Mapping[str, SettlementItem]
) -> Reconciliation:
    """Match the statement's lines to `items` and classify every break.

    `items` must hold every item of the partner's sent, not yet reconciled batches in the
    statement's currency (to find the missing ones) and the item of every line's EndToEndId.
    """
    run = _Run(statement, dict(items))
    fees: dict[str, int] = {}
    for line in statement.lines:
        if line.kind is LineKind.FEE:
            fees[line.end_to_end_id] = fees.get(line.end_to_end_id, 0) + line.amount
    for line in statement.lines:
        item = run.items.get(line.end_to_end_id)
        if (
            item is None
            or item.currency != statement.currency
            or item.partner != statement.partner
            or item.status is ItemStatus.BATCHED
        ):
            run.add_break(
                None,
                line.end_to_end_id,
                BreakKind.UNKNOWN,
                detail=f"{line.kind} line for a payment not sent to {statement.partner} "
                f"in {statement.currency}",
                actual=line.amount if line.kind is not LineKind.FEE else 0,
            )
        elif line.kind is LineKind.CREDIT:
            _credit(run, item, line, fees.get(item.payment_id, 0))
        elif line.kind is LineKind.REVERSAL:
            _reversal(run, item, line)
    for item in list(run.items.values()):
        if item.status is ItemStatus.SENT and _due(statement, item):
            brk = run.add_break(
                item,
                item.payment_id,
                BreakKind.MISSING,
                detail=f"sent at {item.sent_at} but not on statement {statement.id}",
                expected=item.amount,
            )
            run.set(evolve(item, status=ItemStatus.MISSING, missing_break=brk.id))
    return Reconciliation(
        statement.id,
        statement.partner,
        statement.currency,
        tuple(run.settled),
        tuple(run.breaks),
        tuple(run.resolved),
        tuple(run.changed.values()),
        sum(fees.values()),
    )


def _due(statement: Statement, item: SettlementItem) -> bool:
    """Whether the statement should include a still-outstanding item: it was sent before the end
    of the statement's period.

    Not only within the period: a batch stamped before an earlier statement's end but sent after
    that statement was ingested (a delayed cut-off, a clock that jumped back) was never checked
    against it, so this statement is the first that can show it missing.
    """
    return item.sent_at is not None and item.sent_at < statement.covers_until


def _credit(run: _Run, item: SettlementItem, line: StatementLine, fee: int) -> None:
    if item.status in (ItemStatus.SETTLED, ItemStatus.REVERSED):
        run.add_break(
            item,
            item.payment_id,
            BreakKind.DUPLICATE,
            detail=f"a second credit line for a payment already {item.status}",
            actual=line.amount,
        )
        return
    if line.amount != item.amount:
        charged = f" ({fee} charged as fees)" if fee else ""
        run.add_break(
            item,
            item.payment_id,
            BreakKind.AMOUNT,
            detail=f"credited {line.amount}, sent {item.amount}{charged}",
            expected=item.amount,
            actual=line.amount,
        )
    st = run.statement
    late = ""
    if item.status is ItemStatus.MISSING:
        late = "missing from the statement that should have had it"
    elif item.sent_at is not None and item.sent_at < st.period_start:
        late = f"sent at {item.sent_at}, booked on a later statement"
    elif line.value_at >= st.covers_until:
        late = f"value date {line.value_at} after the statement period"
    if late:
        timing = run.add_break(
            item,
            item.payment_id,
            BreakKind.TIMING,
            detail=late,
            expected=line.amount,
            actual=line.amount,
        )
        if item.missing_break:
            run.resolved.append((item.missing_break, timing.id))
    run.set(evolve(item, status=ItemStatus.SETTLED))
    run.settled.append(SettledPayment(item.payment_id, item.tenant, item.batch_id, line.value_at))


def _reversal(run: _Run, item: SettlementItem, line: StatementLine) -> None:
    if item.status is ItemStatus.REVERSED:
        run.add_break(
            item,
            item.payment_id,
            BreakKind.DUPLICATE,
            detail="a second reversal line for one payment",
            actual=line.amount,
        )
        return
    what = "settled payment" if item.status is ItemStatus.SETTLED else "payment never credited"
    run.add_break(
        item,
        item.payment_id,
        BreakKind.REVERSAL,
        detail=f"reversal of {-line.amount} for a {what}",
        # A payment still awaiting its credit will never be declared missing now, so this
        # break also accounts for the credit that did not come.
        expected=item.amount if item.status is ItemStatus.SENT else 0,
        actual=line.amount,
    )
    run.set(evolve(item, status=ItemStatus.REVERSED))
