"""Service-time and latency distributions per handler: the defaults until calibration.

The numbers are the order of magnitude of a Python service over a local database: a gateway
request takes about a millisecond of CPU, a commit a millisecond or two, a consumer batch has a
fixed cost plus a cost per event. `testbed calibrate` will later fit these from a load run;
until then they are defaults a reader can see in one place.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace


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

    def sample(self, rng: random.Random, items: float, skipped: int = 0) -> float:
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
    light_weight: float = 0.5
    """What a handled event of a group's `light` types costs, as a fraction of `per_item` (a
    PaymentReceived screened and reserved with the checks off). The payments group with the
    checks in parallel: a PaymentReceived is screened and left waiting (about 0.4), a
    CheckDecided that leaves the payment's decisions incomplete is a lookup (0.1 to 0.2) and the
    one in three that completes them reserves (1.2 to 1.3), about 0.5 on average;
    `python -m sim.bench_event_costs` measures them on the memory store. Not fitted by
    `testbed calibrate`."""
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
    client_back: Distribution | None = None
    """The answer's way back to the client, when it differs (a busy client reads late)."""
    ledger_writers: int = 0
    """0: the ledger commits on the topology's `connections` at once. N: at most N transactions
    at a time (SQLite: 1, its one write lock, which a load run's calibration measures)."""
    host_cores: int = 0
    """0: every node computes on a CPU of its own (machines of their own). N: the gateway's
    replicas, the consumers and the load generator share one host of N cores (a load run on one
    machine), so a node's compute first waits for a free core; the ledger is apart."""
    client_cpu: float = 0.0
    """With `host_cores`: the load generator's CPU per request, on the same cores."""
    consumer_poll: float = 0.0
    """Seconds between an idle consumer's polls when nothing wakes it: 0 means a commit wakes
    the consumers of its partition at once (a cross-process notification, as on PostgreSQL);
    the real processes on SQLite have none and poll (`testbed calibrate` reads which)."""

    sanctions_batch: BatchCost = field(
        default_factory=lambda: BatchCost(LogNormal(0.001, 0.4), 2e-4, SKIP)
    )
    """The sanctions consumer: normalise and match each payment's names against the list."""
    aml_batch: BatchCost = field(
        default_factory=lambda: BatchCost(LogNormal(0.001, 0.4), 1e-4, SKIP)
    )
    """The AML consumer: read the account's windows, apply the rules, record the movement."""
    fraud_batch: BatchCost = field(
        default_factory=lambda: BatchCost(LogNormal(0.001, 0.4), 2.2e-4, SKIP)
    )
    """The fraud consumer with the rules: read the account's profile, its features, the rules,
    write the profile back (0.22 ms measured). A trained model adds its scoring time
    (`scoring`)."""

    def work(self, stage: str) -> BatchCost:
        """The cost of a consumer engine `Work` of `stage` (a group's name, or a task's stage)."""
        return {
            "payments": self.payments_batch,
            "settlement": self.settlement_batch,
            "reporting": self.reporting_batch,
            "settlement-close": self.settlement_close,
            "statement": self.statement,
            "sanctions": self.sanctions_batch,
            "aml": self.aml_batch,
            "fraud": self.fraud_batch,
        }[stage]

    def scoring(self, checkers: Sequence[object]) -> ServiceTimes:
        """These times with the fraud check's trained model, if it has one, adding the scoring
        time its training measured (model.json's `score_seconds` median) to each payment."""
        for checker in checkers:
            training = getattr(getattr(checker, "model", None), "training", None) or {}
            p50 = training.get("score_seconds", {}).get("p50")
            if p50:
                batch = self.fraud_batch
                return replace(self, fraud_batch=replace(batch, per_item=batch.per_item + p50))
        return self

    def inline_checks(self, checks: Sequence[str]) -> ServiceTimes:
        """These times with `checks` run inside the payments worker (sequential mode). The
        checks run on PaymentReceived, one of the two events the group handles for a payment
        that posts (PaymentReserved is the other): each handled event pays half of every
        check's cost per item (a payment held or rejected, with no PaymentReserved, is charged
        half its checks)."""
        extra = sum(self.work(c).per_item for c in checks) / 2
        batch = self.payments_batch
        return replace(self, payments_batch=replace(batch, per_item=batch.per_item + extra))


DEFAULTS = ServiceTimes()
