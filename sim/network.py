"""Links between zones: one-way latency drawn per message, plus injected extra latency.

Links have no queue of their own (bandwidth is not the bottleneck this models); a message is a
delay. Delivery is a timer with a callback, not a process, because a payment crosses several
links and a process per message would dominate the cost of the sim.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import simpy

from sim.service_times import ServiceTimes

CLIENT_ZONE = "clients"
"""Where clients live: outside every zone, behind the public internet."""


class Network:
    def __init__(self, env: simpy.Environment, times: ServiceTimes, rng: random.Random) -> None:
        self.env = env
        self.times = times
        self.rng = rng
        self._extra: dict[frozenset[str], float] = {}
        self._extra_all = 0.0

    def latency(self, a: str, b: str) -> float:
        if CLIENT_ZONE in (a, b):
            base = self.times.client.sample(self.rng)
        elif a == b:
            base = self.times.same_zone.sample(self.rng)
        else:
            base = self.times.cross_zone.sample(self.rng)
        if self._extra:
            base += self._extra.get(frozenset((a, b)), 0.0)
        return base + self._extra_all

    def rtt(self, a: str, b: str) -> float:
        return self.latency(a, b) + self.latency(b, a)

    def deliver(self, a: str, b: str, fn: Callable[[], None]) -> None:
        """Run `fn` when a message from zone a reaches zone b."""
        timer = self.env.timeout(self.latency(a, b))
        timer.callbacks.append(lambda _ev: fn())

    def add_extra(self, zones: list[str] | None, extra: float) -> None:
        """Add (or with a negative `extra`, remove) latency between two zones, or everywhere."""
        if zones is None:
            self._extra_all += extra
            return
        key = frozenset(zones)
        value = self._extra.get(key, 0.0) + extra
        if abs(value) < 1e-12:
            self._extra.pop(key, None)
        else:
            self._extra[key] = value
