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
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import simpy

from reference_impl.service.payments import poll
from reference_impl.service.ports import LoggedEvent, UnitOfWork
from sim.ledger import STORE_TIMEOUT, LedgerNode
from sim.network import Network
from sim.node import Job, JobRun, Node, NodeDown
from sim.service_times import BatchCost

Handler = Callable[[UnitOfWork, Sequence[LoggedEvent], float], None]
"""Applies a batch in the caller's unit of work (effects + offset); the caller commits."""

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
        with self.ledger.store.unit_of_work() as uow:
            events = poll(uow, self.name, partition, self.max_batch)
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
            except NodeDown:
                g.failed_commits += 1
                yield g.env.timeout(RETRY_AFTER_FAILURE)
        g.finished(self)

    def lost(self) -> None:
        self.group.lost(self)
