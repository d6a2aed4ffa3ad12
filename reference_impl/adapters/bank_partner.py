"""A simulated bank partner: books the batches it receives and issues end-of-day statements.

It stands in for a real partner's file channel (a pain.001 file out, a camt.053 statement feed
back) so the settlement worker and its reconciliation can be exercised, and broken, on purpose.
It keeps its own book per currency; each day's bookings become one statement per currency, due
`statement_delay` seconds after the day ends. When told to misbehave it books batches a day late,
drops or duplicates lines, deducts fees and reverses credits, and it can be unreachable for a
while. Every choice comes from the rng it is given, so a seeded run is reproducible.

Like a real partner's, its book and its statement feed are durable: what it booked and what it
issued survive a restart of the settlement worker, which reads the feed again from the position
it had ingested up to. Where they are kept is a `PartnerBook`: in memory for the sim (the
partner is a separate node there, whose state outlives the worker), or records in a store of its
own units of work (`StoreBook`) for real processes.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

from reference_impl.core.settlement import LineKind, SettlementBatch, Statement, StatementLine
from reference_impl.service.ports import Store, UnitOfWork
from reference_impl.service.settlement import BankPartner, PartnerUnavailable

__all__ = [
    "BankPartner",
    "BankPartnerSimulator",
    "MemoryBook",
    "PartnerBehaviour",
    "PartnerUnavailable",
    "StoreBook",
]

DAY = 86_400.0

Booking = tuple[str, int, StatementLine]
"""(currency, day, line): one line of the partner's book."""


@dataclass(frozen=True, slots=True)
class PartnerBehaviour:
    """How the partner behaves; the defaults are a perfect partner."""

    statement_delay: float = 0.0
    """Seconds after the end of a day before its statement is available."""
    late_probability: float = 0.0
    """Per batch: booked on the next day, so its lines land on a later statement."""
    duplicate_line_probability: float = 0.0
    missing_line_probability: float = 0.0
    """Per payment: never executed, so neither booked nor on any statement."""
    fee_probability: float = 0.0
    fee_amount: int = 0
    """Deducted from the credit (and booked as a fee line), capped to leave at least 1."""
    reversal_probability: float = 0.0
    """Per payment: the credit is reversed the day after it was booked."""
    outage_until: float | None = None
    """Until then, submit raises PartnerUnavailable and no statement is delivered."""


@dataclass(slots=True)
class BookState:
    """Per currency: the first day whose statement is not issued yet, and the running balance."""

    next_day: dict[str, int] = field(default_factory=dict)
    balances: dict[str, int] = field(default_factory=dict)
    issued: int = 0
    """Statements in the feed."""


class PartnerBook(Protocol):
    """Where a partner keeps its book and its statement feed."""

    def book(self, batch_id: str, currency: str, day: int, lines: Sequence[Booking]) -> bool:
        """Book a batch's lines (`day` is the day it was received); False if already booked."""

    def issue(self, issue: Callable[[BookState, LinesOf], list[Statement]]) -> None:
        """Run `issue` on the book's state and append the statements it returns to the feed,
        atomically."""

    def feed(self, after: int) -> list[Statement]:
        """The issued statements from position `after` on, in issue order."""


LinesOf = Callable[[str, int], list[StatementLine]]
"""The lines booked on (currency, day)."""


class MemoryBook:
    def __init__(self) -> None:
        self.booked: set[str] = set()
        self.lines: defaultdict[tuple[str, int], list[StatementLine]] = defaultdict(list)
        self.state = BookState()
        self.statements: list[Statement] = []

    def book(self, batch_id: str, currency: str, day: int, lines: Sequence[Booking]) -> bool:
        if batch_id in self.booked:
            return False
        self.booked.add(batch_id)
        self.state.next_day.setdefault(currency, day)
        self.state.balances.setdefault(currency, 0)
        for cur, d, line in lines:
            self.lines[(cur, d)].append(line)
        return True

    def issue(self, issue: Callable[[BookState, LinesOf], list[Statement]]) -> None:
        new = issue(self.state, lambda cur, day: self.lines.pop((cur, day), []))
        self.statements += new
        self.state.issued += len(new)

    def feed(self, after: int) -> list[Statement]:
        return self.statements[after:]


