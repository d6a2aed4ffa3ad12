"""The event log's consumer groups: partition ownership, fetch, and at-least-once delivery.

The log itself is the store's outbox (real data, real offsets); this module models what Kafka
adds around it: each partition is owned by one live consumer of the group, ownership moves when
a consumer dies (after the session timeout) or joins (at once), and a consumer fetches a batch
from its committed offset, works on it, then commits effects and offset in one transaction. A
crash between fetch and commit loses the work, and the next owner fetches the same events again:
that is the redelivery the keyed effects must absorb.

One batch per partition is in flight at a time, which is what keeps a partition in order.

Faults: a consumer that is paused or cut off from the log is, to the group, a consumer that
stopped heartbeating: after the session timeout its partitions move. A leader failover makes
partitions unavailable while a new leader is elected; a rebalance revokes every partition for
its duration, then assigns them afresh. Each bumps the partition's epoch (Kafka's leader epoch
and group generation in one number), and a batch fetched under an older epoch cannot commit:
its events are fetched again by whoever owns the partition now. A zombie (a paused consumer
that wakes up holding a batch) is fenced the same way.

Compensation follows reference_impl/runtime/consumer.py. A store that cannot be reached (a crash,
a cut link, a timeout) is retried without blaming any event, as the runtime does for
`StoreUnavailable`; a commit the store refused (`DiskError`: it answered, and applied nothing)
counts against the batch, as any other error of the transaction does in the runtime. The
partition then narrows to one event at a time; an event refused `RetryPolicy.attempts` times in
a row, with the runtime's exponential backoff between, is handed to the group's `give_up` (the
payments group fails the payment, voiding its reservation), which commits the compensation and
the offset past the event in one unit of work. If that commit's answer is lost, the partition
stays narrowed and its next fetch, from the committed offset, shows whether it happened, so the
compensation is never blindly repeated. A group without `give_up` never skips an event.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

import simpy

from reference_impl.runtime.consumer import RetryPolicy
from reference_impl.service.payments import poll
from reference_impl.service.ports import LoggedEvent, UnitOfWork
from sim.ledger import STORE_TIMEOUT, DiskError, LedgerNode
from sim.network import Network
from sim.node import Job, JobRun, Node, NodeDown
from sim.service_times import BatchCost

Handler = Callable[[UnitOfWork, Sequence[LoggedEvent], float], None]
"""Applies a batch in the caller's unit of work (effects + offset); the caller commits."""
GiveUp = Callable[[UnitOfWork, LoggedEvent, str, float], None]
"""Compensates one event that kept failing and moves the offset past it; the caller commits."""
Compensation = Callable[
    ["ConsumerGroup", Node, int, LoggedEvent, int, str], Generator[simpy.Event, Any, bool]
]
"""Runs `give_up` for an event through the ledger (group, consumer, partition, event, epoch,
reason); True once it is known to have committed."""

RETRY_AFTER_FAILURE = 0.05
"""Seconds a consumer waits before fetching again after its commit failed (ledger down)."""


