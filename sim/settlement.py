"""The settlement worker and the bank partners: the real settlement handlers on sim time.

The worker is a consumer of the "settlement" group (posted payments join open batches), and at
every cut-off it closes and sends each partner's batches (`close_batches`) and ingests the
statements the partner has issued (`ingest_statement`). The partner is the
BankPartnerSimulator with a "day" as long as the cut-off interval, so statements come back
within a run. Statements stay on the partner's side until ingested: the worker's cursor is
volatile, and after a crash it ingests from the first statement again, which is a no-op for
those already reconciled.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import simpy

from reference_impl.adapters.bank_partner import BankPartnerSimulator, PartnerBehaviour
from reference_impl.core.settlement import Statement
from reference_impl.service.ports import LoggedEvent, UnitOfWork
from reference_impl.service.settlement import (
    SETTLEMENT_GROUP,
    SettlementConfig,
    close_batches,
    handle_settlement_events,
    ingest_statement,
)
from scenarios.schema import Topology
from sim.eventlog import ConsumerGroup
from sim.ledger import LedgerNode
from sim.network import Network
from sim.node import Job, JobRun, Node, NodeDown
from sim.rng import Streams
from sim.service_times import ServiceTimes

Settled = Callable[[list[str]], None]

FETCH_LINGER = 0.5
"""Seconds between a settlement consumer's fetches from one partition: settlement runs at
cut-offs seconds apart, so it takes few large batches rather than many small ones."""


class Partner:
    """A bank partner as a fault target: a crash is an outage until the restart."""

    def __init__(self, sim: BankPartnerSimulator) -> None:
        self.sim = sim
        self.issued: list[Statement] = []

    @property
    def name(self) -> str:
        return self.sim.name

    def collect(self, now: float) -> None:
        self.issued.extend(self.sim.statements(now))

    def crash(self) -> None:
        self.sim.behaviour = replace(self.sim.behaviour, outage_until=float("inf"))

    def restart(self) -> None:
        self.sim.behaviour = replace(self.sim.behaviour, outage_until=None)


class SettlementWorker:
    def __init__(
        self,
        env: simpy.Environment,
        topology: Topology,
        ledger: LedgerNode,
        network: Network,
        times: ServiceTimes,
        streams: Streams,
        settled: Settled,
    ) -> None:
        self.env = env
        self.ledger = ledger
        self.network = network
        self.times = times
        self.rng = streams.get("settlement")
        self.settled = settled
        self.cutoff = topology.settlement.cutoff
        zones = topology.zones
        self.node = Node(env, "settlement", "settlement", zones[-1], 1)
        self.partners = [
            Partner(
                BankPartnerSimulator(
                    b.name,
                    PartnerBehaviour(statement_delay=b.statement_delay),
                    streams.get(f"partner/{b.name}"),
                    day_length=self.cutoff,
                )
            )
            for b in topology.bank_partners
        ]
        self.config = SettlementConfig(
            partners=tuple(p.name for p in self.partners),
            partitions=topology.event_log.partitions,
        )
        self.ingested = dict.fromkeys((p.name for p in self.partners), 0)
        self.node.on_crash.append(self._forget)
        self.group = ConsumerGroup(
            env,
            SETTLEMENT_GROUP,
            topology.event_log.partitions,
            [self.node],
            ledger,
            network,
            self._handle,
            times.settlement_batch,
            1024,
            topology.payments.session_timeout,
            streams.get("settlement/consumer"),
            linger=FETCH_LINGER,
        )

    def _handle(self, uow: UnitOfWork, events: Sequence[LoggedEvent], now: float) -> None:
        handle_settlement_events(uow, events, now, self.config)

    def _forget(self) -> None:
        self.ingested = dict.fromkeys(self.ingested, 0)

    def cutoffs(self) -> Generator[simpy.Event, Any, None]:
        """A cut-off every `cutoff` seconds (a SimPy process body)."""
        k = 0
        while True:
            k += 1
            yield self.env.timeout(k * self.cutoff - self.env.now)
            self.node.submit(_Cutoff(self))

    def close(self, partner: Partner) -> None:
        with self.ledger.store.unit_of_work() as uow:
            close_batches(uow, self.env.now, partner.sim, self.config)
            uow.commit()

    def ingest(self, partner: Partner, statement: Statement) -> None:
        with self.ledger.store.unit_of_work() as uow:
            result = ingest_statement(uow, statement, self.env.now, self.config)
            uow.commit()
        if not result.replayed:
            self.settled([s.payment_id for s in result.settled])


class _Cutoff(Job):
    __slots__ = ("worker",)

    def __init__(self, worker: SettlementWorker) -> None:
        super().__init__()
        self.worker = worker

    def run(self) -> JobRun:
        w = self.worker
        env = w.env
        yield env.timeout(w.times.settlement_close.sample(w.rng))
        try:
            for partner in w.partners:
                yield w.ledger.call(partial(w.close, partner))
                partner.collect(env.now)
                while w.ingested[partner.name] < len(partner.issued):
                    statement = partner.issued[w.ingested[partner.name]]
                    yield w.ledger.call(partial(w.ingest, partner, statement))
                    w.ingested[partner.name] += 1
        except NodeDown:
            return  # the next cut-off sends what this one could not