class StoreBook:
    """The book as records of a store, each change in a unit of work of its own (the partner is
    another system: nothing it does shares a transaction with the settlement worker)."""

    BOOKED = "bank_booked"
    LINES = "bank_lines"
    STATE = "bank_state"
    FEED = "bank_feed"

    def __init__(self, store: Store, partner: str) -> None:
        self.store = store
        self.partner = partner

    def _state(self, uow: UnitOfWork) -> BookState:
        text = uow.get_record(self.STATE, self.partner, "state")
        return BookState(**json.loads(text)) if text is not None else BookState()

    def _save_state(self, uow: UnitOfWork, state: BookState) -> None:
        uow.put_record(self.STATE, self.partner, "state", json.dumps(asdict(state), sort_keys=True))

    def book(self, batch_id: str, currency: str, day: int, lines: Sequence[Booking]) -> bool:
        by_day: defaultdict[tuple[str, int], list[StatementLine]] = defaultdict(list)
        for cur, d, line in lines:
            by_day[(cur, d)].append(line)
        with self.store.unit_of_work() as uow:
            if uow.insert_record_if_absent(self.BOOKED, self.partner, batch_id, "1") is not None:
                return False
            for (cur, d), day_lines in by_day.items():
                uow.put_record(
                    self.LINES, self.partner, f"{cur}/{d:08d}/{batch_id}", _dump(day_lines)
                )
            state = self._state(uow)
            state.next_day.setdefault(currency, day)
            state.balances.setdefault(currency, 0)
            self._save_state(uow, state)
            uow.commit()
        return True

    def issue(self, issue: Callable[[BookState, LinesOf], list[Statement]]) -> None:
        with self.store.unit_of_work() as uow:
            state = self._state(uow)
            before = state.issued
            statements = issue(state, lambda cur, day: self._lines(uow, cur, day))
            for i, statement in enumerate(statements):
                uow.put_record(self.FEED, self.partner, f"{before + i:010d}", statement.to_json())
            state.issued = before + len(statements)
            self._save_state(uow, state)
            uow.commit()

    def _lines(self, uow: UnitOfWork, currency: str, day: int) -> list[StatementLine]:
        prefix = f"{currency}/{day:08d}/"
        lines: list[StatementLine] = []
        after = prefix
        while page := uow.list_records(self.LINES, self.partner, after, 1000):
            for key, text in page:
                if not key.startswith(prefix):
                    return lines
                lines += _load(text)
            after = page[-1][0]
        return lines

    def feed(self, after: int) -> list[Statement]:
        out: list[Statement] = []
        key = f"{after - 1:010d}" if after else ""
        with self.store.unit_of_work() as uow:
            while page := uow.list_records(self.FEED, self.partner, key, 1000):
                out += [Statement.from_json(text) for _, text in page]
                key = page[-1][0]
        return out


def _dump(lines: Sequence[StatementLine]) -> str:
    return json.dumps([asdict(ln) for ln in lines], separators=(",", ":"))


def _load(text: str) -> list[StatementLine]:
    return [StatementLine(**{**d, "kind": LineKind(d["kind"])}) for d in json.loads(text)]


class BankPartnerSimulator:
    def __init__(
        self,
        name: str,
        behaviour: PartnerBehaviour,
        rng: random.Random,
        *,
        day_length: float = DAY,
        book: PartnerBook | None = None,
    ) -> None:
        self._name = name
        self.behaviour = behaviour
        self.rng = rng
        self.day_length = day_length
        self.book: PartnerBook = book if book is not None else MemoryBook()

    @property
    def name(self) -> str:
        return self._name

    def _unavailable(self, now: float) -> bool:
        until = self.behaviour.outage_until
        return until is not None and now < until

    def submit(self, batch: SettlementBatch, now: float) -> None:
        if self._unavailable(now):
            raise PartnerUnavailable(
                f"{self.name} is unavailable until {self.behaviour.outage_until}"
            )
        if batch.partner != self.name:
            raise ValueError(f"batch {batch.id}: partner is {batch.partner!r}, not {self.name!r}")
        b, rng = self.behaviour, self.rng
        received = day = int(now // self.day_length)
        if rng.random() < b.late_probability:
            day += 1
        at = max(now, day * self.day_length)
        lines: list[Booking] = []
        cur = batch.currency
        for pid, amount in zip(batch.payment_ids, batch.amounts, strict=True):
            # Draw every number for every payment, so one probability does not shift the others.
            missing, fee, duplicate, reversal = (rng.random() for _ in range(4))
            if missing < b.missing_line_probability:
                continue
            charged = min(b.fee_amount, amount - 1) if fee < b.fee_probability else 0
            credit = StatementLine(pid, amount - charged, cur, at, at, LineKind.CREDIT)
            lines.append((cur, day, credit))
            if charged:
                lines.append((cur, day, StatementLine(pid, charged, cur, at, at, LineKind.FEE)))
            if duplicate < b.duplicate_line_probability:
                lines.append((cur, day, credit))
            if reversal < b.reversal_probability:
                back = at + self.day_length
                reversed_line = StatementLine(
                    pid, -credit.amount, cur, back, back, LineKind.REVERSAL
                )
                lines.append((cur, day + 1, reversed_line))
        self.book.book(batch.id, cur, received, lines)

    def statements_after(self, position: int, now: float) -> list[Statement]:
        if self._unavailable(now):
            return []
        self.book.issue(lambda state, lines_of: self._due(state, lines_of, now))
        return self.book.feed(position)

    def _due(self, state: BookState, lines_of: LinesOf, now: float) -> list[Statement]:
        """Issue every statement due by `now`, moving `state` past it."""
        out: list[Statement] = []
        for currency in sorted(state.next_day):
            day = state.next_day[currency]
            while (day + 1) * self.day_length + self.behaviour.statement_delay <= now:
                out.append(self._statement(state, currency, day, lines_of(currency, day)))
                day += 1
            state.next_day[currency] = day
        return sorted(out, key=lambda s: (s.created_at, s.currency))

    def _statement(
        self, state: BookState, currency: str, day: int, lines: list[StatementLine]
    ) -> Statement:
        opening = state.balances[currency]
        closing = opening + sum(ln.amount for ln in lines)
        state.balances[currency] = closing
        start, end = day * self.day_length, (day + 1) * self.day_length
        return Statement(
            f"{self.name}:{currency}:{day:06d}",
            self.name,
            currency,
            opening,
            closing,
            tuple(lines),
            end + self.behaviour.statement_delay,
            period_start=start,
            period_end=end,
        )
