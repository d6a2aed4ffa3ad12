"""Links between zones and nodes: latency per message, and the faults a network has.

Links have no queue of their own (bandwidth is not the bottleneck this models); a message is a
delay. Delivery is a timer with a callback, not a process, because a payment crosses several
links and a process per message would dominate the cost of the sim.

Faults come in two kinds, because the two kinds of traffic fail differently:

- client <-> gateway messages are HTTP over the internet, and `deliver` can lose, duplicate or
  hold back (reorder) each one, so clients see timeouts, retries and double deliveries;
- every link, including a node's connection to the ledger, can be cut (`block`): a partition
  between zones or nodes, one-way or both, or a clogged link. A TCP connection does not lose or
  duplicate single messages, so loss and duplication are not applied to store calls; a cut
  link makes them time out instead (see sim/ledger.py).

Every endpoint is named: a zone, a node, or `clients`. A fault names one or two endpoints
(none: every link); counters record what each fault did so tests and the faults table can
show it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import simpy

from sim.service_times import ServiceTimes

CLIENT_ZONE = "clients"
"""Where clients live: outside every zone, behind the public internet."""


@dataclass(slots=True)
class MessageFault:
    """Loss, duplication or reordering on messages between `ends` (None: every message)."""

    kind: str
    ends: frozenset[str] | None
    probability: float
    extra: float = 0.0
    hits: int = 0

    def applies(self, a: str, b: str) -> bool:
        ends = self.ends
        if ends is None:
            return True
        if len(ends) == 1:
            return a in ends or b in ends
        return frozenset((a, b)) == ends


class Network:
    def __init__(self, env: simpy.Environment, times: ServiceTimes, rng: random.Random) -> None:
        self.env = env
        self.times = times
        self.rng = rng
        self._extra: dict[frozenset[str], float] = {}
        self._extra_all = 0.0
        self._message_faults: list[MessageFault] = []
        self._blocked: dict[tuple[str, str], int] = {}
        self.blocked_messages = 0
        """Messages and store calls that a cut link stopped."""

    def latency(self, a: str, b: str) -> float:
        if b == CLIENT_ZONE and self.times.client_back is not None:
            base = self.times.client_back.sample(self.rng)
        elif CLIENT_ZONE in (a, b):
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
        """Run `fn` when a message from zone a reaches zone b (if it does)."""
        delay = self.latency(a, b)
        copies = 1
        if self._blocked and not self.reachable(a, b):
            self.blocked_messages += 1
            return
        for fault in self._message_faults:
            if not fault.applies(a, b) or self.rng.random() >= fault.probability:
                continue
            fault.hits += 1
            if fault.kind == "loss":
                return
            if fault.kind == "duplicate":
                copies = 2
            else:
                delay += self.rng.uniform(0.0, fault.extra)
        for _ in range(copies):
            timer = self.env.timeout(delay)
            timer.callbacks.append(lambda _ev: fn())

    # -- cut links --------------------------------------------------------------------------
    def reachable(self, *path: str) -> bool:
        """Can a message go from the first endpoints to the last? `path` is (zone, node, ...,
        zone, node) or just (zone, zone): any cut between a source and a destination name
        stops it."""
        if not self._blocked:
            return True
        half = len(path) // 2
        sources, targets = path[:half], path[half:]
        return not any((s, t) in self._blocked for s in sources for t in targets)

    def block(self, a: str, b: str, one_way: bool = False) -> None:
        """Cut a -> b (and b -> a unless `one_way`); cuts nest, so overlapping faults unwind."""
        for pair in ((a, b),) if one_way else ((a, b), (b, a)):
            self._blocked[pair] = self._blocked.get(pair, 0) + 1

    def unblock(self, a: str, b: str, one_way: bool = False) -> None:
        for pair in ((a, b),) if one_way else ((a, b), (b, a)):
            left = self._blocked.get(pair, 0) - 1
            if left > 0:
                self._blocked[pair] = left
            else:
                self._blocked.pop(pair, None)

    # -- message faults and latency ------------------------------------------------------------
    def add_message_fault(self, fault: MessageFault) -> None:
        self._message_faults.append(fault)

    def remove_message_fault(self, fault: MessageFault) -> None:
        self._message_faults.remove(fault)

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
