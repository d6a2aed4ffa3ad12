"""The consumer engine: one sans-I/O state machine drives every consumer group, in both runtimes.

A `Member` is one consumer of one group (payments, settlement, reporting). It decides what to do
next and how to react to what happened; it never touches a store, a clock or a thread itself.
`next()` returns either `Idle(until)` or a `Step`: a generator that yields operations for its
driver to perform and receives their results:

- `Read(fn)`: run `fn(uow)` in a unit of work (the fetch);
- `Write(fn, items)`: run `fn(uow)` in a unit of work and commit it (apply, heartbeat, ...);
- `Work(stage, items, skipped)`: the CPU the step spends on what it fetched;
- `External(target, fn)`: a call outside the store (the bank partner).

The real runtime (reference_impl/runtime/consumer.py) performs them on the wall clock, a fetch
and its commit in one unit of work; the sim (sim/consumers.py) performs them on simulated time,
charging service time for `Work` and commit time for `Write`. An operation that fails is thrown
back into the step, which classifies the error once, for both:

- the store unavailable (`StoreUnavailable`, a lost answer, a serialization conflict): back off
  with the retry policy and blame no event; whatever did not commit is fetched again;
- `Fenced`: the member lost a claim it worked under; it drops it and heartbeats at once;
- any other error is the handler's: the partitions of the batch narrow to one event at a time to
  find the culprit, which is retried with backoff, and after `retry.attempts` failures handed to
  the group's give-up action (payments: compensation) together with the offset past it. A group
  without one retries at the capped backoff for ever rather than skip an effect.

Membership: the member heartbeats every `heartbeat_every` seconds (service/groups.py), which
renews its lease and tells it which partitions it holds and at which epochs; every commit of
effects and offsets checks those epochs in the same unit of work (fencing), so a member paused
past its lease (a zombie) commits nothing when it wakes. What a zombie can still do: finish the
work it had fetched and try to commit it (refused), and make external calls whose effects are
keyed (a bank partner ignores a batch id it has booked).

Exactly-once effects: fetch -> apply -> offset is one unit of work, and every effect is keyed, so a
redelivery after a crash, a lost answer or a move of the partition is a no-op.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reference_impl.service import groups
from reference_impl.service.groups import Fenced, Identity
from reference_impl.service.ports import (
    Clock,
    ConcurrentUpdate,
    LoggedEvent,
    StoreUnavailable,
    UnitOfWork,
)

log = logging.getLogger(__name__)


# -- operations a step asks its driver to perform ----------------------------------------
@dataclass(frozen=True, slots=True)
class Read:
    fn: Callable[[UnitOfWork], Any]


@dataclass(frozen=True, slots=True)
class Write:
    fn: Callable[[UnitOfWork], Any]
    items: int = 1
    """Rows of work in the commit (the sim charges commit time by it)."""


@dataclass(frozen=True, slots=True)
class Work:
    stage: str
    """What is worked on: a group's name for its batches, or a task's stage."""
    items: int
    skipped: int = 0
    """Fetched events the group does not handle: they only move the offset."""
    light: int = 0
    """Of `items`, the events of the group's `light` types (GroupSpec.light): handled, at a
    fraction of an item's work (the sim charges them `light_weight`)."""


@dataclass(frozen=True, slots=True)
class External:
    target: str
    fn: Callable[[], Any]


Op = Read | Write | Work | External
StepRun = Generator[Op, Any, None]


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    run: StepRun


@dataclass(frozen=True, slots=True)
class Idle:
    until: float
    """The member's clock time of its next timer (heartbeat, backoff, retry, poll)."""


class Stale(Exception):
    """The committed offset moved since the fetch (an earlier commit whose answer was lost)."""


Handle = Callable[[UnitOfWork, Sequence[LoggedEvent], float], Sequence[Any]]
"""Apply the handled events of a batch in the unit of work; returns the events it emitted."""
GiveUp = Callable[[UnitOfWork, LoggedEvent, str, float], Sequence[Any]]
"""Compensate one event that kept failing (effects only); returns the events it emitted."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The one backoff policy: for a store that is down and for an event that keeps failing."""

    attempts: int = 5
    """Failures of one event before the group's give-up action takes it."""
    base_delay: float = 0.05
    max_delay: float = 2.0

    def delay(self, failures: int) -> float:
        return float(min(self.max_delay, self.base_delay * 2 ** max(0, failures - 1)))


PROVIDER = "provider"
"""The `External` target of a group's `prepare` call."""
Prepare = Callable[["UnitOfWork", Sequence[LoggedEvent]], Callable[[], int] | None]
"""A prepare function: the call returns how many requests it made (the sim charges each)."""


