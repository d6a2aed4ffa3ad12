"""A node: a FIFO queue in front of `workers` identical servers, which can crash and restart.

Work arrives as jobs; a worker takes the next job and runs its generator inside the worker's
own SimPy process, so a job costs no process of its own (the sim's hot path is the per-event
overhead). A job holds its worker for as long as it runs, including while it waits on another
node: that is how a thread blocked on a database call behaves, and what utilization means.

The node keeps the time integrals that queueing theory talks about (number in system, busy
workers), so mean waiting time, utilization and Little's law can be checked against the
closed forms, and samples queue length and utilization for the run record.

A crash interrupts every worker, drops the queue and tells each lost job (`lost()`); nothing in
flight survives. A restart starts fresh workers on an empty queue.

A pause is SIGSTOP: the node keeps its state and keeps accepting work into its queue (the
kernel still queues connections), but no worker takes a new job until `resume()`. The step a
worker is in when the pause comes completes (a SimPy timeout cannot be frozen), and jobs that
must not act while stopped check `running()` first (the ledger's commit does).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import simpy

JobRun = Generator[simpy.Event, Any, None]


class Job:
    """A unit of work: `run()` is a generator of SimPy events; `lost()` is called on a crash."""

    __slots__ = ("arrived_at", "started_at")

    def __init__(self) -> None:
        self.arrived_at = 0.0
        self.started_at = 0.0

    def run(self) -> JobRun:
        raise NotImplementedError

    def lost(self) -> None:
        """The node crashed with this job queued or in service."""


class NodeDown(Exception):
    """The node is down: a call to it was refused or lost in a crash."""


@dataclass(frozen=True, slots=True)
class NodeSample:
    at: float
    node: str
    kind: str
    zone: str
    workers: int
    up: bool
    queue: int
    """Jobs waiting for a worker: requests at a gateway, commits at the ledger, a consumer's
    next step."""
    in_system: int
    busy: int
    utilization: float
    """Busy fraction of the workers over the interval that ends at `at`: time a worker held a
    job, including time it waited on another node (a thread blocked on a database call)."""
    cpu: float
    """The part of that spent on the node's own work (`compute`), over the same interval."""
    arrivals: int
    completions: int
    lag: int = 0
    """A consumer's: events waiting after its group's committed offsets in its partitions."""
    headroom: float = float("nan")
    """A consumer's: the event rate it sustains at its current batch sizes (events handled per
    busy second) over the rate events arrived in its partitions, in the interval."""


