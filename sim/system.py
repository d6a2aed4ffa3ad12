"""The sim's composition root: one scenario and one seed in, a wired system of nodes out.

Builds the ledger, gateway replicas, payments consumers, settlement worker and bank partners,
clients and faults on one SimPy environment, opens and funds the accounts, and keeps the one
piece of bookkeeping the run loop needs: which payments are not terminal yet (so the drain knows
when to stop). Everything random draws from a stream of the one seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import simpy

from reference_impl.bugs import enabled
from reference_impl.core.events import (
    PaymentEvent,
    PaymentFailed,
    PaymentRejected,
    decode,
    event_key,
)
from reference_impl.core.ledger import Account, Transfer
from reference_impl.core.screening import ScreeningRules
from reference_impl.service.accept import Acceptance
from reference_impl.service.ledger import create_accounts, submit_transfers
from reference_impl.service.payments import (
    PAYMENTS_GROUP,
    PaymentsConfig,
    commit_offset,
    fail_payment,
    handle_payment_events,
)
from reference_impl.service.ports import LoggedEvent, UnitOfWork, partition_for
from scenarios.schema import Scenario
from sim import zoo
from sim.clients import Clients, account_ids, tenant_ids
from sim.eventlog import ConsumerGroup
from sim.faults import FaultInjector
from sim.gateway import Gateway
from sim.ledger import LedgerNode
from sim.network import Network
from sim.node import Node, NodeSample
from sim.rng import Streams
from sim.service_times import DEFAULTS, ServiceTimes
from sim.settlement import SettlementWorker

FUNDING_ACCOUNT = "funding"
"""Each tenant's overdraft account that funds the initial balances (no payment behind it)."""


class System:
    def __init__(self, scenario: Scenario, seed: int, times: ServiceTimes = DEFAULTS) -> None:
        self.scenario = scenario
        self.seed = seed
        self.env = env = simpy.Environment()
        self.streams = streams = Streams(seed)
        topo = scenario.topology
        zones = list(topo.zones)
        self.partitions = topo.event_log.partitions
        self.bugs = enabled(scenario.bugs)
        self.config = PaymentsConfig(partitions=self.partitions, bugs=self.bugs)
        self.screening = ScreeningRules()
        self.network = Network(env, times, streams.get("network"))
        ledger_spec = zoo.ledger_spec(topo.ledger, self.bugs)
        self.ledger = LedgerNode(env, ledger_spec, zones, self.network, times, streams)
        zoo.fit_store(self.ledger, self.bugs)

        def zone(i: int) -> str:
            return zones[i % len(zones)]

        self.gateways = [
            Node(env, f"gateway-{i + 1}", "gateway", zone(i), topo.gateway.workers)
            for i in range(topo.gateway.replicas)
        ]
        self.consumers = [
            Node(env, f"payments-{i + 1}", "payments", zone(i), 1)
            for i in range(topo.payments.workers)
        ]
        self._emitted: list[PaymentEvent] = []
        self.payments = ConsumerGroup(
            env,
            PAYMENTS_GROUP,
            self.partitions,
            self.consumers,
            self.ledger,
            self.network,
            self._handle_payments,
            times.payments_batch,
            topo.payments.batch,
            topo.payments.session_timeout,
            streams.get("payments/consumer"),
        )
        self.payments.give_up = self._give_up
        self.payments.on_commit.append(self._publish)
        self.settlement = SettlementWorker(
            env, topo, self.ledger, self.network, times, streams, self._settled
        )
        self.groups = [self.payments, self.settlement.group]
        self.gateway = Gateway(
            self.gateways,
            self.ledger,
            self.network,
            times,
            streams.get("gateway"),
            self.config,
            self._accepted,
        )
        self.clients = Clients(
            env,
            scenario.workload,
            streams.get("arrivals"),
            streams.get("retries"),
            self.gateway.route,
        )
        self.gateway.clients = self.clients
        self.open_payments: set[str] = set()
        self.nodes: list[Node] = [
            *self.gateways,
            *self.consumers,
            self.ledger.node,
            self.settlement.node,
        ]
        self.faults = FaultInjector(self)
        zoo.install(self)
        self._open_accounts()

    # -- set-up ---------------------------------------------------------------------------
    def _open_accounts(self) -> None:
        w = self.scenario.workload
        store = self.ledger.store
        for tenant in tenant_ids(w.tenants):
            ids = account_ids(w.accounts)
            accounts = [Account(FUNDING_ACCOUNT, w.currency, overdraft=True, holder_name="funding")]
            accounts += [Account(i, w.currency, holder_name=f"holder {i}") for i in ids]
            create_accounts(store, tenant, accounts)
            if w.initial_balance:
                funding = [
                    Transfer(f"fund:{i}", FUNDING_ACCOUNT, i, w.initial_balance, w.currency)
                    for i in ids
                ]
                for start in range(0, len(funding), 1000):
                    submit_transfers(store, tenant, funding[start : start + 1000], 0.0)

    # -- the flow between handlers --------------------------------------------------------
    def _accepted(self, acceptance: Acceptance, key: str) -> None:
        self.open_payments.add(str(acceptance.body["id"]))
        partition = partition_for(key, self.partitions)
        for group in self.groups:
            group.notify(partition)

    def _handle_payments(self, uow: UnitOfWork, events: Sequence[LoggedEvent], now: float) -> None:
        self._emitted += handle_payment_events(uow, events, self.screening, now, self.config)

    def _give_up(self, uow: UnitOfWork, event: LoggedEvent, reason: str, now: float) -> None:
        """The runtime's compensation (runtime/workers.py): fail the payment, move past it."""
        self.compensate(uow, event, reason, now)
        commit_offset(uow, [event])

    def compensate(self, uow: UnitOfWork, event: LoggedEvent, reason: str, now: float) -> None:
        """`fail_payment` for the payment `event` is about (a no-op once it is terminal)."""
        e = decode(event.type, event.payload)
        failed = fail_payment(uow, e.tenant, e.payment_id, reason, now, self.config)
        if failed is not None:
            self._emitted.append(
                PaymentFailed(failed.id, failed.tenant, failed.debtor_account, now, reason)
            )

    def _publish(self) -> None:
        """After a payments commit: wake the consumers of what it appended, close refusals."""
        emitted, self._emitted = self._emitted, []
        touched: set[int] = set()
        for event in emitted:
            touched.add(partition_for(event_key(event), self.partitions))
            if isinstance(event, PaymentRejected | PaymentFailed):
                self.open_payments.discard(event.payment_id)
        for partition in sorted(touched):
            for group in self.groups:
                group.notify(partition)

    def _settled(self, payment_ids: list[str]) -> None:
        for pid in payment_ids:
            self.open_payments.discard(pid)
        # PaymentSettled events went to the outbox: nobody in the sim consumes them yet, but
        # the consumers must still move past them.
        for partition in range(self.partitions):
            for group in self.groups:
                group.notify(partition)

    # -- processes ------------------------------------------------------------------------
    def start(self, duration: float, sample_interval: float, samples: list[NodeSample]) -> None:
        env = self.env
        env.process(self.clients.arrivals(duration))
        env.process(self.clients.timeout_watcher())
        env.process(self.settlement.cutoffs())
        zoo.start(self)
        if self.scenario.topology.ledger.replicas and self.ledger.spec.replication == "async":
            env.process(self.ledger.replicator())
        for node in self.nodes:
            env.process(node.sampler(sample_interval, samples))
        self.faults.schedule(self.scenario.faults, duration)

    @property
    def settled_everything(self) -> bool:
        return not self.open_payments and self.clients.open_requests == 0
