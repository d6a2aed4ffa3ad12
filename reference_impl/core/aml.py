"""Anti-money-laundering rules over a debtor account's recent movements: velocity, structuring,
and pass-through. Pure and one pass over the movements, so it can run on every payment.

The pipeline hands in the account's earlier outgoing and incoming movements from keyed store
records. They may repeat (a redelivered message) and may include the payment being decided, so
each sequence is deduplicated by payment id and the payment being decided is taken from the
arguments, never from the history. A movement counts for a rule when it lies in the rule's
window, `at - window <= movement.at <= at`; later ones are ignored.

Units: amounts in minor units (cents) of the account's currency, times and windows in seconds.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields

from reference_impl.core.checks import APPROVE, Decision
from reference_impl.core.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class Movement:
    payment_id: str
    at: float
    amount: int
    counterparty: str


@dataclass(frozen=True, slots=True)
class AmlRules:
    """Thresholds, each a field with its unit. A rule that fires answers "review".

    Every score is `min(1, value / (2 * edge))`, the edge being the least value that fires the
    rule (21 payments for a count of 20): 0.5 at the edge, 1.0 at twice the edge.
    When several rules fire the decision names the highest-scoring one (on a tie, the first of
    velocity, structuring, pass-through).
    """

    velocity_window: float = 3600.0
    """Seconds of outgoing history the velocity rule looks at."""
    velocity_count: int = 20
    """Most outgoing payments (this one included) allowed in the window; one more fires."""
    velocity_amount: int = 5_000_000
    """Most outgoing money (this one included) allowed in the window, minor units (50,000.00)."""
    reporting_threshold: int = 1_000_000
    """The cash-reporting threshold structuring stays under, minor units (10,000.00)."""
    structuring_margin: float = 0.1
    """How far under the threshold counts as just under: [threshold * (1 - margin), threshold)."""
    structuring_window: float = 86400.0
    """Seconds of outgoing history the structuring rule looks at."""
    structuring_count: int = 3
    """Payments just under the threshold in the window (this one included, and it must be one)
    that fire the rule."""
    passthrough_window: float = 600.0
    """Seconds within which money received and sent on counts as passing through."""
    passthrough_ratio: float = 0.8
    """The share of the money received in the window that, sent on in it, fires the rule (and
    no more than was received: an account spending its own balance is not passing money on)."""
    passthrough_sources: int = 3
    """Most distinct senders in the window for the pass-through rule to apply: a mule's money
    comes from one or two accounts, a busy account's from many (it is not passing money on)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value <= 0:
                raise InvalidInput(f"AmlRules.{f.name}: must be positive, got {value}")
        if self.structuring_margin >= 1:
            raise InvalidInput(
                f"AmlRules.structuring_margin: must be below 1, got {self.structuring_margin}"
            )

    def decide(
        self,
        payment_id: str,
        amount: int,
        at: float,
        outgoing: Sequence[Movement],
        incoming: Sequence[Movement],
    ) -> Decision:
        """Review or approve the outgoing payment `payment_id` of `amount` at time `at`."""
        floor = self.reporting_threshold * (1 - self.structuring_margin)
        in_band = floor <= amount < self.reporting_threshold
        count, total, just_under, sent = 1, amount, int(in_band), amount
        for m in _earlier(outgoing, payment_id, at):
            age = at - m.at
            if age <= self.velocity_window:
                count += 1
                total += m.amount
            if in_band and age <= self.structuring_window:
                just_under += floor <= m.amount < self.reporting_threshold
            if age <= self.passthrough_window:
                sent += m.amount
        recent = [
            m for m in _earlier(incoming, payment_id, at) if at - m.at <= self.passthrough_window
        ]
        received = sum(m.amount for m in recent)
        sources = len({m.counterparty for m in recent})
        fired: list[tuple[float, str]] = []
        if count > self.velocity_count or total > self.velocity_amount:
            score = max(
                _score(count, self.velocity_count + 1), _score(total, self.velocity_amount + 1)
            )
            fired.append((score, "aml:velocity"))
        if in_band and just_under >= self.structuring_count:
            fired.append((_score(just_under, self.structuring_count), "aml:structuring"))
        in_transit = 0 < self.passthrough_ratio * received <= sent <= received
        if in_transit and sources <= self.passthrough_sources:
            fired.append((_score(sent / received, self.passthrough_ratio), "aml:passthrough"))
        if not fired:
            return APPROVE
        score, reason = max(fired, key=lambda f: f[0])  # max keeps the first of equals
        return Decision("review", reason, score)


def window_span(rules: AmlRules) -> float:
    """The longest window any rule looks back: history older than this can be pruned."""
    return max(rules.velocity_window, rules.structuring_window, rules.passthrough_window)


def _earlier(movements: Sequence[Movement], payment_id: str, at: float) -> Iterator[Movement]:
    """Each movement once, not the payment being decided, none later than `at`."""
    seen = {payment_id}
    for m in movements:
        if m.payment_id not in seen and m.at <= at:
            seen.add(m.payment_id)
            yield m


def _score(value: float, edge: float) -> float:
    """0.5 at the rule's edge (the least value that fires it), 1.0 at twice the edge."""
    return min(1.0, value / (2 * edge))