class ConsumerGroup:
    def __init__(
        self,
        env: simpy.Environment,
        name: str,
        partitions: int,
        consumers: list[Node],
        ledger: LedgerNode,
        network: Network,
        handler: Handler,
        cost: BatchCost,
        max_batch: int,
        session_timeout: float,
        rng: random.Random,
        linger: float = 0.0,
    ) -> None:
        self.env = env
        self.name = name
        self.partitions = partitions
        self.consumers = consumers
        self.ledger = ledger
        self.network = network
        self.handler = handler
        self.cost = cost
        self.max_batch = max_batch
        self.session_timeout = session_timeout
        self.rng = rng
        self.linger = linger
        self.owner: list[Node | None] = [None] * partitions
        self.in_flight: list[_Batch | None] = [None] * partitions
        self.epoch = [0] * partitions
        self.unavailable: set[int] = set()
        self.revoked = False
        self.generation = 0
        self.delivered_upto = [0] * partitions
        self.deliveries = 0
        self.redeliveries = 0
        self.fenced = 0
        """Batches that could not commit because the partition moved or changed leader."""
        self.failed_commits = 0
        self.give_up: GiveUp | None = None
        self.compensation: Compensation = compensate_once
        self.retry = RetryPolicy()
        self.suspects: dict[int, _Suspect] = {}
        """Partitions narrowed to one event at a time after a refused commit (with `give_up`)."""
        self.compensated = 0
        self.on_commit: list[Callable[[], None]] = []
        for node in consumers:
            node.on_crash.append(self.membership_changed)
            node.on_pause.append(self.membership_changed)
            node.on_restart.append(self.rebalance)
            node.on_resume.append(self.rebalance)
        self.rebalance()

    # -- ownership ------------------------------------------------------------------------
    def _member(self, node: Node) -> bool:
        """Heartbeating: up, running, and able to reach the log (which lives in the store)."""
        ledger = self.ledger
        return (
            node.up
            and not node.paused
            and ledger.reaches(node, back=False)
            and ledger.reaches(node, back=True)
        )

    def rebalance(self) -> None:
        if self.revoked:
            return
        alive = [n for n in self.consumers if self._member(n)]
        for p in range(self.partitions):
            owner = alive[(p + self.generation) % len(alive)] if alive else None
            if owner is not self.owner[p]:
                self._fence(p)
                self.suspects.pop(p, None)  # the new owner has not seen the failures
            self.owner[p] = owner
        for p in range(self.partitions):
            self.notify(p)

    def membership_changed(self) -> None:
        # The group notices only when the session times out; until then its partitions wait.
        timer = self.env.timeout(self.session_timeout)
        timer.callbacks.append(lambda _ev: self.rebalance())

    def fetched_in_flight(self, partitions: list[int]) -> int:
        """How many of `partitions` have a batch fetched and not committed yet."""
        return sum(1 for p in partitions if (b := self.in_flight[p]) is not None and b.fetched)

    def _fence(self, partition: int) -> None:
        """Whatever is in flight on `partition` can no longer commit."""
        self.epoch[partition] += 1
        self.in_flight[partition] = None

    def fail_leaders(self, partitions: list[int]) -> None:
        """Leader election starts: no fetches, in-flight work fenced (see `elected`)."""
        for p in partitions:
            self.unavailable.add(p)
            self._fence(p)

    def elected(self, partitions: list[int]) -> None:
        for p in partitions:
            self.unavailable.discard(p)
            self.notify(p)

    def revoke(self) -> None:
        """A rebalance starts: every partition revoked until `reassign()`."""
        self.revoked = True
        for p in range(self.partitions):
            self._fence(p)
            self.owner[p] = None
            self.suspects.pop(p, None)

    def reassign(self) -> None:
        self.revoked = False
        self.generation += 1  # a new assignment, so partitions really move
        self.rebalance()

    # -- delivery -------------------------------------------------------------------------
    def notify(self, partition: int) -> None:
        """New events may be in `partition`: start a batch if none is in flight."""
        if self.in_flight[partition] is not None or partition in self.unavailable:
            return
        owner = self.owner[partition]
        if owner is None or not owner.up or owner.paused or not self._has_events(partition):
            return
        batch = _Batch(self, partition, owner)
        self.in_flight[partition] = batch
        owner.submit(batch)

    def _has_events(self, partition: int) -> bool:
        with self.ledger.store.unit_of_work() as uow:
            return bool(poll(uow, self.name, partition, 1))

    def _fetch(self, partition: int) -> list[LoggedEvent]:
        limit = 1 if partition in self.suspects else self.max_batch
        with self.ledger.store.unit_of_work() as uow:
            events = poll(uow, self.name, partition, limit)
        upto = self.delivered_upto[partition]
        self.deliveries += len(events)
        self.redeliveries += sum(1 for e in events if e.offset <= upto)
        if events:
            self.delivered_upto[partition] = max(upto, events[-1].offset)
        return events

    def _apply(self, partition: int, events: list[LoggedEvent], epoch: int) -> bool:
        """Commit the batch unless the committed offset or the epoch moved since the fetch."""
        if epoch != self.epoch[partition]:
            self.fenced += 1
            return False
        with self.ledger.store.unit_of_work() as uow:
            if uow.get_offset(self.name, partition) != events[0].offset - 1:
                self.fenced += 1
                return False
            self.handler(uow, events, self.env.now)
            uow.commit()
        self.suspects.pop(partition, None)
        for hook in self.on_commit:
            hook()
        return True

    def refused(self, partition: int, events: list[LoggedEvent]) -> tuple[float, bool]:
        """A commit of `events` was refused: narrow the partition, count the event's failures.

        Returns the backoff before the next try and whether the event is due for `give_up`.
        """
        if self.give_up is None:
            return RETRY_AFTER_FAILURE, False
        suspect = self.suspects.get(partition)
        if suspect is None or len(events) > 1:
            self.suspects[partition] = _Suspect()  # find the culprit, one event at a time
            return 0.0, False
        if suspect.offset != events[0].offset:
            suspect.offset, suspect.failures = events[0].offset, 0
        suspect.failures += 1
        return self.retry.delay(suspect.failures), suspect.failures >= self.retry.attempts

    def compensate(self, partition: int, event: LoggedEvent, epoch: int, reason: str) -> bool:
        """`give_up` for `event` and the offset past it, unless the partition moved meanwhile."""
        assert self.give_up is not None
        if epoch != self.epoch[partition]:
            self.fenced += 1
            return False
        with self.ledger.store.unit_of_work() as uow:
            if uow.get_offset(self.name, partition) != event.offset - 1:
                self.fenced += 1
                return False
            self.give_up(uow, event, reason, self.env.now)
            uow.commit()
        self.compensated += 1
        self.suspects.pop(partition, None)
        for hook in self.on_commit:
            hook()
        return True

    def finished(self, batch: _Batch) -> None:
        if self.in_flight[batch.partition] is not batch:
            return  # fenced meanwhile: the partition's current batch is someone else's
        if self.linger:
            # Like Kafka's fetch.min.wait: fewer, larger batches for a consumer that is not
            # latency-sensitive, and whose per-batch cost grows with what it has accumulated.
            timer = self.env.timeout(self.linger)
            timer.callbacks.append(lambda _ev: self._resume(batch))
        else:
            self._resume(batch)

    def _resume(self, batch: _Batch) -> None:
        if self.in_flight[batch.partition] is batch:
            self.in_flight[batch.partition] = None
            self.notify(batch.partition)

    def lost(self, batch: _Batch) -> None:
        if self.in_flight[batch.partition] is batch:
            self.in_flight[batch.partition] = None


