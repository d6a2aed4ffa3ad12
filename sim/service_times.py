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
    """A batch costs a fixed part (fetch, transaction) plus a part per item."""

    base: Distribution
    per_item: float

    def sample(self, rng: random.Random, items: int) -> float:
        return self.base.sample(rng) + self.per_item * items


@dataclass(frozen=True, slots=True)
class ServiceTimes:
    gateway_accept: Distribution = LogNormal(0.0008, 0.5)
    """Auth, validation, idempotency lookup: the gateway's CPU per request."""
    ledger_commit: BatchCost = field(
        default_factory=lambda: BatchCost(LogNormal(0.0012, 0.4), 2e-5)
    )
    """One transaction on the primary (fsync included), plus a little per written row."""
    payments_batch: BatchCost = field(
        default_factory=lambda: BatchCost(LogNormal(0.001, 0.4), 2e-4)
    )
    """A consumer batch: fetch, then screening and ledger work per event."""
    settlement_batch: BatchCost = field(
        default_factory=lambda: BatchCost(LogNormal(0.002, 0.4), 5e-5)
    )
    """The settlement consumer: group posted payments into open batches."""
    settlement_close: Distribution = LogNormal(0.02, 0.3)
    """Netting, file generation and reconciliation at a cut-off."""
    same_zone: Distribution = LogNormal(0.00025, 0.3)
    cross_zone: Distribution = LogNormal(0.001, 0.3)
    client: Distribution = LogNormal(0.005, 0.4)
    """Client to the gateway's load balancer: the public internet, one way."""


DEFAULTS = ServiceTimes()
