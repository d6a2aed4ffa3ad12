"""A consumer of one group over some event-log partitions: poll, apply, commit, retry.

Each step takes a batch from a partition at the group's committed offset, applies the handler
and commits effect and offset in one unit of work. Nothing is acknowledged anywhere else, so a
crash anywhere before the commit means the batch is simply delivered again (at-least-once), and
the handlers' keyed effects make that repeat a no-op (exactly-once effects).

Failures:
- the database unreachable (`StoreUnavailable`): back off and retry without blaming any event;
- any other error: the batch rolls back and the partition narrows to one event at a time, to
  find the event at fault; that event is retried with exponential backoff (other partitions
  keep flowing) and after `attempts` failures the group's `give_up` compensates it (the
  payments group fails the payment, voiding its reservation) and moves past it, in one unit of
  work. A group without compensation never skips an event: it keeps retrying at the capped
  backoff, because skipping would silently lose an effect.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from reference_impl.service.ports import Clock, LoggedEvent, Store, StoreUnavailable, UnitOfWork

log = logging.getLogger(__name__)

Handler = Callable[[UnitOfWork, Sequence[LoggedEvent], float], int]
"""Apply a batch inside the unit of work (the consumer commits); returns events emitted."""
GiveUp = Callable[[UnitOfWork, LoggedEvent, str, float], int]
"""Compensate one event that kept failing and advance the offset past it; events emitted."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 5
    """Failures of one event before `give_up` compensates it."""
    base_delay: float = 0.05
    max_delay: float = 2.0

    def delay(self, failures: int) -> float:
        return float(min(self.max_delay, self.base_delay * 2 ** max(0, failures - 1)))


@dataclass(slots=True)
class _Suspect:
    """A partition narrowed to single events after a failed batch."""

    offset: int = -1
    failures: int = 0
    retry_at: float = 0.0


@dataclass(slots=True)
class ConsumerStats:
    events: int = 0
    batches: int = 0
    failures: int = 0
    compensated: int = 0


@dataclass
class Consumer:
    store: Store
    group: str
    partitions: Sequence[int]
    handle: Handler
    clock: Clock
    batch_size: int = 100
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    give_up: GiveUp | None = None
    on_emit: Callable[[int], None] = lambda n: None
    """Called after a commit that appended events (to wake the consumers of those events)."""
    stats: ConsumerStats = field(default_factory=ConsumerStats)
    _suspects: dict[int, _Suspect] = field(default_factory=dict)
    _paused_until: float = 0.0

    def step(self) -> int:
        """One pass over the partitions; the number of events committed (0 when idle)."""
        if self.clock.now() < self._paused_until:
            return 0
        handled = self._step_together([p for p in self.partitions if p not in self._suspects])
        for p in list(self._suspects):
            handled += self._step_partition(p)
        return handled

    def _step_together(self, partitions: Sequence[int]) -> int:
        """A batch from every healthy partition in one unit of work: one lock, one commit.

        On SQLite every unit of work takes the database's write lock and every commit an fsync,
        so polling partitions one transaction each would cost the gateway that much more waiting.
        """
        touched: list[int] = []
        emitted = handled = 0
        try:
            with self.store.unit_of_work() as uow:
                for p in partitions:
                    events = uow.read_events(p, uow.get_offset(self.group, p), self.batch_size)
                    if events:
                        touched.append(p)
                        emitted += self.handle(uow, events, self.clock.now())
                        handled += len(events)
                if not touched:
                    return 0
                uow.commit()
        except StoreUnavailable as e:
            self._unavailable(e)
            return 0
        except Exception as e:
            self.stats.failures += 1
            for p in touched:  # each retried on its own, one event at a time, to find the culprit
                self._suspects[p] = _Suspect()
            log.warning("%s: batch failed, narrowing to single events: %r", self.group, e)
            return 0
        self.stats.events += handled
        self.stats.batches += 1
        if emitted:
            self.on_emit(emitted)
        return handled

    def _unavailable(self, e: StoreUnavailable) -> None:
        self.stats.failures += 1
        self._paused_until = self.clock.now() + self.retry.max_delay
        log.warning("%s: store unavailable, pausing %.1fs: %s", self.group, self.retry.max_delay, e)

    def _step_partition(self, p: int) -> int:
        """A suspect partition: its next event alone, once its backoff has passed."""
        suspect = self._suspects[p]
        if self.clock.now() < suspect.retry_at:
            return 0
        event: LoggedEvent | None = None
        try:
            with self.store.unit_of_work() as uow:
                events = uow.read_events(p, uow.get_offset(self.group, p), 1)
                if not events:
                    del self._suspects[p]
                    return 0
                event = events[0]
                emitted = self.handle(uow, events, self.clock.now())
                uow.commit()
        except StoreUnavailable as e:
            self._unavailable(e)
            return 0
        except Exception as e:
            self.stats.failures += 1
            self._failed(suspect, event, e)
            return 0
        del self._suspects[p]
        self.stats.events += 1
        self.stats.batches += 1
        if emitted:
            self.on_emit(emitted)
        return 1

    def _failed(self, suspect: _Suspect, event: LoggedEvent | None, error: Exception) -> None:
        offset = event.offset if event is not None else -1
        if suspect.offset != offset:
            suspect.offset, suspect.failures = offset, 0
        suspect.failures += 1
        suspect.retry_at = self.clock.now() + self.retry.delay(suspect.failures)
        log.warning(
            "%s offset %d: attempt %d failed: %r", self.group, offset, suspect.failures, error
        )
        if event is not None and suspect.failures >= self.retry.attempts and self.give_up:
            self._compensate(event, f"retries_exhausted: {type(error).__name__}")

    def _compensate(self, event: LoggedEvent, reason: str) -> None:
        assert self.give_up is not None
        try:
            with self.store.unit_of_work() as uow:
                emitted = self.give_up(uow, event, reason, self.clock.now())
                uow.commit()
        except Exception as e:
            log.error(
                "%s p%d offset %d: compensation failed: %r",
                self.group,
                event.partition,
                event.offset,
                e,
            )
            return
        self.stats.compensated += 1
        self._suspects.pop(event.partition, None)
        log.error(
            "%s p%d offset %d: gave up (%s), compensated",
            self.group,
            event.partition,
            event.offset,
            reason,
        )
        if emitted:
            self.on_emit(emitted)
