"""What a scenario's workload section means, drawn the same way by both runtimes.

Tenant and account ids, Zipf-skewed account picks, amounts from the scenario's distribution,
and the arrival rate over time (profile steps plus bursts). The sim's clients (sim/clients.py)
and the load runtime's schedule (loadtest/pacing.py) both draw from here, in the same order, so
a generator seeded like the sim's "arrivals" stream schedules the very requests the sim makes.

Pure (stdlib only besides the schema): the Locust side imports it in each generator process.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # schema.py imports fraud.py, which draws from here
    from scenarios.schema import Amount, Workload


def account_ids(count: int) -> list[str]:
    """The sim's account ids, the same in every tenant."""
    return [f"acc-{i:06d}" for i in range(count)]


def tenant_ids(count: int) -> list[str]:
    """The sim's tenant ids."""
    return [f"tenant-{i + 1}" for i in range(count)]


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