def compensate_once(
    group: ConsumerGroup, node: Node, partition: int, event: LoggedEvent, epoch: int, reason: str
) -> Generator[simpy.Event, Any, bool]:
    """One try, as the runtime makes it: a failure or a lost answer leaves the partition
    narrowed, and the next fetch from the committed offset tells whether it happened."""
    try:
        done = yield group.ledger.call(
            lambda: group.compensate(partition, event, epoch, reason), 1, node
        )
    except NodeDown:
        return False
    return bool(done)


@dataclass(slots=True)
class _Suspect:
    """A partition narrowed to single events after a refused commit (runtime/consumer.py)."""

    offset: int = -1
    failures: int = 0


class _Batch(Job):
    __slots__ = ("epoch", "fetched", "group", "node", "partition")

    def __init__(self, group: ConsumerGroup, partition: int, node: Node) -> None:
        super().__init__()
        self.group = group
        self.partition = partition
        self.node = node
        self.epoch = group.epoch[partition]
        self.fetched = False
        """Holds events not committed yet: fencing it means they will be delivered again."""

    def run(self) -> JobRun:
        g, p, node = self.group, self.partition, self.node
        ledger = g.ledger
        if not (ledger.reaches(node, back=False) and ledger.reaches(node, back=True)):
            # The fetch cannot reach the log: it times out, and the consumer tries again.
            yield g.env.timeout(STORE_TIMEOUT)
            g.finished(self)
            return
        epoch = self.epoch
        if epoch != g.epoch[p]:
            return  # fenced before it fetched: the partition's current owner takes over
        events = g._fetch(p)
        self.fetched = bool(events)
        if events:
            # The round trip to the ledger is folded into the hold: links have no queue, so
            # only the total delay matters, and it saves an event per batch.
            work = g.cost.sample(g.rng, len(events)) + g.network.rtt(node.zone, ledger.zone)
            yield g.env.timeout(work)
            if node.paused:
                yield node.running()  # stopped mid-batch: a zombie when it wakes, if fenced
            try:
                yield ledger.call(lambda: g._apply(p, events, epoch), len(events), node)
            except DiskError as e:
                g.failed_commits += 1
                backoff, exhausted = g.refused(p, events)
                if exhausted:
                    reason = f"retries_exhausted: {type(e).__name__}"
                    if (yield from g.compensation(g, node, p, events[0], epoch, reason)):
                        backoff = 0.0
                yield g.env.timeout(backoff)
            except NodeDown:
                g.failed_commits += 1
                yield g.env.timeout(RETRY_AFTER_FAILURE)
        g.finished(self)

    def lost(self) -> None:
        self.group.lost(self)