class Node:
    def __init__(self, env: simpy.Environment, name: str, kind: str, zone: str, workers: int):
        self.env = env
        self.name = name
        self.kind = kind
        self.zone = zone
        self.workers = workers
        self.up = True
        self.paused = False
        self._resumed: simpy.Event | None = None
        self.queue: deque[Job] = deque()
        self._idle: list[simpy.Event] = []
        self._procs: list[simpy.Process] = []
        self._current: dict[int, Job] = {}
        self.on_crash: list[Callable[[], None]] = []
        self.on_restart: list[Callable[[], None]] = []
        self.on_pause: list[Callable[[], None]] = []
        self.on_resume: list[Callable[[], None]] = []
        # Time integrals and counters (queueing-theory checks and the nodes table).
        self.busy = 0
        self.in_system = 0
        self.arrivals = 0
        self.completions = 0
        self.lost_jobs = 0
        self.wait_sum = 0.0
        self.sojourn_sum = 0.0
        self.area_busy = 0.0
        self.area_in_system = 0.0
        self.cpu_seconds = 0.0
        """Service time the node's jobs spent on its own work (see `compute`)."""
        self.host: simpy.Resource | None = None
        """The cores this node shares with the others on its host; None: a CPU of its own."""
        self._sampled = (0.0, 0.0)
        self._last = env.now
        self._start_workers()

    # -- work -----------------------------------------------------------------------------
    def submit(self, job: Job) -> bool:
        """Queue `job`; False (and the job is not taken) when the node is down."""
        if not self.up:
            return False
        self._tick()
        self.in_system += 1
        self.arrivals += 1
        job.arrived_at = self.env._now
        # The job always waits in the queue, even for an idle worker: a crash then finds every
        # job not yet started in one place (a job handed to a waking worker would be invisible).
        self.queue.append(job)
        if self._idle:
            self._idle.pop().succeed()
        return True

    def _tick(self) -> None:
        now = self.env._now
        dt = now - self._last
        if dt:
            self.area_busy += self.busy * dt
            self.area_in_system += self.in_system * dt
            self._last = now

    def _worker(self, slot: int) -> Generator[simpy.Event, Any, None]:
        env = self.env
        queue = self.queue
        try:
            while True:
                if self.paused:
                    yield self.running()
                    continue
                if not queue:
                    wake = env.event()
                    self._idle.append(wake)
                    yield wake
                    continue  # another worker may have taken the job first
                job = queue.popleft()
                self._tick()
                self.busy += 1
                job.started_at = env._now
                self.wait_sum += env._now - job.arrived_at
                self._current[slot] = job
                yield from job.run()
                del self._current[slot]
                self._tick()
                self.busy -= 1
                self.in_system -= 1
                self.completions += 1
                self.sojourn_sum += env._now - job.arrived_at
        except simpy.Interrupt:
            return

    def _start_workers(self) -> None:
        self._procs = [self.env.process(self._worker(i)) for i in range(self.workers)]

    def current_jobs(self) -> list[Job]:
        """The jobs in service now, in worker order."""
        return [self._current[slot] for slot in sorted(self._current)]

    # -- failure --------------------------------------------------------------------------
    def crash(self) -> None:
        """Lose the queue and the work in service; every worker stops."""
        if not self.up:
            return
        self._tick()
        self.up = False
        self.paused = False  # a stopped process can still be killed; it restarts running
        lost = [*self._current.values(), *self.queue]
        for proc in self._procs:
            if proc.is_alive:
                proc.interrupt("crash")
        # Whoever waits for a stopped process to go on (a client mid-request) learns that it
        # died: woken now, it finds the node down (its own workers are interrupted first).
        resumed, self._resumed = self._resumed, None
        if resumed is not None:
            resumed.succeed()
        self._procs = []
        self._idle = []
        self._current = {}
        self.queue = deque()
        self.busy = 0
        self.in_system = 0
        self.lost_jobs += len(lost)
        for job in lost:
            job.lost()
        for hook in self.on_crash:
            hook()

    def restart(self) -> None:
        if self.up:
            return
        self._tick()
        self.up = True
        self._start_workers()
        for hook in self.on_restart:
            hook()

    def pause(self) -> None:
        if self.paused or not self.up:
            return
        self.paused = True
        self._resumed = self.env.event()
        for hook in self.on_pause:
            hook()

    def resume(self) -> None:
        if not self.paused:
            return
        self.paused = False
        resumed, self._resumed = self._resumed, None
        if resumed is not None:
            resumed.succeed()
        for hook in self.on_resume:
            hook()

    def compute(self, seconds: float) -> simpy.Event:
        """Hold the current job's worker for `seconds` of the node's own work (its CPU); on a
        shared host, for a free core first."""
        self.cpu_seconds += seconds
        if self.host is None:
            return self.env.timeout(seconds)
        return self.env.process(on_core(self.env, self.host, seconds))

    def running(self) -> simpy.Event:
        """An event that fires when the node is not paused (at once if it is not), or when it
        crashes while paused: a waiter on another node checks `up` after it."""
        if self._resumed is None:
            return self.env.timeout(0)
        return self._resumed

    # -- observation ----------------------------------------------------------------------
    def sample(self, interval: float) -> NodeSample:
        """The node's state now, and its busy and CPU fractions since the last sample."""
        self._tick()
        area, cpu = self._sampled
        self._sampled = (self.area_busy, self.cpu_seconds)
        capacity = interval * self.workers
        return NodeSample(
            self.env.now,
            self.name,
            self.kind,
            self.zone,
            self.workers,
            self.up,
            len(self.queue),
            self.in_system,
            self.busy,
            (self.area_busy - area) / capacity,
            (self.cpu_seconds - cpu) / capacity,
            self.arrivals,
            self.completions,
        )

    def close_books(self) -> None:
        """Bring the time integrals up to now (before reading them)."""
        self._tick()


def on_core(
    env: simpy.Environment, host: simpy.Resource, seconds: float
) -> Generator[simpy.Event, Any, None]:
    """`seconds` of CPU on one of the host's cores, once one is free (first come, first
    served: the cores of one machine, which every process on it competes for)."""
    with host.request() as core:
        yield core
        yield env.timeout(seconds)