@dataclass(frozen=True, slots=True)
class GroupSpec:
    name: str
    topics: tuple[str, ...]
    handles: frozenset[str]
    """Event types the handler applies; the others in its topics only move the offset."""
    partitions: int
    batch_size: int = 100
    """Most events fetched from one topic partition at once."""
    session_timeout: float = 10.0
    heartbeat_every: float = 0.0
    """Seconds between heartbeats; 0 means a third of the session timeout."""
    exclusive: bool = False
    """All partitions to one member at a time (the others stand by): for a group whose handler
    and tasks share state across partitions."""
    linger: float = 0.0
    """Seconds between fetches that found events (fewer, larger batches)."""
    idle_poll: float = 0.25
    """Seconds before fetching again after an empty fetch, unless woken sooner."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    light: frozenset[str] = frozenset()
    """Handled event types that cost less than the group's usual item (the payments group's
    PaymentReceived and CheckDecided with the checks in parallel: no reservation for most of
    them): counted apart in each batch's `Work`, so that the sim charges them what they cost."""
    prepare: Prepare | None = None
    """Before a fetched batch is applied: read what the handler will need from outside the
    store and return the call that gets it (None: nothing to get). The call runs as an
    `External`, outside any unit of work (a screening provider's answers), so that no
    transaction stays open across it."""

    @property
    def heartbeat_interval(self) -> float:
        return self.heartbeat_every or self.session_timeout / 3


@dataclass(frozen=True, slots=True)
class Part:
    topic: str
    partition: int
    after: int
    """The committed offset the fetch started from."""
    events: tuple[LoggedEvent, ...]


@dataclass(frozen=True, slots=True)
class Batch:
    parts: tuple[Part, ...]
    handled: tuple[LoggedEvent, ...]
    skipped: int
    light: int = 0
    """Of `handled`, the events of the spec's `light` types."""

    def work(self, stage: str) -> Work:
        """The CPU applying this batch takes, as the step announces it."""
        return Work(stage, len(self.handled), self.skipped, self.light)

    @property
    def empty(self) -> bool:
        return not self.parts

    @property
    def partitions(self) -> list[int]:
        return sorted({part.partition for part in self.parts})


TaskRun = Callable[["Member"], StepRun]


@dataclass
class Task:
    """Periodic work of the member that holds the whole group (settlement's cut-off), run at
    every multiple of `interval` on the member's clock. With `shared`, every member that holds
    a partition runs it, over the partitions it holds (the payments group's sweep of payments
    whose checks timed out)."""

    name: str
    interval: float
    run: TaskRun
    next_at: float = math.nan
    shared: bool = False


@dataclass(slots=True)
class Suspect:
    """A topic partition narrowed to one event at a time after a failed batch."""

    offset: int = -1
    failures: int = 0
    retry_at: float = 0.0


@dataclass(slots=True)
class MemberStats:
    events: int = 0
    skipped: int = 0
    batches: int = 0
    failures: int = 0
    fenced: int = 0
    stale: int = 0
    """Commits refused because another member moved the offsets since the fetch."""
    compensated: int = 0
    heartbeats: int = 0


Commit = Callable[["Member", Batch, Mapping[int, int]], StepRun]
"""How a fetched batch's effects and offsets are committed (the bug zoo swaps this)."""
Compensation = Callable[["Member", tuple[str, int], LoggedEvent, str, Mapping[int, int]], StepRun]
"""How the give-up action is committed for an event that kept failing."""


