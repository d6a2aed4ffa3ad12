"""The sim's driver of the consumer engine: members' steps on simulated time, on their nodes.

The engine (reference_impl/service/consumer.py) decides everything a consumer does: when to
heartbeat, what to fetch, how to commit, how to react to each error; the same code drives the
real workers. This module supplies what a runtime supplies, and nothing else:

- the clock (simulated time, or a node's skewed clock) and the timers of `Idle`;
- the operations, each with its cost: a `Read` (the fetch) runs at once on the store if the node
  can reach the ledger (else it times out); `Work` holds the node for the service time of what
  was fetched (per handled event, per skipped event, per batch item or statement line), plus the
  round trip to the ledger; a `Write` is a commit on the ledger node (queued, charged per item,
  failing as the ledger's faults make it fail); an `External` call goes to the bank partner;
- failures: a crash of the node discards the member (its volatile state) and a restart starts a
  new incarnation that joins the group afresh; a pause stops the node where it is, as SIGSTOP
  does: after the operation in progress (a commit already sent still lands), before the next
  one, so its heartbeats stop and its lease runs out, and the step it was in goes on when it
  resumes (a zombie, whose next commit is refused: the offsets or the claims moved on); a
  store that cannot be reached surfaces to the engine as `StoreUnavailable`, as in real
  processes.

Each step is a job on the member's node, so the node's busy time is the consumer's work.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import simpy

from reference_impl.core.checks import CheckUnavailable, Decision
from reference_impl.service.checkers import NameScreen
from reference_impl.service.consumer import (
    PROVIDER,
    Batch,
    External,
    Handle,
    Idle,
    Member,
    Read,
    Step,
    Work,
    Write,
)
from reference_impl.service.groups import Identity
from reference_impl.service.ports import Clock, LoggedEvent, StoreUnavailable, UnitOfWork
from sim.ledger import STORE_TIMEOUT, LedgerNode
from sim.network import Network
from sim.node import Job, JobRun, Node, NodeDown, NodeSample
from sim.service_times import ServiceTimes

BuildMember = Callable[[Identity, Clock], Member]


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """One sample of one group's partition: who holds it and how many events wait in it."""

    at: float
    group: str
    partition: int
    member: str
    lag: int


class PoisonedEvent(Exception):
    """A `poison` fault made handling this event fail."""


@dataclass(slots=True)
class ProviderCalls:
    """The external screening provider a group calls once per batch it screens (bulk
    screening, before the batch's unit of work): each call holds the consumer for `latency`
    and fails with `error_rate`, drawn per call by `FlakyScreen`."""

    latency: float
    error_rate: float
    rng: random.Random


@dataclass(frozen=True, slots=True)
class FlakyScreen:
    """A name screen behind the sim's provider: the real screen's answer, or CheckUnavailable
    as often as the provider fails (the sanctions check then decides review)."""

    inner: NameScreen
    calls: ProviderCalls
    remote = True

    def decide(self, name: str) -> Decision:
        return self.decide_many([name])[0]

    def decide_many(self, names: Sequence[str]) -> list[Decision]:
        if self.calls.error_rate > 0 and self.calls.rng.random() < self.calls.error_rate:
            raise CheckUnavailable("provider failed (simulated)")
        return [self.inner.decide(n) for n in names]


class PoisonWindow:
    """A `poison` fault's window: which events fail, drawn once per event at first sight."""

    def __init__(self, probability: float, rng: random.Random) -> None:
        self.probability = probability
        self.rng = rng
        self.seen: set[tuple[str, int, int]] = set()
        self.poisoned: set[tuple[str, int, int]] = set()

    def check(self, events: Sequence[LoggedEvent]) -> None:
        for e in events:
            key = (e.topic, e.partition, e.offset)
            if key not in self.seen:
                self.seen.add(key)
                if self.rng.random() < self.probability:
                    self.poisoned.add(key)
            if key in self.poisoned:
                raise PoisonedEvent(f"{e.topic}/{e.partition} offset {e.offset} is poisoned")


class SimClock:
    """A node's clock: simulated time plus the node's skew (a clock-skew fault moves it)."""

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self.skew = 0.0

    def now(self) -> float:
        return self.env.now + self.skew


