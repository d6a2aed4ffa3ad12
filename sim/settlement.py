"""The settlement worker's node and the bank partners, on sim time.

The worker is a member of the exclusive "settlement" group on the shared consumer engine
(reference_impl/service/members.py): it batches posted payments, and as its tasks it runs the
cut-off (close, submit to the partner, mark sent) and ingests the partner's statement feed from
the position it had reached, which the store keeps, so a crash of the worker or a ledger
failover that lost ingestions re-ingests what is not reconciled. The partner is the
BankPartnerSimulator with a "day" as long as the cut-off interval, so statements come back
within a run; its book and feed are its own (a separate node's memory) and survive the worker.

Faults: a partner's behaviour (late bookings, duplicate and missing lines, fees, reversals,
statement delay) comes from the topology and can be replaced for a window, or the partner can
be unreachable. The settlement node has its own clock, which a clock-skew fault moves: its
cut-offs fire when its clock (not true time) reaches each multiple of the cut-off interval, and
it stamps batches with its clock; the bank keeps true time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import simpy

from reference_impl.adapters.bank_partner import BankPartnerSimulator, MemoryBook, PartnerBehaviour
from reference_impl.core.settlement import SettlementBatch, Statement
from reference_impl.service.consumer import Member
from reference_impl.service.groups import Identity
from reference_impl.service.members import GroupSettings, settlement_member
from reference_impl.service.ports import Clock
from reference_impl.service.settlement import SettlementConfig
from scenarios.fault_specs import PartnerChaos
from scenarios.schema import BankPartner, Topology
from sim.consumers import SimClock
from sim.node import Node

STATEMENT_POLL = 1.0
"""Seconds between the worker's reads of the partners' statement feeds (as in real processes)."""


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
    windows replace its behaviour until they end (the latest open window wins). It books on
    true time, whatever the settlement node's clock says."""

    def __init__(self, sim: BankPartnerSimulator, env: simpy.Environment) -> None:
        self.sim = sim
        self.env = env
        self.base = sim.behaviour
        self.windows: list[PartnerBehaviour] = []
        self.outages = 0

    @property
    def name(self) -> str:
        return self.sim.name

    @property
    def issued(self) -> list[Statement]:
        """Every statement of the feed (for the run record)."""
        return self.sim.book.feed(0)

    def submit(self, batch: SettlementBatch, now: float) -> None:
        del now
        self.sim.submit(batch, self.env.now)

    def statements_after(self, position: int, now: float) -> list[Statement]:
        del now
        return self.sim.statements_after(position, self.env.now)

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
    """The settlement node, its skewable clock, its partners, and how to build its member."""

    def __init__(
        self,
        env: simpy.Environment,
        topology: Topology,
        streams: Callable[[str], Any],
        settings: GroupSettings,
    ) -> None:
        self.env = env
        self.cutoff = topology.settlement.cutoff
        self.node = Node(env, "settlement", "settlement", topology.zones[-1], 1)
        self.clock = SimClock(env)
        self.on_clock_change: list[Callable[[], None]] = []
        self.partners = [
            Partner(
                BankPartnerSimulator(
                    b.name,
                    behaviour(b),
                    streams(f"partner/{b.name}"),
                    day_length=self.cutoff,
                    book=MemoryBook(),
                ),
                env,
            )
            for b in topology.bank_partners
        ]
        self.config = SettlementConfig(
            partners=tuple(p.name for p in self.partners),
            partitions=topology.event_log.partitions,
        )
        self.settings = replace(settings, batch_size=1024)

    def adjust_clock(self, delta: float) -> None:
        """Move the node's clock by `delta` seconds; a pending cut-off wait is recomputed."""
        self.clock.skew += delta
        for hook in self.on_clock_change:
            hook()

    @property
    def now(self) -> float:
        """The settlement node's clock."""
        return self.clock.now()

    def member(
        self, identity: Identity, clock: Clock, on_commit: Callable[[Sequence[Any]], None]
    ) -> Member:
        return settlement_member(
            identity,
            clock,
            self.settings,
            self.config,
            self.partners,
            self.cutoff,
            STATEMENT_POLL,
            on_commit,
        )
