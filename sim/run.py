"""One sim run: traffic for `duration`, then a drain until every payment is terminal.

After the arrivals stop, the run continues until every client request is answered or given up
and every accepted payment is settled, rejected or failed, or until the `drain` deadline, so
that what is still open at the end is a finding (liveness), not an artefact of stopping early.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from scenarios.schema import Scenario
from sim.consumers import PartitionLag
from sim.node import NodeSample
from sim.service_times import DEFAULTS, ServiceTimes
from sim.system import System

Progress = Callable[[float, float], None]
"""Called with (simulated now, simulated horizon) as the run advances."""

DRAIN_STEP = 0.1
"""Seconds of simulated time between checks that the drain is done."""

GC_THRESHOLDS = (50_000, 20, 10)
"""The cycle collector's thresholds during a run (CPython's default is (700, 10, 10))."""


@dataclass(frozen=True, slots=True)
class SimRun:
    system: System
    samples: list[NodeSample]
    lags: list[PartitionLag]
    duration: float
    drained_at: float
    drained: bool


def sample_interval(scenario: Scenario) -> float:
    """About a thousand samples per node over the run, never more than ten a second."""
    return max(0.1, round((scenario.duration + scenario.drain) / 1000, 3))


@contextmanager
def fewer_collections() -> Iterator[None]:
    """A run allocates millions of objects (events, records, transfers, SimPy events), nearly
    all freed by reference counting; at the default threshold the cycle collector ran every
    700 allocations and its older passes walked the store's growing heap, 12-30% of a run.
    Collecting less often still collects the cycles there are (generators and SimPy events),
    at the same peak memory (steady-state, 60 s: 500 MB either way). Exporting a run's tables
    allocates a row per request, payment, sample and lag while that heap is still alive: it
    runs under the same thresholds (sim/export.py; half the export's time for a swarm seed)."""
    before = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)


def simulate(
    scenario: Scenario,
    seed: int,
    progress: Progress | None = None,
    times: ServiceTimes = DEFAULTS,
) -> SimRun:
    """Run `scenario` with `seed` on simulated time, charging `times` (a calibration's, or the
    defaults)."""
    with fewer_collections():
        return _simulate(scenario, seed, progress, times)


def _simulate(
    scenario: Scenario, seed: int, progress: Progress | None, times: ServiceTimes
) -> SimRun:
    system = System(scenario, seed, times)
    env = system.env
    samples: list[NodeSample] = []
    lags: list[PartitionLag] = []
    duration, horizon = scenario.duration, scenario.duration + scenario.drain
    system.start(duration, sample_interval(scenario), samples, lags)
    step = max(duration / 200, 0.01)
    while env.now < duration:
        env.run(until=min(duration, env.now + step))
        if progress:
            progress(env.now, horizon)
    while env.now < horizon and not system.settled_everything:
        env.run(until=min(horizon, env.now + DRAIN_STEP))
        if progress:
            progress(env.now, horizon)
    if progress:
        progress(horizon, horizon)
    for node in system.nodes:
        node.close_books()
    return SimRun(system, samples, lags, duration, env.now, system.settled_everything)
