"""The sim's side of the bug zoo: the broken variants that are about time, not about logic.

Most zoo bugs are switches in the service handlers (reference_impl/bugs.py). A few break how
the runtime drives those handlers, and only a runtime can express them, so the sim's
composition root asks this module to wire them in when the scenario selects them:

- `ack-before-durable`: the store acknowledges commits before they are durable and syncs them
  only every `SYNC_INTERVAL`; a ledger crash loses what was acknowledged since the last sync.
- `async-replication-failover`: the ledger replicates asynchronously whatever the scenario says,
  so a failover loses the acknowledged commits the replica had not received.
- `lost-update`: the store serves account reads from a view refreshed every `READ_INTERVAL`,
  so commits inside one interval read-modify-write the same balance (see the memory store).
- `commit-offset-before-effect`: the payments consumer commits its offset in the batch's unit
  of work and applies the effects in a later one, on the same consumer; a crash between loses
  them for good, because nothing will deliver those events again.
- `non-idempotent-consumer`: the Kafka-style at-least-once consumer. It commits its effects in
  one unit of work and its offset in a later job on the same consumer; a crash or a refused
  commit between delivers the events again, and the service's unkeyed effects apply them again.
- `double-compensation`: the saga-style compensation. When the answer to a compensation's
  commit is lost, the payments consumer retries the compensation it holds until one is
  acknowledged, instead of fetching from its committed offset (which would show the offset
  already past the event); with the service's unguarded, unkeyed `fail_payment`, a retry of a
  compensation that did commit compensates the payment again.

Every other path is untouched when no bug is selected.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Any

import simpy

from reference_impl.adapters.memory import MemoryStore
from reference_impl.service.payments import apply_payment_events, commit_offset
from reference_impl.service.ports import LoggedEvent, UnitOfWork
from scenarios.schema import Ledger
from sim.eventlog import ConsumerGroup
from sim.ledger import LedgerNode
from sim.node import Job, JobRun, Node, NodeDown

if TYPE_CHECKING:
    from sim.system import System

SYNC_INTERVAL = 0.1
"""Seconds between the fsyncs of a store that acknowledges before durability."""
READ_INTERVAL = 0.02
"""Seconds a `lost-update` balance read may lag behind the committed balance."""


def ledger_spec(spec: Ledger, bugs: frozenset[str]) -> Ledger:
    """The ledger topology the sim builds: async replication under its bug."""
    if "async-replication-failover" in bugs and spec.replicas:
        return spec.model_copy(update={"replication": "async"})
    return spec


def fit_store(ledger: LedgerNode, bugs: frozenset[str]) -> None:
    """Swap in a store with the selected store-level bugs (before anything is written)."""
    if bugs & {"ack-before-durable", "lost-update"}:
        ledger.store = MemoryStore(
            durable_commits="ack-before-durable" not in bugs,
            replication=ledger.store.replication,
            bugs=bugs,
        )


def install(system: System) -> None:
    if "commit-offset-before-effect" in system.bugs:
        system.payments.handler = _OffsetFirst(system)
    if "non-idempotent-consumer" in system.bugs:
        system.payments.handler = _EffectFirst(system)
    if "double-compensation" in system.bugs:
        system.payments.compensation = _UntilAcknowledged(system)


def start(system: System) -> None:
    store = system.ledger.store
    if "ack-before-durable" in system.bugs:
        system.env.process(_every(system.env, SYNC_INTERVAL, store.sync))
    if "lost-update" in system.bugs:
        system.env.process(_every(system.env, READ_INTERVAL, store.refresh_reads))


def _every(env: simpy.Environment, interval: float, fn: Any) -> Generator[simpy.Event, Any, None]:
    while True:
        fn()
        yield env.timeout(interval)


class _OffsetFirst:
    """The payments handler under `commit-offset-before-effect`."""

    def __init__(self, system: System) -> None:
        self.system = system

    def __call__(self, uow: UnitOfWork, events: Sequence[LoggedEvent], now: float) -> None:
        commit_offset(uow, events)
        owner = self.system.payments.owner[events[0].partition]
        if owner is not None:
            owner.submit(_Effect(self.system, list(events)))

    def apply(self, events: list[LoggedEvent]) -> None:
        s = self.system
        with s.ledger.store.unit_of_work() as uow:
            emitted = apply_payment_events(uow, events, s.screening, s.env.now, s.config)
            uow.commit()
        s._emitted += emitted
        s._publish()


class _Effect(Job):
    """The effects of a batch whose offset is already committed: lost if this job is."""

    __slots__ = ("events", "system")

    def __init__(self, system: System, events: list[LoggedEvent]) -> None:
        super().__init__()
        self.system = system
        self.events = events

    def run(self) -> JobRun:
        s = self.system
        handler = s.payments.handler
        assert isinstance(handler, _OffsetFirst)
        # The bug: if this fails, the offset is already past these events; nobody applies them.
        with contextlib.suppress(NodeDown):
            yield s.ledger.call(lambda: handler.apply(self.events), items=len(self.events))


class _EffectFirst:
    """The payments handler under `non-idempotent-consumer`: effects now, offset later."""

    def __init__(self, system: System) -> None:
        self.system = system

    def __call__(self, uow: UnitOfWork, events: Sequence[LoggedEvent], now: float) -> None:
        s = self.system
        s._emitted += apply_payment_events(uow, events, s.screening, now, s.config)
        _commit_offset_later(s, list(events))


def _commit_offset_later(system: System, events: list[LoggedEvent]) -> None:
    """Queue the offset commit on the partition's consumer, ahead of its next fetch (FIFO)."""
    owner = system.payments.owner[events[0].partition]
    if owner is not None:
        owner.submit(_Offset(system, owner, events))


class _Offset(Job):
    """An offset commit after the effects: if it is lost, the events are delivered again."""

    __slots__ = ("events", "node", "system")

    def __init__(self, system: System, node: Node, events: list[LoggedEvent]) -> None:
        super().__init__()
        self.system = system
        self.node = node
        self.events = events

    def run(self) -> JobRun:
        store = self.system.ledger.store

        def commit() -> None:
            with store.unit_of_work() as uow:
                commit_offset(uow, self.events)
                uow.commit()

        # The bug: a failure here leaves the offset behind effects that are already applied.
        with contextlib.suppress(NodeDown):
            yield self.system.ledger.call(commit, origin=self.node)


class _UntilAcknowledged:
    """The payments group's compensation under `double-compensation`: retried until answered."""

    def __init__(self, system: System) -> None:
        self.system = system

    def __call__(
        self,
        group: ConsumerGroup,
        node: Node,
        partition: int,
        event: LoggedEvent,
        epoch: int,
        reason: str,
    ) -> Generator[simpy.Event, Any, bool]:
        s = self.system
        try:
            done = yield s.ledger.call(
                lambda: group.compensate(partition, event, epoch, reason), 1, node
            )
            return bool(done)
        except NodeDown:
            pass

        def again() -> None:
            assert group.give_up is not None
            with s.ledger.store.unit_of_work() as uow:
                group.give_up(uow, event, reason, s.env.now)
                uow.commit()
            s._publish()

        # The bug: no answer is taken to mean "not done", so the compensation runs again,
        # whatever the committed offset says; only its acknowledgement ends the retries.
        failures = 0
        while True:
            failures += 1
            yield s.env.timeout(group.retry.delay(failures))
            with contextlib.suppress(NodeDown):
                yield s.ledger.call(again, 1, node)
                return True
