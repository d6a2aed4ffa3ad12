"""The event log's consumer groups: partition ownership, fetch, and at-least-once delivery.

The log itself is the store's outbox (real data, real offsets); this module models what Kafka
adds around it: each partition is owned by one live consumer of the group, ownership moves when
a consumer dies (after the session timeout) or joins (at once), and a consumer fetches a batch
from its committed offset, works on it, then commits effects and offset in one transaction. A
crash between fetch and commit loses the work, and the next owner fetches the same events again:
that is the redelivery the keyed effects must absorb.

One batch per partition is in flight at a time, which is what keeps a partition in order.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import simpy

from reference_impl.service.payments import poll
from reference_impl.service.ports import LoggedEvent, UnitOfWork
from sim.ledger import LedgerNode
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
        self.in_flight = [False] * partitions
        self.delivered_upto = [0] * partitions
        self.deliveries = 0
        self.redeliveries = 0
        self.on_commit: list[Callable[[], None]] = []
        for node in consumers:
            node.on_crash.append(self._consumer_died)
            node.on_restart.append(self.rebalance)
        self.rebalance()

    # -- ownership ------------------------------------------------------------------------
    def rebalance(self) -> None:
        alive = [n for n in self.consumers if n.up]
        for p in range(self.partitions):
            self.owner[p] = alive[p % len(alive)] if alive else None
        for p in range(self.partitions):
            self.notify(p)

    def _consumer_died(self) -> None:
        # The group notices only when the session times out; until then its partitions wait.
        timer = self.env.timeout(self.session_timeout)
        timer.callbacks.append(lambda _ev: self.rebalance())

    # -- delivery -------------------------------------------------------------------------
    def notify(self, partition: int) -> None:
        """New events may be in `partition`: start a batch if none is in flight."""
        if self.in_flight[partition]:
            return
        owner = self.owner[partition]
        if owner is None or not owner.up or not self._has_events(partition):
            return
        self.in_flight[partition] = True
        owner.submit(_Batch(self, partition, owner))

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

    def _apply(self, partition: int, events: list[LoggedEvent]) -> bool:
        """Commit the batch unless the committed offset moved since the fetch (fenced)."""
        with self.ledger.store.unit_of_work() as uow:
            if uow.get_offset(self.name, partition) != events[0].offset - 1:
                return False
            self.handler(uow, events, self.env.now)
            uow.commit()
        for hook in self.on_commit:
            hook()
        return True

    def finished(self, partition: int) -> None:
        if self.linger:
            # Like Kafka's fetch.min.wait: fewer, larger batches for a consumer that is not
            # latency-sensitive, and whose per-batch cost grows with what it has accumulated.
            timer = self.env.timeout(self.linger)
            timer.callbacks.append(lambda _ev: self._resume(partition))
        else:
            self._resume(partition)

    def _resume(self, partition: int) -> None:
        self.in_flight[partition] = False
        self.notify(partition)

    def lost(self, partition: int) -> None:
        self.in_flight[partition] = False


class _Batch(Job):
    __slots__ = ("group", "node", "partition")

    def __init__(self, group: ConsumerGroup, partition: int, node: Node) -> None:
        super().__init__()
        self.group = group
        self.partition = partition
        self.node = node

    def run(self) -> JobRun:
        g, p = self.group, self.partition
        events = g._fetch(p)
        if events:
            ledger = g.ledger
            # The round trip to the ledger is folded into the hold: links have no queue, so
            # only the total delay matters, and it saves an event per batch.
            work = g.cost.sample(g.rng, len(events)) + g.network.rtt(self.node.zone, ledger.zone)
            yield g.env.timeout(work)
            try:
                yield ledger.call(lambda: g._apply(p, events), items=len(events))
            except NodeDown:
                yield g.env.timeout(RETRY_AFTER_FAILURE)
        g.finished(p)

    def lost(self) -> None:
        self.group.lost(self.partition)
