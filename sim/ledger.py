"""The ledger store as a node: commits queue for its connections and take service time.

A caller (gateway, consumer) hands over a function that opens a unit of work on the
MemoryStore, runs the real service handler and commits. It runs at the instant the commit
completes in simulated time, so the sim decides when a transaction happens and the handler
decides what it does. SimPy runs one callback at a time, so the function is atomic, as the
store's serialisable units of work promise.

Replication: with `sync`, a commit also waits for the round trip to the replica's zone; with
`async`, a replicator ships the log at most two lag intervals behind. A crash of the ledger
node fails every queued and in-flight commit (the caller sees NodeDown) and drops what the
store had not made durable. A failover promotes the replica (the MemoryStore decides what an
async replica had not received: acknowledged commits that are gone) and moves the primary to
the replica's zone.

Faults around the store, modelled here because they are about time and reachability, not about
what the store does, and modelled as the real stores behave:
- a slow disk adds to every commit;
- a failed fsync stops the database, as PostgreSQL's PANIC does: the ledger crashes (every
  queued and in-flight commit fails) and crash-recovers after `DISK_RECOVERY`; whether the
  commit whose fsync failed survived is drawn, and its caller cannot tell either way;
- a sync primary cut off from its replica commits locally (durable, visible) and waits for the
  replica's acknowledgement, which does not come: its caller times out not knowing the commit
  happened (PostgreSQL's synchronous_commit), and the replica catches up once reachable;
- a paused ledger holds commits until it resumes;
- a cut link to the caller makes the call time out, either before the commit (nothing happened)
  or after it (it happened, but the caller cannot know: that is the case idempotency keys exist
  for).
Each fails the call with a NodeDown, which callers treat as the store being unavailable.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator
from typing import Any, Generic, TypeVar

import simpy

from reference_impl.adapters.memory import MemoryStore
from scenarios.schema import Ledger
from sim.network import Network
from sim.node import Job, JobRun, Node, NodeDown
from sim.rng import Streams
from sim.service_times import ServiceTimes

T = TypeVar("T")

STORE_TIMEOUT = 0.5
"""Seconds a caller waits on a store call that a cut link swallowed before giving up."""


class StoreTimeout(NodeDown):
    """No answer from the store within STORE_TIMEOUT: the commit may or may not have happened."""


DISK_RECOVERY = 1.0
"""Seconds the ledger takes to crash-recover after a failed fsync."""


class DiskError(NodeDown):
    """The commit's fsync failed: the store is crash-recovering; the commit may have survived."""


def _fail(event: simpy.Event, exc: Exception) -> None:
    # Defused: a caller that crashed meanwhile no longer waits, and that is not an error.
    event.defused = True
    event.fail(exc)


class _Commit(Job, Generic[T]):
    __slots__ = ("called_at", "done", "fn", "ledger", "origin", "service")

    def __init__(
        self,
        ledger: LedgerNode,
        fn: Callable[[], T],
        service: float,
        done: simpy.Event,
        origin: Node | None,
    ) -> None:
        super().__init__()
        self.ledger = ledger
        self.fn = fn
        self.service = service
        self.done = done
        self.origin = origin
        self.called_at = ledger.env.now

    def run(self) -> JobRun:
        ledger = self.ledger
        yield ledger.node.compute(self.service)
        if ledger.node.paused:
            yield ledger.node.running()
        fail = ledger.disk_fail_probability
        if fail and ledger.rng.random() < fail:
            ledger.disk_failures += 1
            ledger.fsync_failed(self)
            return
        store = ledger.store
        if ledger.spec.replication == "sync":
            if not ledger.replica_reachable():
                store.replica_connected = False
                try:
                    self.fn()
                except Exception as e:
                    _fail(self.done, e)
                    return
                # Durable here, unacknowledged by the replica: the caller cannot know.
                ledger.late(
                    self.done, self.called_at, StoreTimeout(f"{ledger.name}: no replica ack")
                )
                return
            if not store.replica_connected:
                store.reconnect_replica()
        try:
            result = self.fn()
        except Exception as e:  # the caller decides: business refusals and bugs alike
            _fail(self.done, e)
            return
        if self.origin is not None and not ledger.reaches(self.origin, back=True):
            ledger.late(self.done, self.called_at, StoreTimeout(f"{ledger.name}: reply lost"))
        else:
            self.done.succeed(result)

    def lost(self) -> None:
        _fail(self.done, NodeDown(self.ledger.name))


