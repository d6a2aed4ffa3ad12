"""Faults on a timeline: each fault kind is a window that starts, does harm, and ends.

A timed fault opens its window at `at`; a background fault opens windows as a Poisson process
(one window at a time per entry, so "down for 1 s" means it); a swarm draws background faults
from the seed (sim/swarm.py). Targets a background fault leaves open are drawn per window.

Every window goes to the faults table when it opens (so the report can shade it) and its
detail is completed when it closes with what it did (messages dropped, commits failed,
acknowledged commits lost, ...), so the table alone explains a run. All draws come from the
"faults" stream, so adding faults leaves the workload's numbers unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from typing import Any, Protocol

import simpy

from reference_impl.service import groups as coordinator
from scenarios.fault_specs import (
    CLIENTS,
    ClockSkew,
    Clog,
    Crash,
    Disk,
    Duplicate,
    Failover,
    Fault,
    Faults,
    Latency,
    Loss,
    Partition,
    PartnerChaos,
    Pause,
    Poison,
    ProviderTrouble,
    Rebalance,
    RedisDown,
    Reorder,
    ZoneOutage,
)
from scenarios.schema import Scenario
from scenarios.units import format_duration
from sim.consumers import SimGroup
from sim.gateway import Gateway
from sim.ledger import LedgerNode
from sim.network import MessageFault, Network
from sim.node import Node
from sim.rng import Streams
from sim.settlement import Partner, SettlementWorker, behaviour
from sim.swarm import swarm_faults

Undo = Callable[[], str]
"""Ends a window; returns what the window did, for the faults table."""


class Crashable(Protocol):
    def crash(self) -> None: ...

    def restart(self) -> None: ...


class Plant(Protocol):
    """What faults act on: the wired system (sim/system.py)."""

    env: simpy.Environment
    scenario: Scenario
    streams: Streams
    network: Network
    ledger: LedgerNode
    gateway: Gateway
    nodes: list[Node]
    groups: list[SimGroup]
    settlement: SettlementWorker


@dataclass(frozen=True, slots=True)
class FaultRow:
    start: float
    end: float
    kind: str
    target: str
    detail: str


def _do(fn: Callable[[], None]) -> str:
    fn()
    return ""


class FaultInjector:
    def __init__(self, plant: Plant) -> None:
        self.plant = plant
        self.env = plant.env
        self.network = plant.network
        self.rng = plant.streams.get("faults")
        self.zones = list(plant.scenario.topology.zones)
        self.nodes = {n.name: n for n in plant.nodes}
        self.partners: dict[str, Partner] = {p.name: p for p in plant.settlement.partners}
        self.targets: dict[str, Crashable] = {**self.nodes, **self.partners}
        self.rows: list[FaultRow] = []

    # -- scheduling -------------------------------------------------------------------------
    def schedule(self, faults: Faults, until: float) -> None:
        for f in faults.timed:
            assert f.at is not None  # the schema guarantees it for timed faults
            self._at(f.at, lambda f=f: self.open(f))  # type: ignore[misc]
        poisson = faults.background.families()
        if faults.swarm:
            drawn = swarm_faults(self.plant.scenario, self.plant.streams.get("swarm"))
            summary = ", ".join(f"{f.kind} {f.rate:.3g}/s" for f in drawn if f.rate) or "none"
            self.rows.append(FaultRow(0.0, until, "swarm", "all", summary))
            poisson += drawn
        for f in poisson:
            self.env.process(self._poisson(f, until))

    def _at(self, t: float, fn: Callable[[], None]) -> None:
        timer = self.env.timeout(max(0.0, t - self.env.now))
        timer.callbacks.append(lambda _ev: fn())

    def _poisson(self, fault: Fault, until: float) -> Generator[simpy.Event, Any, None]:
        rate = fault.rate or 0.0
        while rate > 0:
            gap = self.rng.expovariate(rate)
            if self.env.now + gap >= until:
                return
            yield self.env.timeout(gap)
            self.open(fault)
            yield self.env.timeout(fault.duration)

    def open(self, fault: Fault) -> None:
        """Start a window of `fault` now; it closes itself after `fault.duration`."""
        target, detail, undo = self._start(fault)
        now = self.env.now
        index = len(self.rows)
        self.rows.append(FaultRow(now, now + fault.duration, fault.kind, target, detail))

        def close() -> None:
            effect = undo()
            if effect:
                row = self.rows[index]
                self.rows[index] = replace(row, detail=f"{row.detail}; {effect}".lstrip("; "))

        self._at(now + fault.duration, close)

    # -- one window per kind ---------------------------------------------------------------
    def _start(self, f: Fault) -> tuple[str, str, Undo]:
        if isinstance(f, Crash | Pause):
            return self._node_fault(f)
        if isinstance(f, ZoneOutage):
            return self._zone_outage(f.zone or self.rng.choice(self.zones))
        if isinstance(f, Latency):
            return self._latency(f)
        if isinstance(f, Loss | Duplicate | Reorder):
            return self._message_fault(f)
        if isinstance(f, Partition):
            return self._partition(f)
        if isinstance(f, Clog):
            return self._clog(f)
        if isinstance(f, Disk):
            return self._disk(f)
        if isinstance(f, Failover):
            return self._failover()
        if isinstance(f, Rebalance):
            return self._rebalance(f)
        if isinstance(f, Poison):
            return self._poison(f)
        if isinstance(f, ProviderTrouble):
            return self._provider(f)
        if isinstance(f, PartnerChaos):
            return self._partner(f)
        if isinstance(f, RedisDown):
            return self._redis()
        assert isinstance(f, ClockSkew)  # leader-failover never validates
        return self._clock_skew(f)

    def _redis(self) -> tuple[str, str, Undo]:
        """The shared rate limit's Redis is down: the gateway fails closed (503) until it is
        back, empty (every tenant's bucket full again). The schema allows the fault only with a
        shared limit."""
        limits = self.plant.gateway.limits
        assert limits is not None and limits.spec.shared
        limits.redis_down = True
        before = limits.unavailable

        def restart() -> str:
            limits.redis_restarted()
            return f"{limits.unavailable - before} requests answered 503; buckets full again"

        return "redis", "killed; the gateway fails closed", restart

    def _node_fault(self, f: Crash | Pause) -> tuple[str, str, Undo]:
        if isinstance(f, Crash):
            name = f.node or self.rng.choice(sorted(self.targets))
            target = self.targets[name]
            target.crash()

            def restart() -> str:
                target.restart()
                return ""

            return name, "", restart
        name = f.node or self.rng.choice(sorted(self.nodes))
        node = self.nodes[name]
        node.pause()
        queued = len(node.queue)

        def resume() -> str:
            backlog = len(node.queue)
            node.resume()
            return f"queue {queued} -> {backlog} while paused"

        return name, "", resume

    def _zone_outage(self, zone: str) -> tuple[str, str, Undo]:
        down = [n for n in self.nodes.values() if n.zone == zone and n.up]
        for n in down:
            n.crash()

        def back() -> str:
            for n in down:
                n.restart()
            return ""

        return zone, ", ".join(n.name for n in down) or "no node up", back

    def _latency(self, f: Latency) -> tuple[str, str, Undo]:
        zones = list(f.zones) if f.zones else None
        self.network.add_extra(zones, f.extra)

        def undo() -> str:
            self.network.add_extra(zones, -f.extra)
            return ""

        return "<->".join(zones) if zones else "all", f"+{format_duration(f.extra)}", undo

    def _message_fault(self, f: Loss | Duplicate | Reorder) -> tuple[str, str, Undo]:
        ends = frozenset(f.between) if f.between else None
        extra = f.extra if isinstance(f, Reorder) else 0.0
        fault = MessageFault(f.kind, ends, f.probability, extra)
        self.network.add_message_fault(fault)
        verb = {"loss": "dropped", "duplicate": "duplicated", "reorder": "held back"}[f.kind]

        def end() -> str:
            self.network.remove_message_fault(fault)
            return f"{fault.hits} messages {verb}"

        target = "<->".join(f.between) if f.between else "clients<->gateways"
        return target, f"p={f.probability:g}", end

    def _partition(self, f: Partition) -> tuple[str, str, Undo]:
        if f.between is not None:
            a, b = f.between
        else:
            a, b = self.rng.sample([*self.zones, CLIENTS], 2)
        self.network.block(a, b, f.one_way)
        before = self._stopped()

        def heal() -> str:
            self.network.unblock(a, b, f.one_way)
            return f"{self._stopped() - before} messages and store calls stopped"

        arrow = "->" if f.one_way else "<->"
        return f"{a}{arrow}{b}", "one-way" if f.one_way else "symmetric", heal

    def _stopped(self) -> int:
        return self.network.blocked_messages + self.plant.ledger.timeouts

    def _clog(self, f: Clog) -> tuple[str, str, Undo]:
        ends = [*self.zones, CLIENTS]
        links = [(a, b) for a in ends for b in ends if a != b]
        clogged: list[tuple[str, str]] = []
        state = {"open": True, "rounds": 0}
        before = self._stopped()

        def swizzle() -> Generator[simpy.Event, Any, None]:
            while state["open"]:
                for a, b in clogged:
                    self.network.unblock(a, b, one_way=True)
                count = max(1, round(f.fraction * len(links)))
                clogged[:] = self.rng.sample(links, count)
                for a, b in clogged:
                    self.network.block(a, b, one_way=True)
                state["rounds"] += 1
                yield self.env.timeout(f.period)

        self.env.process(swizzle())

        def unclog() -> str:
            state["open"] = False
            for a, b in clogged:
                self.network.unblock(a, b, one_way=True)
            clogged.clear()
            stopped = self._stopped() - before
            return f"{state['rounds']} rounds, {stopped} messages and store calls stopped"

        return "links", f"every {format_duration(f.period)}, {f.fraction:g} of links", unclog

    def _disk(self, f: Disk) -> tuple[str, str, Undo]:
        ledger = self.plant.ledger
        ledger.disk_slow += f.slow
        ledger.disk_fail_probabilities.append(f.fail_probability)
        failed = ledger.disk_failures

        def heal() -> str:
            ledger.disk_slow -= f.slow
            ledger.disk_fail_probabilities.remove(f.fail_probability)
            return f"{ledger.disk_failures - failed} fsyncs failed (ledger crash-recovered)"

        detail = f"+{format_duration(f.slow)} per commit, p(fail)={f.fail_probability:g}"
        return ledger.name, detail, heal

    def _failover(self) -> tuple[str, str, Undo]:
        ledger = self.plant.ledger
        ledger.lose_primary()
        mode = ledger.spec.replication

        def promote() -> str:
            lost = ledger.promote()
            return f"{lost} commits the replica lacked were lost, primary now in {ledger.zone}"

        return ledger.name, f"{mode} replication", promote

    def _rebalance(self, f: Rebalance) -> tuple[str, str, Undo]:
        groups = self.plant.groups
        name: str = f.group or self.rng.choice(sorted(g.name for g in groups))
        group = next(g for g in groups if g.name == name)
        store = self.plant.ledger.store
        with store.unit_of_work() as uow:
            revoked = coordinator.revoke_all(uow, name)
            uow.commit()
        fenced = group.stats("fenced")

        def rejoined() -> str:
            return f"{group.stats('fenced') - fenced} batches fenced"

        return name, f"{revoked} claims revoked", rejoined

    def _provider(self, f: ProviderTrouble) -> tuple[str, str, Undo]:
        [provider] = [g.provider for g in self.plant.groups if g.provider is not None]
        before = (provider.latency, provider.error_rate)
        provider.latency, provider.error_rate = f.latency, f.error_rate

        def back() -> str:
            provider.latency, provider.error_rate = before
            return "provider as configured again"

        return "provider", f"latency {f.latency:g}s, error rate {f.error_rate:g}", back

    def _poison(self, f: Poison) -> tuple[str, str, Undo]:
        group = next(g for g in self.plant.groups if g.name == f.group)
        poison = group.poison(f.probability, self.rng)
        failures = group.stats("failures")

        def cure() -> str:
            group.cure(poison)
            return (
                f"{len(poison.poisoned)} events poisoned, {group.stats('failures') - failures}"
                " failed attempts"
            )

        return f.group, f"p={f.probability:g}", cure

    def _partner(self, f: PartnerChaos) -> tuple[str, str, Undo]:
        partner = self.partners[f.partner or self.rng.choice(sorted(self.partners))]
        window = behaviour(f)
        partner.misbehave(window)
        if f.outage:
            partner.crash()

        def calm() -> str:
            partner.behave(window)
            if f.outage:
                partner.restart()
            return ""

        changed = [
            f"{name}={value:g}"
            for name, value in (
                ("late", f.late_probability),
                ("duplicate", f.duplicate_line_probability),
                ("missing", f.missing_line_probability),
                ("fee", f.fee_probability),
                ("reversal", f.reversal_probability),
                ("statement_delay", f.statement_delay),
            )
            if value
        ]
        return partner.name, ", ".join((["outage"] if f.outage else []) + changed), calm

    def _clock_skew(self, f: ClockSkew) -> tuple[str, str, Undo]:
        worker = self.plant.settlement
        offset = -f.offset if f.behind else f.offset
        worker.adjust_clock(offset)

        def undo() -> str:
            worker.adjust_clock(-offset)
            return ""

        return worker.node.name, f"clock {offset:+g}s", undo
