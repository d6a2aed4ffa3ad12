"""The sim's side of the bug zoo: the broken variants that are about the store and time.

Most zoo bugs are switches in the service handlers (reference_impl/bugs.py), and the consumer
bugs (`commit-offset-before-effect`, `non-idempotent-consumer`, `double-compensation`) are
strategies of the shared consumer engine (reference_impl/service/consumer_bugs.py), so both
runtimes run them. A few break the store itself, which in the sim is the MemoryStore, so the
sim's composition root asks this module to fit them when the scenario selects them:

- `ack-before-durable`: the store acknowledges commits before they are durable and syncs them
  only every `SYNC_INTERVAL`; a ledger crash loses what was acknowledged since the last sync.
- `async-replication-failover`: the ledger replicates asynchronously whatever the scenario says,
  so a failover loses the acknowledged commits the replica had not received.
- `lost-update`: the store serves account reads from a view refreshed every `READ_INTERVAL`,
  so commits inside one interval read-modify-write the same balance (see the memory store).

Every other path is untouched when no bug is selected.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import simpy

from reference_impl.adapters.memory import MemoryStore
from scenarios.schema import Ledger
from sim.ledger import LedgerNode

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
