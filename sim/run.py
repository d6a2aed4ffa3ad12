"""One sim run: traffic for `duration`, then a drain until every payment is terminal.

After the arrivals stop, the run continues until every client request is answered or given up
and every accepted payment is settled, rejected or failed, or until the `drain` deadline, so
that what is still open at the end is a finding (liveness), not an artefact of stopping early.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from scenarios.schema import Scenario
from sim.consumers import PartitionLag
from sim.node import NodeSample
from sim.system import System

Progress = Callable[[float, float], None]
"""Called with (simulated now, simulated horizon) as the run advances."""

DRAIN_STEP = 0.1
"""Seconds of simulated time between checks that the drain is done."""


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


def simulate(scenario: Scenario, seed: int, progress: Progress | None = None) -> SimRun:
    system = System(scenario, seed)
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
