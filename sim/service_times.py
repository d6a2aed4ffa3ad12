"""Service-time and latency distributions per handler: the defaults until calibration.

The numbers are the order of magnitude of a Python service over a local database: a gateway
request takes about a millisecond of CPU, a commit a millisecond or two, a consumer batch has a
fixed cost plus a cost per event. `testbed calibrate` will later fit these from a load run;
until then they are defaults a reader can see in one place.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Exponential:
    mean: float

    def sample(self, rng: random.Random) -> float:
        return rng.expovariate(1.0 / self.mean) if self.mean > 0 else 0.0


@dataclass(frozen=True, slots=True)
class LogNormal:
    """Right-skewed like real service times: `median` in seconds, `sigma` of the log."""

    median: float
    sigma: float

    def sample(self, rng: random.Random) -> float:
        return rng.lognormvariate(math.log(self.median), self.sigma)

    @property
    def mean(self) -> float:
        return self.median * math.exp(self.sigma**2 / 2)


@dataclass(frozen=True, slots=True)
class Constant:
    value: float

    def sample(self, rng: random.Random) -> float:
        del rng
        return self.value

    @property
    def mean(self) -> float:
        return self.value


Distribution = Exponential | LogNormal | Constant


@dataclass(frozen=True, slots=True)
class BatchCost:
    """A batch costs a fixed part (fetch, transaction) plus a part per item it works on, and a
    small part per item it only skips (an event of a type the group does not handle)."""

    base: Distribution
    per_item: float
    per_skipped: float = 0.0

    def sample(self, rng: random.Random, items: int, skipped: int = 0) -> float:
        return self.base.sample(rng) + self.per_item * items + self.per_skipped * skipped


SKIP = 5e-6
"""Seconds to pass over one fetched event a group does not handle (a type check, no decode)."""


@dataclass(frozen=True, slots=True)
class ServiceTimes:
    gateway_accept: Distribution = LogNormal(0.0008, 0.5)
    """Auth, validation, idempotency lookup: the gateway's CPU per request."""
    ledger_commit: BatchCost = field(
        default_factory=lambda: BatchCost(LogNormal(0.0012, 0.4), 2e-5)
    )
    """One transaction on the primary (fsync included), plus a little per written row."""
    payments_batch: BatchCost = field(
        default_factory=lambda: BatchCost(LogNormal(0.001, 0.4), 2e-4, SKIP)
    )
    """A payments batch: fetch, then screening and ledger work per handled event."""
    settlement_batch: BatchCost = field(
        default_factory=lambda: BatchCost(LogNormal(0.002, 0.4), 5e-5, SKIP)
    )
    """The settlement consumer: group posted payments into open batches."""
    reporting_batch: BatchCost = field(
        default_factory=lambda: BatchCost(LogNormal(0.001, 0.4), 3e-5, SKIP)
    )
    """The projector: fold each event into the read models."""
    settlement_close: BatchCost = field(
        default_factory=lambda: BatchCost(LogNormal(0.02, 0.3), 2e-5)
    )
    """A cut-off: netting and the partner file, per payment in the batches it closes."""
    statement: BatchCost = field(default_factory=lambda: BatchCost(LogNormal(0.005, 0.3), 3e-5))
    """Reconciling one partner statement, per statement line."""
    same_zone: Distribution = LogNormal(0.00025, 0.3)
    cross_zone: Distribution = LogNormal(0.001, 0.3)
    client: Distribution = LogNormal(0.005, 0.4)
    """Client to the gateway's load balancer: the public internet, one way."""

    def work(self, stage: str) -> BatchCost:
        """The cost of a consumer engine `Work` of `stage` (a group's name, or a task's stage)."""
        return {
            "payments": self.payments_batch,
            "settlement": self.settlement_batch,
            "reporting": self.reporting_batch,
            "settlement-close": self.settlement_close,
            "statement": self.statement,
        }[stage]


DEFAULTS = ServiceTimes()