class SimGroup:
    """One consumer group: a member driver per consumer node, and what the group delivered."""

    def __init__(
        self,
        env: simpy.Environment,
        name: str,
        topics: Sequence[str],
        nodes: Sequence[Node],
        ledger: LedgerNode,
        network: Network,
        times: ServiceTimes,
        streams: Callable[[str], Any],
        build: BuildMember,
        partitions: int,
        clock: SimClock | None = None,
    ) -> None:
        self.env = env
        self.name = name
        self.topics = frozenset(topics)
        self.ledger = ledger
        self.network = network
        self.times = times
        self.build = build
        self.clock = clock
        self.partitions = partitions
        self.poisons: list[PoisonWindow] = []
        self.provider: ProviderCalls | None = None
        """The screening provider this group calls, if it screens names at one."""
        self._heads: dict[int, int] = {}
        """Each partition's events so far in the topics the members fetch, at the last sample."""
        self.delivered_upto: dict[tuple[str, int], int] = {}
        self.deliveries = 0
        self.redeliveries = 0
        self.drivers = [
            MemberDriver(self, node, streams(f"{node.name}/consumer")) for node in nodes
        ]

    @property
    def members(self) -> list[Member]:
        return [d.member for d in self.drivers if d.member is not None]

    def appended(self, topic: str, partition: int) -> None:
        """Events were committed to a topic partition: wake the member that holds it."""
        if topic not in self.topics:
            return
        for driver in self.drivers:
            member = driver.member
            if member is not None and partition in member.assignment:
                driver.wake()

    def wake_all(self) -> None:
        for driver in self.drivers:
            driver.wake()

    def poison(self, probability: float, rng: random.Random) -> PoisonWindow:
        window = PoisonWindow(probability, rng)
        self.poisons.append(window)
        return window

    def cure(self, window: PoisonWindow) -> None:
        self.poisons.remove(window)

    def handler(self, handle: Handle) -> Handle:
        """`handle`, failing on the events an open `poison` window picked."""

        def handle_unless_poisoned(
            uow: UnitOfWork, events: Sequence[LoggedEvent], now: float
        ) -> Sequence[Any]:
            for window in self.poisons:
                window.check(events)
            return handle(uow, events, now)

        return handle_unless_poisoned

    def delivered(self, batch: Batch) -> None:
        for part in batch.parts:
            key = (part.topic, part.partition)
            upto = self.delivered_upto.get(key, 0)
            self.deliveries += len(part.events)
            self.redeliveries += sum(1 for e in part.events if e.offset <= upto)
            self.delivered_upto[key] = max(upto, part.events[-1].offset)

    def observe(
        self, uow: UnitOfWork, samples: dict[str, NodeSample], interval: float
    ) -> list[PartitionLag]:
        """Each partition's lag now, and each member node's lag and headroom in `samples`.

        Headroom counts every event the member fetched and committed past, handled or skipped,
        against every event that arrived in the topics it fetches: a skipped event costs the
        node its skip cost, and a node that keeps up passes over as many events as arrive."""
        now = self.env.now
        heads = {t: uow.log_heads(t) for t in sorted(self.topics)}
        owners = {c.partition: c.member for c in uow.list_claims(self.name)}
        lag: dict[int, int] = {}
        arrived: dict[int, int] = {}
        for p in range(self.partitions):
            lag[p] = sum(
                max(0, h.get(p, 0) - uow.get_offset(self.name, t, p)) for t, h in heads.items()
            )
            total = sum(h.get(p, 0) for h in heads.values())
            arrived[p] = total - self._heads.get(p, 0)
            self._heads[p] = total
        for driver in self.drivers:
            sample = samples.get(driver.node.name)
            if sample is None:
                continue
            held = driver.member.assignment if driver.member is not None else {}
            passed = sum(m.stats.events + m.stats.skipped for m in driver.incarnations)
            done, driver.passed_seen = passed - driver.passed_seen, passed
            busy = sample.utilization * interval * sample.workers
            incoming = sum(arrived[p] for p in held) / interval
            headroom = (done / busy) / incoming if done and busy and incoming else math.nan
            samples[driver.node.name] = replace(
                sample, lag=sum(lag[p] for p in held), headroom=headroom
            )
        return [PartitionLag(now, self.name, p, owners.get(p, ""), lag[p]) for p in sorted(lag)]

    def stats(self, field: str) -> int:
        """A member statistic summed over every incarnation of every member."""
        return sum(getattr(m.stats, field) for d in self.drivers for m in d.incarnations)


