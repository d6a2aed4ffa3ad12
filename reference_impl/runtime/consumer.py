"""The real runtime's driver of the consumer engine: a member's steps on the wall clock.

The engine (service/consumer.py) decides; this module performs its operations against a store:
a `Read` opens a unit of work that the step's next `Write` commits (so a fetch, its effects and
its offsets are one transaction), `Work` costs nothing extra here (the handler's CPU is spent
inside the `Write`), and an `External` call runs after any open unit of work is closed. A
failure is thrown back into the step, which classifies it.

`ConsumerLoop` runs members on one thread: it steps them, and when all are idle it waits for the
`Wakeup` (a commit somewhere) or the earliest timer. `stop()` lets the current step finish, then
each member leaves its group (its partitions move to the others at once) and the loop exits.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from reference_impl.runtime.wakeup import Wakeup
from reference_impl.service.consumer import External, Idle, Member, Op, Read, Step, Work, Write
from reference_impl.service.ports import Clock, Store, UnitOfWork
from reference_impl.timings import timings

log = logging.getLogger(__name__)

MAX_WAIT_S = 1.0
"""Longest idle wait, so a loop notices `stop()` and clock jumps promptly."""


def run_step(store: Store, step: Step) -> None:
    """Perform one step's operations to its end (timed for calibration when that is on)."""
    uow: UnitOfWork | None = None
    value: object = None
    error: Exception | None = None
    run = step.run
    timed = timings()
    started, cpu_started = time.perf_counter(), time.thread_time()
    outside = 0.0
    """Seconds in commits and external calls: the rest of a step is its work."""
    commits = 0.0
    work: Work | None = None
    failed = False
    try:
        while True:
            try:
                op: Op = run.throw(error) if error is not None else run.send(value)
            except StopIteration:
                break
            value, error = None, None
            try:
                if isinstance(op, Read):
                    if uow is None:
                        uow = store.unit_of_work()
                    value = op.fn(uow)
                elif isinstance(op, Write):
                    if uow is None:
                        uow = store.unit_of_work()
                    value = op.fn(uow)
                    before = time.perf_counter()
                    uow.commit()
                    uow = None
                    spent = time.perf_counter() - before
                    commits += spent
                    timed.commit(op.items, spent)
                elif isinstance(op, External):
                    if uow is not None:
                        uow.rollback()
                        uow = None
                    before = time.perf_counter()
                    value = op.fn()
                    outside += time.perf_counter() - before
                else:
                    assert isinstance(op, Work)
                    work = op
            except Exception as e:
                if uow is not None:
                    uow.rollback()
                    uow = None
                error = e
                failed = True
    finally:
        if uow is not None:
            uow.rollback()
        run.close()
    if work is not None and not failed:
        seconds = time.perf_counter() - started - outside - commits
        cpu = time.thread_time() - cpu_started
        timed.step(work.stage, work.items, work.skipped, seconds, commits, cpu)


def drain(store: Store, members: Sequence[Member], max_steps: int = 100_000) -> int:
    """Step `members` until each is idle (nothing fetched, nothing due); returns steps run.

    For tests and tools that want a group's work done synchronously, on one thread.
    """
    for member in members:
        member.wake()
    steps = 0
    while True:
        ran = False
        for member in members:
            nxt = member.next()
            if isinstance(nxt, Step):
                run_step(store, nxt)
                steps += 1
                ran = True
        if not ran:
            return steps
        if steps > max_steps:
            raise RuntimeError(f"members still busy after {max_steps} steps")


class ConsumerLoop:
    """Members stepped on one thread until `stop()`."""

    def __init__(
        self,
        name: str,
        store: Store,
        members: Sequence[Member],
        wakeup: Wakeup,
        clock: Clock,
        on_idle: Callable[[], None] = lambda: None,
    ) -> None:
        self.name = name
        self.store = store
        self.members = list(members)
        self._wakeup = wakeup
        self._clock = clock
        self._on_idle = on_idle
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
            until = self._step_all()
            if until is None:
                continue  # something ran: look again at once
            self._on_idle()
            wait = min(MAX_WAIT_S, max(0.0, until - self._clock.now()))
            self._wakeup.wait(seen, wait)
            if self._wakeup.generation != seen:
                for member in self.members:
                    member.wake()
        for member in self.members:
            member.stop()
            self._finish(member)

    def _step_all(self) -> float | None:
        """Run each member's next step; None if any ran, else the earliest timer."""
        ran = False
        until = float("inf")
        for member in self.members:
            if self._stopping.is_set():
                return None
            nxt = member.next()
            if isinstance(nxt, Idle):
                until = min(until, nxt.until)
                continue
            ran = True
            self._run(nxt)
        return None if ran else until

    def _run(self, step: Step) -> None:
        try:
            run_step(self.store, step)
        except Exception:  # a defect in a step itself: keep the loop (and the others) alive
            log.exception("%s: step %s raised", self.name, step.name)

    def _finish(self, member: Member) -> None:
        """Leave the group, so the partitions move now rather than after the lease."""
        while not member.stopped:
            nxt = member.next()
            if isinstance(nxt, Idle):
                break
            self._run(nxt)