class LedgerNode:
    def __init__(
        self,
        env: simpy.Environment,
        spec: Ledger,
        zones: list[str],
        network: Network,
        times: ServiceTimes,
        streams: Streams,
    ) -> None:
        self.env = env
        self.spec = spec
        self.name = "ledger"
        self.zone = zones[0]
        replication = "none" if spec.replicas == 0 else spec.replication
        self.store = MemoryStore(replication=replication)
        self.node = Node(
            env, self.name, "ledger", self.zone, times.ledger_writers or spec.connections
        )
        self.network = network
        self.cost = times.ledger_commit
        self.rng = streams.get("ledger")
        # The first replica sits in the next zone; a sync commit waits for its acknowledgement.
        self.replica_zone = zones[1 % len(zones)]
        self.node.on_crash.append(self._crashed)
        self.on_failover: list[Callable[[], None]] = []
        # Disk faults (set by sim/faults.py) and what they did.
        self.disk_slow = 0.0
        self.disk_fail_probabilities: list[float] = []
        """One per open disk fault window; the worst applies (windows may overlap)."""
        self.disk_failures = 0
        self.timeouts = 0
        self.lost_in_failover = 0

    def call(self, fn: Callable[[], T], items: int = 1, origin: Node | None = None) -> simpy.Event:
        """An event that succeeds with fn()'s result when the commit is done, or fails.
        `origin` is the calling node, for the links a partition can cut."""
        done = self.env.event()
        service = self.cost.sample(self.rng, items) + self.disk_slow
        if self.spec.replicas and self.spec.replication == "sync":
            service += self.network.rtt(self.zone, self.replica_zone)
        if origin is not None and not self.reaches(origin, back=False):
            self.late(done, self.env.now, StoreTimeout(f"{self.name}: unreachable"))
        elif not self.node.submit(_Commit(self, fn, service, done, origin)):
            _fail(done, NodeDown(self.name))
        return done

    def reaches(self, origin: Node, back: bool) -> bool:
        """Is the link from `origin` to the ledger (or `back`) open?"""
        here, there = (self.zone, self.name), (origin.zone, origin.name)
        return self.network.reachable(*(here + there if back else there + here))

    def replica_reachable(self) -> bool:
        return self.network.reachable(self.zone, self.replica_zone)

    def late(self, done: simpy.Event, called_at: float, exc: NodeDown) -> None:
        """Fail `done` when the caller's timeout, counted from `called_at`, runs out."""
        self.timeouts += 1
        timer = self.env.timeout(max(0.0, called_at + STORE_TIMEOUT - self.env.now))
        timer.callbacks.append(lambda _ev: _fail(done, exc))

    @property
    def disk_fail_probability(self) -> float:
        return max(self.disk_fail_probabilities, default=0.0)

    def _crashed(self) -> None:
        self.store.crash()

    def fsync_failed(self, failed: _Commit[Any]) -> None:
        """A WAL flush failed: the database stops at once and recovers after a while.

        The flush covered every commit in flight (group commit), so each of them, `failed`
        included, may or may not have reached the disk, and no caller is told which.
        """
        in_flight = [failed] + [
            job
            for job in self.node.current_jobs()
            if isinstance(job, _Commit) and job is not failed
        ]
        for job in in_flight:
            if self.rng.random() < 0.5:  # it reached the disk before the failure
                with contextlib.suppress(Exception):  # refused anyway: nothing to keep
                    job.fn()
        _fail(failed.done, DiskError(f"{self.name}: fsync failed, crash-recovering"))

        def panic(_ev: simpy.Event) -> None:
            if self.node.up:
                self.node.crash()
                back = self.env.timeout(DISK_RECOVERY)
                back.callbacks.append(lambda _ev: self.node.restart())

        self.env.timeout(0).callbacks.append(panic)

    # -- failover -------------------------------------------------------------------------
    def lose_primary(self) -> None:
        """The primary dies: in-flight commits fail; nothing serves until `promote()`."""
        self.node.crash()

    def promote(self) -> int:
        """The replica becomes the primary; returns the acknowledged commits it lacked."""
        lost = self.store.failover()
        self.lost_in_failover += lost
        self.zone, self.replica_zone = self.replica_zone, self.zone
        self.node.zone = self.zone
        self.node.restart()
        for hook in self.on_failover:
            hook()
        return lost

    def replicator(self) -> Generator[simpy.Event, Any, None]:
        """Ship committed write sets to the async replica, `replication_lag` behind."""
        lag = max(self.spec.replication_lag, 1e-3)
        while True:
            seen = self.store.committed_seq
            yield self.env.timeout(lag)
            # After a failover the store's sequence restarts lower, so compare with what the
            # replica has, not with what this loop shipped before.
            # A dead primary ships nothing: what it had not shipped is what failover loses.
            if seen > self.store.replica_seq and self.node.up and self.replica_reachable():
                self.store.replicate(upto=seen)
