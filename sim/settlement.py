"""The settlement worker and the bank partners: the real settlement handlers on sim time.

The worker is a consumer of the "settlement" group (posted payments join open batches), and at
every cut-off it closes and sends each partner's batches (`close_batches`) and ingests the
statements the partner has issued (`ingest_statement`). The partner is the
BankPartnerSimulator with a "day" as long as the cut-off interval, so statements come back
within a run. Statements stay on the partner's side until ingested: the worker's cursor is
volatile, and after a crash (or a ledger failover that may have lost ingestions) it ingests from
the first statement again, which is a no-op for those already reconciled.

Faults: a partner's behaviour (late bookings, duplicate and missing lines, fees, reversals,
statement delay) comes from the topology and can be replaced for a window, or the partner can
be unreachable. The settlement node has its own clock, which a clock-skew fault moves: its
cut-offs fire when its clock (not true time) reaches each cut-off, and it stamps batches with
its clock; the bank keeps true time.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import simpy

from reference_impl.adapters.bank_partner import BankPartnerSimulator, PartnerBehaviour
from reference_impl.core.settlement import SettlementBatch, Statement
from reference_impl.service.ports import LoggedEvent, UnitOfWork
from reference_impl.service.settlement import (
    SETTLEMENT_GROUP,
    SettlementConfig,
    close_batches,
    handle_settlement_events,
    ingest_statement,
)
from scenarios.fault_specs import PartnerChaos
from scenarios.schema import BankPartner, Topology
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


def behaviour(spec: BankPartner | PartnerChaos) -> PartnerBehaviour:
    """The partner's misbehaviour from its topology entry, or from a `partner` fault window."""
    return PartnerBehaviour(
        statement_delay=spec.statement_delay,
        late_probability=spec.late_probability,
        duplicate_line_probability=spec.duplicate_line_probability,
        missing_line_probability=spec.missing_line_probability,
        fee_probability=spec.fee_probability,
        fee_amount=spec.fee_amount,
        reversal_probability=spec.reversal_probability,
    )


class Partner:
    """A bank partner as a fault target: a crash is an outage until the restart, and chaos
    windows replace its behaviour until they end (the latest open window wins)."""

    def __init__(self, sim: BankPartnerSimulator, env: simpy.Environment) -> None:
        self.sim = sim
        self.env = env
        self.base = sim.behaviour
        self.windows: list[PartnerBehaviour] = []
        self.outages = 0
        self.issued: list[Statement] = []

    @property
    def name(self) -> str:
        return self.sim.name

    def submit(self, batch: SettlementBatch, now: float) -> None:
        # The bank books on its own clock, whatever the settlement node's clock says.
        del now
        self.sim.submit(batch, self.env.now)

    def statements(self, now: float) -> list[Statement]:
        del now
        return self.sim.statements(self.env.now)

    def collect(self, now: float) -> None:
        self.issued.extend(self.sim.statements(now))

    def _refresh(self) -> None:
        current = self.windows[-1] if self.windows else self.base
        outage = float("inf") if self.outages else None
        self.sim.behaviour = replace(current, outage_until=outage)

    def crash(self) -> None:
        self.outages += 1
        self._refresh()

    def restart(self) -> None:
        self.outages = max(0, self.outages - 1)
        self._refresh()

    def misbehave(self, window: PartnerBehaviour) -> None:
        self.windows.append(window)
        self._refresh()

    def behave(self, window: PartnerBehaviour) -> None:
        self.windows.remove(window)
        self._refresh()


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
        self.skew = 0.0
        """How far the node's clock is ahead of true time (negative: behind)."""
        self._clock_moved = env.event()
        self.partners = [
            Partner(
                BankPartnerSimulator(
                    b.name, behaviour(b), streams.get(f"partner/{b.name}"), day_length=self.cutoff
                ),
                env,
            )
            for b in topology.bank_partners
        ]
        self.config = SettlementConfig(
            partners=tuple(p.name for p in self.partners),
            partitions=topology.event_log.partitions,
        )
        self.ingested = dict.fromkeys((p.name for p in self.partners), 0)
        self.node.on_crash.append(self._forget)
        ledger.on_failover.append(self._forget)
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

    def adjust_clock(self, delta: float) -> None:
        """Move the node's clock by `delta` seconds; a pending cut-off wait is recomputed."""
        self.skew += delta
        moved, self._clock_moved = self._clock_moved, self.env.event()
        moved.succeed()

    @property
    def now(self) -> float:
        """The settlement node's clock."""
        return self.env.now + self.skew

    def _handle(self, uow: UnitOfWork, events: Sequence[LoggedEvent], now: float) -> None:
        handle_settlement_events(uow, events, now + self.skew, self.config)

    def _forget(self) -> None:
        self.ingested = dict.fromkeys(self.ingested, 0)

    def cutoffs(self) -> Generator[simpy.Event, Any, None]:
        """A cut-off whenever the node's clock reaches a multiple of `cutoff` (a SimPy process
        body). The wait is recomputed after each wake, because the skew may have changed."""
        k = 1
        while True:
            wait = k * self.cutoff - self.now
            if wait > 1e-9:  # not 0: rounding must not turn into an endless run of tiny waits
                yield self.env.timeout(wait) | self._clock_moved
                continue
            self.node.submit(_Cutoff(self))
            k += 1

    def close(self, partner: Partner) -> None:
        with self.ledger.store.unit_of_work() as uow:
            close_batches(uow, self.now, partner, self.config)
            uow.commit()

    def ingest(self, partner: Partner, statement: Statement) -> None:
        with self.ledger.store.unit_of_work() as uow:
            result = ingest_statement(uow, statement, self.now, self.config)
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
                yield w.ledger.call(partial(w.close, partner), origin=w.node)
                partner.collect(env.now)
                while w.ingested[partner.name] < len(partner.issued):
                    statement = partner.issued[w.ingested[partner.name]]
                    yield w.ledger.call(partial(w.ingest, partner, statement), origin=w.node)
                    w.ingested[partner.name] += 1
        except NodeDown:
            return  # the next cut-off sends what this one could not
