"""The worker side of the runtime: one consumer per consumer group, run by threads.

Groups and what they do (docs/serve.md):
- payments: screening with `ScreeningRules`, then reserve and post (`handle_payment_events`);
  an event that keeps failing is compensated by `fail_payment`;
- settlement: `handle_settlement_events`, plus periodic tasks (cut-off, statement ingestion)
  that the settlement wiring adds as `Periodic`s;
- reporting: the projector's read models; one consumer over all partitions (see projector.py).

A `WorkerLoop` runs some consumers and periodic tasks on one thread: it steps them, and when a
pass finds nothing it waits for the `Wakeup` (a commit somewhere) or the idle interval. `stop()`
lets the current batch finish and commit, then the loop exits: a graceful shutdown loses nothing
because nothing is acknowledged before its commit.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from reference_impl.core.events import decode
from reference_impl.core.screening import ScreeningRules
from reference_impl.runtime.consumer import Consumer, RetryPolicy
from reference_impl.runtime.wakeup import Wakeup
from reference_impl.service.payments import (
    PAYMENTS_GROUP,
    PaymentsConfig,
    fail_payment,
    handle_payment_events,
)
from reference_impl.service.ports import Clock, LoggedEvent, Store, UnitOfWork
from reference_impl.service.projector import REPORTING_GROUP, handle_reporting_events

log = logging.getLogger(__name__)


@dataclass
class Periodic:
    """A task run every `interval` seconds of the clock, in the worker loop between batches."""

    name: str
    interval: float
    run: Callable[[float], int]
    """Called with the current time; returns how many events it appended."""
    next_at: float = 0.0

    def due(self, now: float) -> bool:
        return now >= self.next_at


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    payments: PaymentsConfig = field(default_factory=PaymentsConfig)
    screening: ScreeningRules = field(default_factory=ScreeningRules)
    batch_size: int = 100
    idle_wait: float = 0.25
    """Seconds an idle loop waits for a wake-up before polling again (the fallback when no
    signal arrives, e.g. across processes on SQLite)."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)


def payments_consumer(
    store: Store,
    clock: Clock,
    config: WorkerConfig,
    partitions: Sequence[int],
    on_emit: Callable[[int], None],
) -> Consumer:
    def handle(uow: UnitOfWork, events: Sequence[LoggedEvent], now: float) -> int:
        return len(handle_payment_events(uow, events, config.screening, now, config.payments))

    def give_up(uow: UnitOfWork, event: LoggedEvent, reason: str, now: float) -> int:
        e = decode(event.type, event.payload)
        failed = fail_payment(uow, e.tenant, e.payment_id, reason, now, config.payments)
        uow.set_offset(PAYMENTS_GROUP, event.partition, event.offset)
        return 1 if failed is not None else 0

    return Consumer(
        store,
        PAYMENTS_GROUP,
        partitions,
        handle,
        clock,
        batch_size=config.batch_size,
        retry=config.retry,
        give_up=give_up,
        on_emit=on_emit,
    )


def reporting_consumer(store: Store, clock: Clock, config: WorkerConfig) -> Consumer:
    def handle(uow: UnitOfWork, events: Sequence[LoggedEvent], now: float) -> int:
        handle_reporting_events(uow, events)
        return 0

    return Consumer(
        store,
        REPORTING_GROUP,
        range(config.payments.partitions),
        handle,
        clock,
        batch_size=config.batch_size,
        retry=config.retry,
    )


class WorkerLoop:
    """Consumers and periodic tasks stepped on one thread until `stop()`."""

    def __init__(
        self,
        name: str,
        consumers: Sequence[Consumer],
        wakeup: Wakeup,
        clock: Clock,
        idle_wait: float,
        periodic: Sequence[Periodic] = (),
    ) -> None:
        self.name = name
        self.consumers = list(consumers)
        self.periodic = list(periodic)
        self._wakeup = wakeup
        self._clock = clock
        self._idle_wait = idle_wait
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self.run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wakeup.notify_local()

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def run(self) -> None:
        while not self._stopping.is_set():
            seen = self._wakeup.generation
            busy = 0
            for consumer in self.consumers:
                if self._stopping.is_set():
                    return
                busy += consumer.step()
            busy += self._run_periodic()
            if not busy:
                self._wakeup.wait(seen, self._wait_time())

    def _run_periodic(self) -> int:
        appended = 0
        now = self._clock.now()
        for task in self.periodic:
            if not task.due(now):
                continue
            try:
                appended += task.run(now)
                task.next_at = now + task.interval
            except Exception as e:  # retried at the next pass after a short pause
                log.warning("%s: %s failed: %r", self.name, task.name, e)
                task.next_at = now + min(task.interval, 1.0)
        if appended:
            self._wakeup.notify()
        return appended

    def _wait_time(self) -> float:
        if not self.periodic:
            return self._idle_wait
        until = min(t.next_at for t in self.periodic) - self._clock.now()
        return max(0.0, min(self._idle_wait, until))
