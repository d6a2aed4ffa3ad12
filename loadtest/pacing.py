"""The open-model schedule: when each payment is meant to be sent, and what it asks for.

The load runtime must offer a scenario the same traffic the sim offers (sim/clients.py), so this
is the sim's client model, written again without SimPy: Poisson arrivals whose rate follows the
profile steps plus the bursts (at a rate change the next gap is redrawn: memorylessness), a
tenant drawn uniformly, a Zipf-skewed debtor and creditor, an amount from the scenario's
distribution, and now and then a deliberate double submit. The draws come from one
`random.Random` in the sim's order, so one generator seeded like the sim's "arrivals" stream
schedules the very requests the sim makes. Several generator processes each run a `share` of
the rate from streams of their own: independent Poisson processes add up to one.

Pure (stdlib only): the Locust side runs it in each generator process, tests run it bare.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

from scenarios.schema import Amount, Workload

FUNDING_ACCOUNT = "funding"
"""Each tenant's overdraft account that the set-up funds every other account from (as the sim)."""


def account_ids(count: int) -> list[str]:
    """The sim's account ids, the same in every tenant."""
    return [f"acc-{i:06d}" for i in range(count)]


def tenant_ids(count: int) -> list[str]:
    """The sim's tenant ids."""
    return [f"tenant-{i + 1}" for i in range(count)]


def arrivals_seed(seed: int, process: int, processes: int) -> str:
    """The seed of one generator process's arrival stream: the sim's own for a single process."""
    return f"{seed}/arrivals" if processes == 1 else f"{seed}/arrivals/{process}-of-{processes}"


def retries_seed(seed: int, process: int, processes: int) -> str:
    """The seed of one generator process's retry-jitter stream: the sim's own for one process."""
    return f"{seed}/retries" if processes == 1 else f"{seed}/retries/{process}-of-{processes}"


class ZipfAccounts:
    """Draws account indexes with P(rank k) proportional to 1 / k**s (s = 0 is uniform)."""

    def __init__(self, count: int, s: float) -> None:
        total = 0.0
        self.cumulative: list[float] = []
        for k in range(1, count + 1):
            total += 1.0 / k**s
            self.cumulative.append(total)
        self.total = total

    def draw(self, rng: random.Random) -> int:
        return bisect.bisect_left(self.cumulative, rng.random() * self.total)

    def pair(self, rng: random.Random) -> tuple[int, int]:
        debtor = self.draw(rng)
        creditor = self.draw(rng)
        while creditor == debtor:
            creditor = self.draw(rng)
        return debtor, creditor


def draw_amount(spec: Amount, rng: random.Random) -> int:
    if spec.distribution == "fixed":
        return spec.median
    if spec.distribution == "uniform":
        return rng.randint(spec.min, spec.max)
    value = round(rng.lognormvariate(math.log(spec.median), spec.sigma))
    return min(spec.max, max(spec.min, value))


def rate_segments(workload: Workload, duration: float) -> Iterator[tuple[float, float, float]]:
    """(start, end, rate) pieces covering [0, duration): profile steps plus active bursts."""
    cuts = {0.0, duration}
    cuts.update(s.at for s in workload.profile if s.at < duration)
    for b in workload.bursts:
        cuts.update(t for t in (b.at, b.at + b.duration) if t < duration)
    for start, end in itertools.pairwise(sorted(cuts)):
        rate = workload.rate
        for step in workload.profile:
            if step.at <= start:
                rate = step.rate
        for b in workload.bursts:
            if b.at <= start < b.at + b.duration:
                rate += b.rate
        yield start, end, rate


def peak_rate(workload: Workload, duration: float) -> float:
    """The highest arrival rate the schedule reaches (0 if it sends nothing)."""
    return max((rate for _s, _e, rate in rate_segments(workload, duration)), default=0.0)


def expected_arrivals(workload: Workload, duration: float, start: float, end: float) -> float:
    """The mean number of arrivals the profile asks for in [start, end)."""
    total = 0.0
    for lo, hi, rate in rate_segments(workload, duration):
        overlap = min(hi, end) - max(lo, start)
        if overlap > 0:
            total += rate * overlap
    return total


@dataclass(frozen=True, slots=True)
class Arrival:
    """One payment a client decides to make: at `at` schedule seconds from the traffic start."""

    at: float
    tenant: str
    debtor: str
    creditor: str
    amount: int
    currency: str
    duplicate: bool
    """A double submit: the same key and body sent twice at the same moment."""


def arrivals(
    workload: Workload, duration: float, rng: random.Random, share: float = 1.0
) -> Iterator[Arrival]:
    """The schedule of [0, duration) in time order, at `share` of the workload's rate."""
    tenants = tenant_ids(workload.tenants)
    accounts = account_ids(workload.accounts)
    zipf = ZipfAccounts(workload.accounts, workload.zipf)
    duplicates = workload.client.duplicate_probability
    now = 0.0
    for start, end, rate in rate_segments(workload, duration):
        if now < start:
            now += start - now  # the sim's clock moves exactly this way (env.timeout)
        rate *= share
        if rate <= 0:
            continue
        while True:
            gap = rng.expovariate(rate)
            if now + gap >= end:
                break
            now += gap
            tenant = tenants[rng.randrange(len(tenants))]
            debtor, creditor = zipf.pair(rng)
            amount = draw_amount(workload.amount, rng)
            duplicate = bool(duplicates) and rng.random() < duplicates
            yield Arrival(
                now, tenant, accounts[debtor], accounts[creditor], amount, workload.currency,
                duplicate,
            )  # fmt: skip
