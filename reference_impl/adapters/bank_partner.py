"""A simulated bank partner: books the batches it receives and issues end-of-day statements.

It stands in for a real partner's file channel (a pain.001 file out, a camt.053 statement back)
so the settlement worker and its reconciliation can be exercised, and broken, on purpose. It keeps
its own book per currency; each day's bookings become one statement per currency, due
`statement_delay` seconds after the day ends. When told to misbehave it books batches a day late,
drops or duplicates lines, deducts fees and reverses credits, and it can be unreachable for a
while. Every choice comes from the rng it is given, so a seeded run is reproducible.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass

from reference_impl.core.settlement import LineKind, SettlementBatch, Statement, StatementLine
from reference_impl.service.settlement import BankPartner, PartnerUnavailable

__all__ = ["BankPartner", "BankPartnerSimulator", "PartnerBehaviour", "PartnerUnavailable"]

DAY = 86_400.0


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


class BankPartnerSimulator:
    def __init__(
        self,
        name: str,
        behaviour: PartnerBehaviour,
        rng: random.Random,
        *,
        day_length: float = DAY,
    ) -> None:
        self._name = name
        self.behaviour = behaviour
        self.rng = rng
        self.day_length = day_length
        self.booked: set[str] = set()
        """Ids of the batches booked: a resubmitted batch is not booked twice."""
        self._lines: defaultdict[tuple[str, int], list[StatementLine]] = defaultdict(list)
        self._balances: dict[str, int] = {}
        self._next_day: dict[str, int] = {}
        """Per currency, the first day whose statement has not been issued yet."""

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
        if batch.id in self.booked:
            return
        self.booked.add(batch.id)
        b, rng = self.behaviour, self.rng
        day = int(now // self.day_length)
        self._next_day.setdefault(batch.currency, day)
        self._balances.setdefault(batch.currency, 0)
        if rng.random() < b.late_probability:
            day += 1
        at = max(now, day * self.day_length)
        for pid, amount in zip(batch.payment_ids, batch.amounts, strict=True):
            # Draw every number for every payment, so one probability does not shift the others.
            missing, fee, duplicate, reversal = (rng.random() for _ in range(4))
            if missing < b.missing_line_probability:
                continue
            charged = min(b.fee_amount, amount - 1) if fee < b.fee_probability else 0
            credit = StatementLine(pid, amount - charged, batch.currency, at, at, LineKind.CREDIT)
            lines = self._lines[(batch.currency, day)]
            lines.append(credit)
            if charged:
                lines.append(StatementLine(pid, charged, batch.currency, at, at, LineKind.FEE))
            if duplicate < b.duplicate_line_probability:
                lines.append(credit)
            if reversal < b.reversal_probability:
                back = at + self.day_length
                self._lines[(batch.currency, day + 1)].append(
                    StatementLine(
                        pid, -credit.amount, batch.currency, back, back, LineKind.REVERSAL
                    )
                )

    def statements(self, now: float) -> list[Statement]:
        if self._unavailable(now):
            return []
        out: list[Statement] = []
        for currency in sorted(self._next_day):
            day = self._next_day[currency]
            while (day + 1) * self.day_length + self.behaviour.statement_delay <= now:
                out.append(self._statement(currency, day))
                day += 1
            self._next_day[currency] = day
        return sorted(out, key=lambda s: (s.created_at, s.currency))

    def _statement(self, currency: str, day: int) -> Statement:
        lines = tuple(self._lines.pop((currency, day), ()))
        opening = self._balances[currency]
        closing = opening + sum(ln.amount for ln in lines)
        self._balances[currency] = closing
        start, end = day * self.day_length, (day + 1) * self.day_length
        return Statement(
            f"{self.name}:{currency}:{day:06d}",
            self.name,
            currency,
            opening,
            closing,
            lines,
            end + self.behaviour.statement_delay,
            period_start=start,
            period_end=end,
        )
