"""The ledger store as a node: commits queue for its connections and take service time.

A caller (gateway, consumer) hands over a function that opens a unit of work on the
MemoryStore, runs the real service handler and commits. It runs at the instant the commit
completes in simulated time, so the sim decides when a transaction happens and the handler
decides what it does. SimPy runs one callback at a time, so the function is atomic, as the
store's serialisable units of work promise.

Replication: with `sync`, a commit also waits for the round trip to the replica's zone; with
`async`, a replicator ships the log at most two lag intervals behind. A crash of the ledger
node fails every queued and in-flight commit (the caller sees NodeDown) and drops what the
store had not made durable.
"""

from __future__ import annotations

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


def _fail(event: simpy.Event, exc: Exception) -> None:
    # Defused: a caller that crashed meanwhile no longer waits, and that is not an error.
    event.defused = True
    event.fail(exc)


class _Commit(Job, Generic[T]):
    __slots__ = ("done", "fn", "ledger", "service")

    def __init__(
        self, ledger: LedgerNode, fn: Callable[[], T], service: float, done: simpy.Event
    ) -> None:
        super().__init__()
        self.ledger = ledger
        self.fn = fn
        self.service = service
        self.done = done

    def run(self) -> JobRun:
        yield self.ledger.env.timeout(self.service)
        try:
            result = self.fn()
        except Exception as e:  # the caller decides: business refusals and bugs alike
            _fail(self.done, e)
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
        self.node = Node(env, self.name, "ledger", self.zone, spec.connections)
        self.network = network
        self.cost = times.ledger_commit
        self.rng = streams.get("ledger")
        # The first replica sits in the next zone; a sync commit waits for its acknowledgement.
        self.replica_zone = zones[1 % len(zones)]
        self.node.on_crash.append(self._crashed)

    def call(self, fn: Callable[[], T], items: int = 1) -> simpy.Event:
        """An event that succeeds with fn()'s result when the commit is done, or fails."""
        done = self.env.event()
        service = self.cost.sample(self.rng, items)
        if self.spec.replicas and self.spec.replication == "sync":
            service += self.network.rtt(self.zone, self.replica_zone)
        if not self.node.submit(_Commit(self, fn, service, done)):
            _fail(done, NodeDown(self.name))
        return done

    def _crashed(self) -> None:
        self.store.crash()

    def replicator(self) -> Generator[simpy.Event, Any, None]:
        """Ship committed write sets to the async replica, `replication_lag` behind."""
        lag = max(self.spec.replication_lag, 1e-3)
        shipped_upto = 0
        while True:
            seen = self.store.committed_seq
            yield self.env.timeout(lag)
            if seen > shipped_upto:
                self.store.replicate(upto=seen)
                shipped_upto = seen