class Member:
    def __init__(
        self,
        spec: GroupSpec,
        identity: Identity,
        clock: Clock,
        handle: Handle,
        *,
        give_up: GiveUp | None = None,
        on_commit: Callable[[Sequence[Any]], None] | None = None,
        tasks: Sequence[Task] = (),
        commit: Commit | None = None,
        compensation: Compensation | None = None,
    ) -> None:
        self.spec = spec
        self.identity = identity
        self.clock = clock
        self.handle = handle
        self.give_up = give_up
        self.on_commit = on_commit or (lambda emitted: None)
        self.tasks = list(tasks)
        self.commit = commit or commit_atomically
        self.compensation = compensation or compensate_once
        self.assignment: dict[int, int] = {}
        """Partitions held -> their claim epochs, as of the last heartbeat."""
        self.joined = False
        self.next_heartbeat = -math.inf
        self.backoff_until = -math.inf
        self._unavailable_in_a_row = 0
        self.suspects: dict[tuple[str, int], Suspect] = {}
        self.linger_until = -math.inf
        self.idle_until = -math.inf
        self._later: list[tuple[float, str, Callable[[], StepRun]]] = []
        self.leaving = False
        self.stopped = False
        self.stats = MemberStats()

    @property
    def name(self) -> str:
        return self.identity.member

    @property
    def holds_group(self) -> bool:
        return len(self.assignment) == self.spec.partitions

    # -- scheduling -----------------------------------------------------------------------
    def next(self) -> Step | Idle:
        """What to do now: a step to run, or idle until a time (or a `wake()`)."""
        now = self.clock.now()
        if self.stopped:
            return Idle(math.inf)
        if self.leaving:
            return Step("leave", self._leave())
        if now < self.backoff_until:
            return Idle(self.backoff_until)
        if now >= self.next_heartbeat:
            return Step("heartbeat", self._heartbeat())
        for i, (at, name, make) in enumerate(self._later):
            if now >= at:
                del self._later[i]
                return Step(name, make())
        for task in self.tasks:
            if self.holds_group or (task.shared and self.assignment):
                if math.isnan(task.next_at):
                    task.next_at = self._grid(task.interval, now)
                if now >= task.next_at:
                    return Step(task.name, self._task(task))
        for key, suspect in sorted(self.suspects.items()):
            if now >= suspect.retry_at:
                return Step("retry", self._retry(key))
        pairs = self._healthy()
        if pairs and now >= self.linger_until and now >= self.idle_until:
            return Step("poll", self._poll(pairs))
        timers = [self.next_heartbeat, *(at for at, _, _ in self._later)]
        timers += [
            t.next_at for t in self.tasks if self.holds_group or (t.shared and self.assignment)
        ]
        timers += [s.retry_at for s in self.suspects.values()]
        if pairs:
            timers.append(max(self.linger_until, self.idle_until))
        return Idle(min(timers))

    def wake(self) -> None:
        """New events may have been appended to this member's partitions."""
        self.idle_until = -math.inf

    def stop(self) -> None:
        """Leave the group at the next step: its partitions move to the others at once."""
        self.leaving = True

    def later(self, delay: float, name: str, make: Callable[[], StepRun]) -> None:
        """Run the step `make()` once `delay` seconds have passed (strategies use it)."""
        self._later.append((self.clock.now() + delay, name, make))

    @staticmethod
    def _grid(interval: float, now: float) -> float:
        """The first multiple of `interval` after `now`. In floating point `(n + 1) * interval`
        can land on `now` itself (31 * 0.075 == 2.3249999999999997 == now): a task that takes
        no time would then run again at the same instant, for ever."""
        at = (math.floor(now / interval) + 1) * interval
        return at if at > now else at + interval

    def _healthy(self) -> list[tuple[str, int]]:
        return [
            (t, p)
            for p in sorted(self.assignment)
            for t in self.spec.topics
            if (t, p) not in self.suspects
        ]

    # -- steps ----------------------------------------------------------------------------
    def _heartbeat(self) -> StepRun:
        spec = self.spec
        try:
            claims = yield Write(
                lambda uow: groups.heartbeat(
                    uow,
                    spec.name,
                    spec.partitions,
                    self.identity,
                    self.clock.now(),
                    spec.session_timeout,
                    spec.exclusive,
                )
            )
        except Exception as e:
            self._unavailable(e)
            return
        self.stats.heartbeats += 1
        self.joined = True
        self._unavailable_in_a_row = 0
        self.next_heartbeat = self.clock.now() + spec.heartbeat_interval
        self._assign(claims)

    def _assign(self, claims: Mapping[int, int]) -> None:
        gained = set(claims) - set(self.assignment)
        lost = set(self.assignment) - set(claims)
        if gained or lost:
            log.info("%s %s: partitions %s", self.spec.name, self.name, sorted(claims))
        self.assignment = dict(claims)
        for key in [k for k in self.suspects if k[1] not in claims]:
            del self.suspects[key]  # the new owner has not seen these failures
        if gained:
            self.wake()

    def _leave(self) -> StepRun:
        spec = self.spec
        try:
            if self.joined:
                yield Write(
                    lambda uow: groups.leave(
                        uow, spec.name, spec.partitions, self.name, self.clock.now(), spec.exclusive
                    )
                )
        except Exception as e:
            log.warning("%s %s: could not leave the group: %r", spec.name, self.name, e)
        self.assignment = {}
        self.stopped = True

    def _poll(self, pairs: list[tuple[str, int]]) -> StepRun:
        held = dict(self.assignment)
        try:
            batch = yield Read(lambda uow: self.fetch(uow, pairs, self.spec.batch_size))
        except Exception as e:
            self._unavailable(e)
            return
        now = self.clock.now()
        if batch.empty:
            self.idle_until = now + self.spec.idle_poll
            return
        self.linger_until = now + self.spec.linger
        prepare = self.spec.prepare
        if prepare is not None and batch.handled:
            try:
                call = yield Read(lambda uow: prepare(uow, batch.handled))
                if call is not None:
                    yield External(PROVIDER, call)
            except Exception as e:
                self._unavailable(e)
                return
        yield from self.commit(self, batch, held)

    def _retry(self, key: tuple[str, int]) -> StepRun:
        suspect = self.suspects[key]
        held = dict(self.assignment)
        try:
            batch = yield Read(lambda uow: self.fetch(uow, [key], 1))
        except Exception as e:
            self._unavailable(e)
            return
        if batch.empty:
            del self.suspects[key]
            return
        event = batch.parts[0].events[0]
        yield batch.work(self.spec.name)
        try:
            emitted = yield Write(lambda uow: self.apply(uow, batch, held), len(batch.handled))
        except Exception as e:
            if self.classify(e) != "handler":
                self.failed(batch, e)
                return
            self.stats.failures += 1
            if suspect.offset != event.offset:
                suspect.offset, suspect.failures = event.offset, 0
            suspect.failures += 1
            suspect.retry_at = self.clock.now() + self.spec.retry.delay(suspect.failures)
            log.warning(
                "%s %s/%d offset %d: attempt %d failed: %r",
                self.spec.name,
                *key,
                event.offset,
                suspect.failures,
                e,
            )
            if self.give_up is not None and suspect.failures >= self.spec.retry.attempts:
                reason = f"retries_exhausted: {type(e).__name__}"
                yield from self.compensation(self, key, event, reason, held)
            return
        self.suspects.pop(key, None)
        self.committed(batch, emitted)

    def _task(self, task: Task) -> StepRun:
        try:
            yield from task.run(self)
        except Exception as e:
            now = self.clock.now()
            task.next_at = now + min(task.interval, 1.0)
            if self.classify(e) == "handler":
                log.warning("%s %s: %s failed: %r", self.spec.name, self.name, task.name, e)
            else:
                self.failed(None, e)
            return
        task.next_at = self._grid(task.interval, self.clock.now())

    # -- the unit-of-work functions the steps hand to the driver ---------------------------
    def fetch(self, uow: UnitOfWork, pairs: Sequence[tuple[str, int]], limit: int) -> Batch:
        """Each topic partition's events after the group's committed offset."""
        group = self.spec.name
        parts = []
        handled: list[LoggedEvent] = []
        skipped = light = 0
        handles, lights = self.spec.handles, self.spec.light
        for topic, p in pairs:
            after = uow.get_offset(group, topic, p)
            events = uow.read_events(topic, p, after, limit)
            if not events:
                continue
            parts.append(Part(topic, p, after, tuple(events)))
            for e in events:
                if e.type in handles:
                    handled.append(e)
                    light += e.type in lights
                else:
                    skipped += 1
        return Batch(tuple(parts), tuple(handled), skipped, light)

    def apply(
        self,
        uow: UnitOfWork,
        batch: Batch,
        held: Mapping[int, int],
        *,
        effects: bool = True,
        offsets: bool = True,
    ) -> Sequence[Any]:
        """The batch's effects and offsets, fenced; the driver commits."""
        group = self.spec.name
        for part in batch.parts:
            if uow.get_offset(group, part.topic, part.partition) != part.after:
                raise Stale(f"{group}: offset of {part.topic}/{part.partition} moved")
        emitted: Sequence[Any] = ()
        if effects and batch.handled:
            emitted = self.handle(uow, batch.handled, self.clock.now())
        if offsets:
            for part in batch.parts:
                uow.set_offset(group, part.topic, part.partition, part.events[-1].offset)
        self.check_fence(uow, held, batch.partitions)
        return emitted

    def check_fence(
        self, uow: UnitOfWork, held: Mapping[int, int], partitions: Sequence[int] | None = None
    ) -> None:
        """Fenced unless this member still holds `partitions` (all it held) at `held`'s epochs."""
        wanted = held if partitions is None else {p: held[p] for p in partitions if p in held}
        if partitions is not None and len(wanted) != len(partitions):
            raise Fenced(self.spec.name, [p for p in partitions if p not in held])
        groups.check_fence(uow, self.spec.name, self.name, wanted)

    def fenced(self, fn: Callable[[UnitOfWork], Any]) -> Callable[[UnitOfWork], Any]:
        """`fn` followed by the fence check over everything held now (for tasks' writes)."""
        held = dict(self.assignment)

        def run(uow: UnitOfWork) -> Any:
            result = fn(uow)
            self.check_fence(uow, held)
            return result

        return run

    def compensate(
        self,
        uow: UnitOfWork,
        key: tuple[str, int],
        event: LoggedEvent,
        reason: str,
        held: Mapping[int, int],
        *,
        check_offset: bool = True,
    ) -> Sequence[Any]:
        """The give-up action for `event` and the offset past it, fenced; the driver commits."""
        assert self.give_up is not None
        topic, partition = key
        group = self.spec.name
        if check_offset and uow.get_offset(group, topic, partition) != event.offset - 1:
            raise Stale(f"{group}: {topic}/{partition} is no longer at offset {event.offset}")
        emitted = self.give_up(uow, event, reason, self.clock.now())
        uow.set_offset(group, topic, partition, event.offset)
        self.check_fence(uow, held, [partition])
        return emitted

    # -- outcomes -------------------------------------------------------------------------
    def committed(self, batch: Batch, emitted: Sequence[Any]) -> None:
        self._unavailable_in_a_row = 0
        self.stats.batches += 1
        self.stats.events += len(batch.handled)
        self.stats.skipped += batch.skipped
        if emitted:
            self.on_commit(emitted)

    def compensated(self, key: tuple[str, int], event: LoggedEvent, emitted: Sequence[Any]) -> None:
        self.stats.compensated += 1
        self.suspects.pop(key, None)
        log.error("%s %s/%d offset %d: gave up, compensated", self.spec.name, *key, event.offset)
        if emitted:
            self.on_commit(emitted)

    def failed(self, batch: Batch | None, error: Exception) -> None:
        """A step's write failed: react by the error's class."""
        kind = self.classify(error)
        if kind == "unavailable":
            self._unavailable(error)
        elif kind == "fenced":
            assert isinstance(error, Fenced)
            self.stats.fenced += 1
            for p in error.partitions:
                self.assignment.pop(p, None)
            for key in [k for k in self.suspects if k[1] in error.partitions]:
                del self.suspects[key]
            self.next_heartbeat = self.clock.now()
            log.warning("%s %s: fenced: %s", self.spec.name, self.name, error)
        elif kind == "stale":
            self.stats.stale += 1
            log.warning("%s %s: stale: %s", self.spec.name, self.name, error)
        elif kind == "handler" and batch is not None:
            self.stats.failures += 1
            now = self.clock.now()
            for part in batch.parts:  # retried one event at a time, to find the culprit
                self.suspects.setdefault((part.topic, part.partition), Suspect(retry_at=now))
            log.warning("%s %s: batch failed, narrowing: %r", self.spec.name, self.name, error)

    @staticmethod
    def classify(error: Exception) -> str:
        if isinstance(error, Fenced):
            return "fenced"
        if isinstance(error, Stale):
            return "stale"
        if isinstance(error, StoreUnavailable | ConcurrentUpdate):
            return "unavailable"
        return "handler"

    def _unavailable(self, error: Exception) -> None:
        self._unavailable_in_a_row += 1
        delay = self.spec.retry.delay(self._unavailable_in_a_row)
        self.backoff_until = self.clock.now() + delay
        log.warning(
            "%s %s: store unavailable, backing off %.2fs: %s",
            self.spec.name,
            self.name,
            delay,
            error,
        )


# -- commit strategies -------------------------------------------------------------------
def commit_atomically(member: Member, batch: Batch, held: Mapping[int, int]) -> StepRun:
    """Effects, offsets and the fence check in one unit of work: the correct way."""
    yield batch.work(member.spec.name)
    try:
        emitted = yield Write(lambda uow: member.apply(uow, batch, held), len(batch.handled))
    except Exception as e:
        member.failed(batch, e)
        return
    member.committed(batch, emitted)


def compensate_once(
    member: Member,
    key: tuple[str, int],
    event: LoggedEvent,
    reason: str,
    held: Mapping[int, int],
) -> StepRun:
    """One try: if it fails or its answer is lost, the partition stays narrowed, and its next
    fetch from the committed offset shows whether it happened, so it is never blindly repeated."""
    try:
        emitted = yield Write(lambda uow: member.compensate(uow, key, event, reason, held))
    except Exception as e:
        member.failed(None, e)
        return
    member.compensated(key, event, emitted)
