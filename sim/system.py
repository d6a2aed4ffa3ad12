"""The sim's composition root: one scenario and one seed in, a wired system of nodes out.

Builds the ledger, gateway replicas, the consumer groups the real runtime runs (payments,
settlement with its bank partners, reporting) on the shared consumer engine, clients and faults
on one SimPy environment, opens and funds the accounts, and keeps the one piece of bookkeeping
the run loop needs: which payments are not terminal yet (so the drain knows when to stop).
Everything random draws from a stream of the one seed.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import simpy

from reference_impl.bugs import enabled
from reference_impl.core.events import (
    PAYMENTS_TOPIC,
    TOPIC_OF,
    PaymentEvent,
    PaymentFailed,
    PaymentHeld,
    PaymentRejected,
    PaymentSettled,
    event_key,
)
from reference_impl.core.ledger import Account, Transfer
from reference_impl.core.payments import AT_REST
from reference_impl.core.screening import ScreeningRules
from reference_impl.service.accept import Acceptance
from reference_impl.service.checkers import SanctionsCheck
from reference_impl.service.checks import Checker
from reference_impl.service.compliance import CHECK_TOPICS
from reference_impl.service.consumer import Member
from reference_impl.service.groups import Identity
from reference_impl.service.ledger import create_accounts, submit_transfers
from reference_impl.service.members import (
    GroupSettings,
    check_member,
    payments_member,
    reporting_member,
)
from reference_impl.service.payments import (
    CHECKED_TOPICS,
    PAYMENTS_GROUP,
    PAYMENTS_TOPICS,
    PaymentsConfig,
    get_payment,
)
from reference_impl.service.ports import Clock, partition_for
from reference_impl.service.projector import REPORTING_GROUP, REPORTING_TOPICS
from reference_impl.service.settlement import SETTLEMENT_GROUP, SETTLEMENT_TOPICS
from scenarios.fraud import fraud_schedule
from scenarios.schema import Scenario
from scenarios.workload import account_ids, tenant_ids
from sim import zoo
from sim.clients import Attempt, Clients
from sim.consumers import FlakyScreen, PartitionLag, ProviderCalls, SimGroup
from sim.faults import FaultInjector
from sim.gateway import Gateway
from sim.ledger import LedgerNode
from sim.network import Network
from sim.node import Node, NodeSample, on_core
from sim.rng import Streams
from sim.service_times import DEFAULTS, ServiceTimes
from sim.settlement import SettlementWorker

FUNDING_ACCOUNT = "funding"
"""Each tenant's overdraft account that funds the initial balances (no payment behind it)."""
REPORTING_BATCH = 256


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
        checks = scenario.checks
        self.checkers: list[Checker] = []
        if checks.on:  # the watch list, rapidfuzz and the model only where checks run
            from reference_impl.compliance import build_checkers

            self.checkers = build_checkers(checks.settings())
            times = times.scoring(self.checkers)
        calls = None
        if checks.on and checks.provider is not None and "sanctions" in checks.run:
            p = checks.provider
            calls = ProviderCalls(p.latency, p.error_rate, streams.get("provider"))
            self.checkers = [
                SanctionsCheck(FlakyScreen(c.screen, calls)) if isinstance(c, SanctionsCheck) else c
                for c in self.checkers
            ]
        self.config = PaymentsConfig(self.partitions, bugs=self.bugs, checks=checks.config())
        if checks.on and checks.mode == "sequential":
            times = times.inline_checks(checks.run)
        self.screening = ScreeningRules()
        self.network = Network(env, times, streams.get("network"))
        ledger_spec = zoo.ledger_spec(topo.ledger, self.bugs)
        self.ledger = LedgerNode(env, ledger_spec, zones, self.network, times, streams)
        zoo.fit_store(self.ledger, self.bugs)
        self.open_payments: dict[str, str] = {}
        """Accepted payments not known to be terminal: id -> tenant."""

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
        self.settings = GroupSettings(
            self.partitions, topo.payments.batch, topo.payments.session_timeout
        )
        self.woken_by_commits = times.consumer_poll == 0
        if not self.woken_by_commits:
            self.settings = replace(self.settings, idle_poll=times.consumer_poll)

        def group(name: str, topics: Sequence[str], nodes: Sequence[Node], build: Any) -> SimGroup:
            return SimGroup(
                env,
                name,
                topics,
                nodes,
                self.ledger,
                self.network,
                times,
                streams.get,
                build,
                self.partitions,
                clock=self.settlement.clock if name == SETTLEMENT_GROUP else None,
            )

        self.settlement = SettlementWorker(env, topo, streams.get, self.settings)
        self.projector = Node(env, "projector", "projector", zones[-1], 1)
        # With the checks in parallel the payments members also read (and are woken by) the
        # checks' decisions, as in the real runtime.
        parallel = checks.on and checks.mode == "parallel"
        payment_topics = CHECKED_TOPICS if parallel else PAYMENTS_TOPICS
        self.payments = group(PAYMENTS_GROUP, payment_topics, self.consumers, self._payments)
        self.settlement_group = group(
            SETTLEMENT_GROUP, SETTLEMENT_TOPICS, [self.settlement.node], self._settlement
        )
        self.reporting = group(REPORTING_GROUP, REPORTING_TOPICS, [self.projector], self._reporting)
        self.groups = [self.payments, self.settlement_group, self.reporting]
        self.check_nodes: list[Node] = []
        if checks.on and checks.mode == "parallel":
            for checker in self.checkers:
                nodes = [
                    Node(env, f"{checker.name}-{i + 1}", checker.name, zone(i), 1)
                    for i in range(checks.workers)
                ]
                self.check_nodes += nodes
                build = partial(self._check, checker)
                self.groups.append(group(checker.name, CHECK_TOPICS, nodes, build))
        if calls is not None:  # who calls the provider pays its latency
            caller = self.payments
            if checks.mode == "parallel":
                caller = next(g for g in self.groups if g.name == "sanctions")
            caller.provider = calls
        self.settlement.on_clock_change.append(self.settlement_group.wake_all)
        self.gateway = Gateway(
            self.gateways,
            self.ledger,
            self.network,
            times,
            streams.get("gateway"),
            self.config,
            self._accepted,
            topo.gateway.rate_limit,
        )
        self.clients = Clients(
            env,
            scenario.workload,
            streams.get("arrivals"),
            streams.get("retries"),
            self._client_route(times),
        )
        self.gateway.clients = self.clients
        self.nodes: list[Node] = [
            *self.gateways,
            *self.consumers,
            self.ledger.node,
            self.settlement.node,
            self.projector,
            *self.check_nodes,
        ]
        self.faults = FaultInjector(self)
        self._open_accounts()

    def _client_route(self, times: ServiceTimes) -> Callable[[Attempt], None]:
        """How a client's attempt reaches the gateway. With `host_cores`, every node but the
        ledger shares one host's cores (a load run on one machine), and so does the load
        generator: each attempt first costs it `client_cpu` on those cores."""
        route = self.gateway.route
        if not times.host_cores:
            return route
        env, host = self.env, simpy.Resource(self.env, capacity=times.host_cores)
        for node in (
            *self.gateways,
            *self.consumers,
            self.settlement.node,
            self.projector,
            *self.check_nodes,
        ):
            node.host = host
        if not times.client_cpu:
            return route

        def from_host(attempt: Attempt) -> None:
            env.process(on_core(env, host, times.client_cpu))
            route(attempt)

        return from_host

    # -- the members, as the real runtime builds them (reference_impl/service/members.py) ----
    def _payments(self, identity: Identity, clock: Clock) -> Member:
        inline = self.checkers if self.config.checks.mode == "sequential" else ()
        return payments_member(
            identity, clock, self.settings, self.config, self.screening, self._committed, inline
        )

    def _check(self, checker: Checker, identity: Identity, clock: Clock) -> Member:
        return check_member(identity, clock, self.settings, checker, self.config, self._committed)

    def _settlement(self, identity: Identity, clock: Clock) -> Member:
        return self.settlement.member(identity, clock, self._committed)

    def _reporting(self, identity: Identity, clock: Clock) -> Member:
        settings = self.settings
        return reporting_member(
            identity,
            clock,
            replace(settings, batch_size=REPORTING_BATCH),
            self._committed,
            purge_tenants=tenant_ids(self.scenario.workload.tenants),
        )

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
        tenant = key.split("/", 1)[0]
        self.open_payments[str(acceptance.body["id"])] = tenant
        self._appended(PAYMENTS_TOPIC, partition_for(key, self.partitions))

    def _committed(self, emitted: Sequence[PaymentEvent]) -> None:
        """After a commit that appended events: wake their consumers, close terminal ones."""
        touched: set[tuple[str, int]] = set()
        for event in emitted:
            touched.add(
                (TOPIC_OF[type(event).__name__], partition_for(event_key(event), self.partitions))
            )
            if isinstance(event, PaymentRejected | PaymentFailed | PaymentSettled | PaymentHeld):
                self.open_payments.pop(event.payment_id, None)
        for topic, partition in sorted(touched):
            self._appended(topic, partition)

    def _appended(self, topic: str, partition: int) -> None:
        if not self.woken_by_commits:  # the consumers find it at their next poll
            return
        for group in self.groups:
            group.appended(topic, partition)

    # -- processes ------------------------------------------------------------------------
    def start(
        self,
        duration: float,
        sample_interval: float,
        samples: list[NodeSample],
        lags: list[PartitionLag],
    ) -> None:
        env = self.env
        env.process(self.clients.arrivals(duration))
        if self.scenario.workload.fraud is not None:
            schedule = fraud_schedule(self.scenario.workload, duration, self.streams.get("fraud"))
            env.process(self.clients.fraud_arrivals(schedule))
        env.process(self.clients.timeout_watcher())
        zoo.start(self)
        if self.scenario.topology.ledger.replicas and self.ledger.spec.replication == "async":
            env.process(self.ledger.replicator())
        env.process(self._sampler(sample_interval, samples, lags))
        self.faults.schedule(self.scenario.faults, duration)

    def _sampler(
        self, interval: float, samples: list[NodeSample], lags: list[PartitionLag]
    ) -> Generator[simpy.Event, Any, None]:
        """Every `interval`: each node's sample, and each group's lag (read as an observer
        reads the store, outside the sim's time and failures)."""
        while True:
            yield self.env.timeout(interval)
            by_node = {node.name: node.sample(interval) for node in self.nodes}
            with self.ledger.store.unit_of_work() as uow:
                for group in self.groups:
                    lags += group.observe(uow, by_node, interval)
            samples += by_node.values()

    @property
    def settled_everything(self) -> bool:
        """Every request answered or given up, and every accepted payment terminal."""
        if self.clients.open_requests:
            return False
        if self.open_payments:
            # A commit whose answer was lost (or that survived a failed fsync) told nobody
            # what it emitted, so the store, not the notifications, says what is still open.
            # Payments end roughly in the order they were accepted (the dict's order), so the
            # check stops at the first one still open instead of reading every open payment
            # on every drain step (it was a quarter of a run's time).
            ended = []
            with self.ledger.store.unit_of_work() as uow:
                for pid, tenant in self.open_payments.items():
                    p = get_payment(uow, tenant, pid)
                    if p is None or p.status not in AT_REST:
                        break
                    ended.append(pid)
            for pid in ended:
                del self.open_payments[pid]
        return not self.open_payments
