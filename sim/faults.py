"""Faults on a timeline: timed crashes and latency windows, and background rates of both.

Each fault is applied and undone by a timer, and written to the faults table as it starts, so
the report can shade its window. Background rates are Poisson processes drawn from their own
stream, so adding background faults leaves the workload's numbers unchanged.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Protocol

import simpy

from scenarios.schema import Crash, Faults, Latency
from scenarios.units import format_duration
from sim.network import Network


class Crashable(Protocol):
    def crash(self) -> None: ...

    def restart(self) -> None: ...


@dataclass(frozen=True, slots=True)
class FaultRow:
    start: float
    end: float
    kind: str
    target: str
    detail: str


class FaultInjector:
    def __init__(
        self,
        env: simpy.Environment,
        targets: dict[str, Crashable],
        network: Network,
        rng: random.Random,
    ) -> None:
        self.env = env
        self.targets = targets
        self.network = network
        self.rng = rng
        self.rows: list[FaultRow] = []

    def _at(self, t: float, fn: Callable[[], None]) -> None:
        timer = self.env.timeout(max(0.0, t - self.env.now))
        timer.callbacks.append(lambda _ev: fn())

    def crash(self, node: str, at: float, down: float, detail: str = "") -> None:
        target = self.targets[node]

        def start() -> None:
            self.rows.append(FaultRow(self.env.now, self.env.now + down, "crash", node, detail))
            target.crash()

        self._at(at, start)
        self._at(at + down, target.restart)

    def latency(self, zones: list[str] | None, at: float, duration: float, extra: float) -> None:
        target = "<->".join(zones) if zones else "all"

        def start() -> None:
            end = self.env.now + duration
            self.rows.append(
                FaultRow(self.env.now, end, "latency", target, f"+{format_duration(extra)}")
            )
            self.network.add_extra(zones, extra)

        self._at(at, start)
        self._at(at + duration, lambda: self.network.add_extra(zones, -extra))

    def schedule(self, faults: Faults, until: float) -> None:
        for f in faults.timed:
            if isinstance(f, Crash):
                self.crash(f.node, f.at, f.duration)
            elif isinstance(f, Latency):
                self.latency(list(f.zones), f.at, f.duration, f.extra)
        bg = faults.background
        if bg.crashes is not None:
            for node in bg.crashes.nodes:
                self.env.process(
                    self._background_crashes(node, bg.crashes.rate, bg.crashes.down, until)
                )
        if bg.latency is not None:
            spec = bg.latency
            self.env.process(self._latency_spikes(spec.rate, spec.duration, spec.extra, until))

    def _background_crashes(
        self, node: str, rate: float, down: float, until: float
    ) -> Generator[simpy.Event, Any, None]:
        """Crash, stay down, restart, wait an exponential gap; one crash at a time per node."""
        target = self.targets[node]
        while True:
            gap = self.rng.expovariate(rate) if rate > 0 else until
            if self.env.now + gap >= until:
                return
            yield self.env.timeout(gap)
            now = self.env.now
            self.rows.append(FaultRow(now, now + down, "crash", node, "background"))
            target.crash()
            yield self.env.timeout(down)
            target.restart()

    def _latency_spikes(
        self, rate: float, duration: float, extra: float, until: float
    ) -> Generator[simpy.Event, Any, None]:
        while True:
            gap = self.rng.expovariate(rate) if rate > 0 else until
            if self.env.now + gap >= until:
                return
            yield self.env.timeout(gap)
            self.latency(None, self.env.now, duration, extra)
