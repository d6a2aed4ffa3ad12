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
        handled = 0
        for p in self.partitions:
            if self.clock.now() < self._paused_until:
                break
            handled += self._step_partition(p)
        return handled

    def _step_partition(self, p: int) -> int:
        suspect = self._suspects.get(p)
        if suspect is not None and self.clock.now() < suspect.retry_at:
            return 0
        limit = 1 if suspect is not None else self.batch_size
        event: LoggedEvent | None = None
        try:
            with self.store.unit_of_work() as uow:
                events = uow.read_events(p, uow.get_offset(self.group, p), limit)
                if not events:
                    self._suspects.pop(p, None)
                    return 0
                event = events[0]
                emitted = self.handle(uow, events, self.clock.now())
                uow.commit()
        except StoreUnavailable as e:
            self.stats.failures += 1
            self._paused_until = self.clock.now() + self.retry.max_delay
            log.warning(
                "%s: store unavailable, pausing %.1fs: %s", self.group, self.retry.max_delay, e
            )
            return 0
        except Exception as e:
            self.stats.failures += 1
            self._failed(p, event, e)
            return 0
        self._suspects.pop(p, None)
        self.stats.events += len(events)
        self.stats.batches += 1
        if emitted:
            self.on_emit(emitted)
        return len(events)

    def _failed(self, p: int, event: LoggedEvent | None, error: Exception) -> None:
        suspect = self._suspects.get(p)
        if suspect is None or event is None:
            # A failed batch: retry the partition one event at a time, at once.
            self._suspects[p] = _Suspect()
            log.warning(
                "%s p%d: batch failed, narrowing to single events: %r", self.group, p, error
            )
            return
        if suspect.offset != event.offset:
            suspect.offset, suspect.failures = event.offset, 0
        suspect.failures += 1
        suspect.retry_at = self.clock.now() + self.retry.delay(suspect.failures)
        log.warning(
            "%s p%d offset %d: attempt %d failed: %r",
            self.group,
            p,
            event.offset,
            suspect.failures,
            error,
        )
        if suspect.failures >= self.retry.attempts and self.give_up is not None:
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