class MemberDriver:
    """Runs the incarnations of one node's member, one after the other across crashes."""

    def __init__(self, group: SimGroup, node: Node, rng: Any) -> None:
        self.group = group
        self.node = node
        self.rng = rng
        self.env = group.env
        self.clock: Clock = group.clock or SimClock(group.env)
        self.member: Member | None = None
        self.incarnations: list[Member] = []
        self.passed_seen = 0
        """Events its incarnations handled or skipped, at the last sample."""
        self._process: simpy.Process | None = None
        self._wake: simpy.Event | None = None
        node.on_crash.append(self._crashed)
        node.on_restart.append(self._start)
        self._start()

    def _start(self) -> None:
        n = len(self.incarnations) + 1
        member = self.group.build(Identity(f"{self.node.name}#{n}", n, self.node.zone), self.clock)
        member.handle = self.group.handler(member.handle)
        self.member = member
        self.incarnations.append(member)
        self._process = self.env.process(self._loop(member))

    def _crashed(self) -> None:
        self.member = None
        process, self._process = self._process, None
        if process is not None and process.is_alive:
            process.interrupt("crash")

    def wake(self) -> None:
        if self.member is not None:
            self.member.wake()
        wake, self._wake = self._wake, None
        if wake is not None and not wake.triggered:
            wake.succeed()

    def _loop(self, member: Member) -> Any:
        env = self.env
        try:
            while True:
                nxt = member.next()
                if isinstance(nxt, Idle):
                    self._wake = wake = env.event()
                    # Never less than a nanosecond: on a skewed clock a wait can round to
                    # nothing, and the timer would come back before its time, for ever.
                    wait = max(nxt.until - self.clock.now(), 1e-9)
                    yield wake if wait == float("inf") else env.timeout(wait) | wake
                    continue
                job = _StepJob(self, nxt)
                if not self.node.submit(job):
                    return
                yield job.done
        except simpy.Interrupt:
            return

    # -- the operations -------------------------------------------------------------------
    def _reachable(self) -> bool:
        ledger = self.group.ledger
        return ledger.reaches(self.node, back=False) and ledger.reaches(self.node, back=True)

    def read(self, op: Read) -> Any:
        """A fetch: the ledger answers at once when it is up and reachable (a generator)."""
        ledger = self.group.ledger
        if not self._reachable():
            yield self.env.timeout(STORE_TIMEOUT)
            raise StoreUnavailable(f"{ledger.name}: unreachable from {self.node.name}")
        if not ledger.node.up:
            raise StoreUnavailable(f"{ledger.name}: down")
        if ledger.node.paused:
            yield ledger.node.running()
            if not ledger.node.up:  # killed while stopped: the connection went with it
                raise StoreUnavailable(f"{ledger.name}: down")
        with ledger.store.unit_of_work() as uow:
            value = op.fn(uow)
        if isinstance(value, Batch):
            self.group.delivered(value)
        return value

    def work(self, op: Work) -> Any:
        group = self.group
        items: float = op.items
        if op.light:  # a fraction of an item's work each
            items += op.light * (group.times.light_weight - 1)
        yield self.node.compute(group.times.work(op.stage).sample(self.rng, items, op.skipped))
        yield self.env.timeout(group.network.rtt(self.node.zone, group.ledger.zone))

    def write(self, op: Write) -> Any:
        ledger = self.group.ledger
        try:
            return (yield ledger.call(partial(_commit, ledger, op.fn), op.items, self.node))
        except NodeDown as e:  # down, unreachable, or the answer lost: the runtime's class
            raise StoreUnavailable(str(e)) from e
        except Exception as e:  # SimPy hands over a copy: the step gets the original
            original = e.__cause__
            raise original if isinstance(original, type(e)) else e from None


def _commit(ledger: LedgerNode, fn: Callable[[UnitOfWork], Any]) -> Any:
    with ledger.store.unit_of_work() as uow:
        value = fn(uow)
        uow.commit()
    return value


class _StepJob(Job):
    """One engine step on the member's node: holds the node while its operations run."""

    __slots__ = ("done", "driver", "step")

    def __init__(self, driver: MemberDriver, step: Step) -> None:
        super().__init__()
        self.driver = driver
        self.step = step
        self.done = driver.env.event()

    def run(self) -> JobRun:
        d = self.driver
        run = self.step.run
        value: Any = None
        error: Exception | None = None
        try:
            while True:
                try:
                    op = run.throw(error) if error is not None else run.send(value)
                except StopIteration:
                    break
                value, error = None, None
                try:
                    if isinstance(op, Read):
                        value = yield from d.read(op)
                    elif isinstance(op, Work):
                        yield from d.work(op)
                    elif isinstance(op, Write):
                        value = yield from d.write(op)
                    else:
                        assert isinstance(op, External)
                        value = op.fn()
                        provider = d.group.provider
                        if op.target == PROVIDER and provider is not None:
                            # each call blocks the consumer for the provider's latency
                            yield d.env.timeout(provider.latency * value)
                except simpy.Interrupt:
                    raise  # the node crashed: the step dies with it
                except Exception as e:
                    error = e
                if d.node.paused:  # stopped between two operations: a zombie when it wakes
                    yield d.node.running()
        finally:
            run.close()
        self.done.succeed()
