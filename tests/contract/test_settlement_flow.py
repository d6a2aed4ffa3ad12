"""The settlement flow end to end, over every store: accept, screen, post, batch, send, reconcile.

Payments go through the gateway's accept and the payments worker, then the settlement consumer,
the cut-off and statement ingestion, as the runtimes drive them. The checks are the settlement
invariants: every posted payment is in exactly one batch, a payment is settled at most once,
batch totals equal statement totals once the breaks are accounted for, and replays are no-ops.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reference_impl.adapters import open_store
from reference_impl.adapters.bank_partner import (
    BankPartnerSimulator,
    MemoryBook,
    PartnerBehaviour,
    PartnerBook,
    StoreBook,
)
from reference_impl.core.events import SETTLEMENTS_TOPIC, decode
from reference_impl.core.ledger import Account, AccountResult, Transfer, TransferResult
from reference_impl.core.payments import PaymentStatus
from reference_impl.core.screening import ScreeningRules
from reference_impl.core.settlement import Break, BreakKind, LineKind, Statement
from reference_impl.runtime.consumer import drain, run_step
from reference_impl.service.accept import PaymentRequest, accept_payment
from reference_impl.service.consumer import Member, Step
from reference_impl.service.groups import Identity
from reference_impl.service.ledger import create_accounts, submit_transfers
from reference_impl.service.members import GroupSettings, payments_member, settlement_member
from reference_impl.service.payments import PAYMENTS_GROUP, PaymentsConfig, get_payment
from reference_impl.service.ports import Store
from reference_impl.service.settlement import (
    SETTLEMENT_GROUP,
    SETTLEMENT_TOPICS,
    SettlementConfig,
    feed_position,
    ingest_statement,
    list_breaks,
    list_settlements,
)

DAY = 100.0
TENANTS = ("acme", "globex")
PARTNERS = ("bank-a", "bank-b")
CREDITORS = [f"cred-{i}" for i in range(8)]


class FlowClock:
    def __init__(self, flow: Flow) -> None:
        self.flow = flow

    def now(self) -> float:
        return self.flow.now


class Flow:
    """Two tenants, two partners, EUR and USD; virtual time in days of DAY seconds.

    The payments and settlement groups run on the consumer engine, one member each, stepped on
    this thread; the cut-off and the statement ingestion are the settlement member's own tasks.
    """

    def __init__(
        self,
        store: Store,
        behaviour: PartnerBehaviour,
        seed: int = 7,
        durable_partner: bool = False,
    ) -> None:
        self.store = store
        self.config = SettlementConfig(partners=PARTNERS)
        self.payments_config = PaymentsConfig()
        self.behaviour = behaviour
        self.seed = seed
        self.books: dict[str, PartnerBook] = {
            name: StoreBook(store, name) if durable_partner else MemoryBook() for name in PARTNERS
        }
        self.rng = random.Random(seed)
        self.now = 1.0
        self.accepted: list[tuple[str, str]] = []
        self.settings = GroupSettings(partitions=self.config.partitions, batch_size=50)
        self.payments = payments_member(
            Identity("payments"),
            FlowClock(self),
            self.settings,
            self.payments_config,
            ScreeningRules(),
        )
        self.restart_settlement()
        for tenant in TENANTS:
            accounts = [Account("mint-EUR", "EUR", True), Account("mint-USD", "USD", True)]
            accounts += [Account(f"debtor-{c}", c) for c in ("EUR", "USD")]
            accounts += [Account(f"{name}-{c}", c) for name in CREDITORS for c in ("EUR", "USD")]
            assert set(create_accounts(store, tenant, accounts)) == {AccountResult.OK}
            funding = [
                Transfer(f"fund-{c}", f"mint-{c}", f"debtor-{c}", 10**9, c) for c in ("EUR", "USD")
            ]
            assert submit_transfers(store, tenant, funding, self.now) == [TransferResult.OK] * 2

    def restart_settlement(self) -> None:
        """A new settlement worker (a new member, new partner clients over the same books)."""
        self.partners = {
            name: BankPartnerSimulator(
                name,
                self.behaviour,
                random.Random(f"{self.seed}:{name}:{self.now}"),
                day_length=DAY,
                book=self.books[name],
            )
            for name in PARTNERS
        }
        self.settlement = settlement_member(
            Identity(f"settlement-{self.now}"),
            FlowClock(self),
            self.settings,
            self.config,
            list(self.partners.values()),
            cutoff=DAY,
            statement_poll=1.0,
        )
        drain(self.store, [self.settlement])  # joins: the claims move at once (leases of 10 s)

    def pay(self, n: int) -> None:
        with self.store.unit_of_work() as uow:
            for _ in range(n):
                tenant = self.rng.choice(TENANTS)
                currency = self.rng.choice(("EUR", "USD"))
                creditor = f"{self.rng.choice(CREDITORS)}-{currency}"
                pid = f"pay-{len(self.accepted):05d}"
                req = PaymentRequest(
                    f"debtor-{currency}", creditor, self.rng.randint(1, 10_000), currency
                )
                answer = accept_payment(
                    uow, tenant, pid, req, pid, pid, self.now, self.payments_config
                )
                assert answer.status_code == 202
                self.accepted.append((tenant, pid))
            uow.commit()

    def member(self, group: str) -> Member:
        return self.payments if group == PAYMENTS_GROUP else self.settlement

    def consume(self, group: str) -> int:
        """Run one consumer group until it is idle; returns the events it handled."""
        member = self.member(group)
        before = member.stats.events
        drain(self.store, [member])
        return member.stats.events - before

    def task(self, name: str) -> None:
        """Run one of the settlement member's tasks now (its own step code)."""
        [task] = [t for t in self.settlement.tasks if t.name == name]
        run_step(self.store, Step(name, task.run(self.settlement)))

    def cut_off(self) -> None:
        self.task("cut-off")

    def ingest(self) -> None:
        self.task("statements")

    @property
    def statements(self) -> list[Statement]:
        return [s for book in self.books.values() for s in book.feed(0)]

    def day(self, payments: int) -> None:
        """A day: payments, processing, a cut-off, then the day's statements next morning."""
        start = (self.now // DAY) * DAY
        self.now = start + 10.0
        self.pay(payments)
        self.now = start + 20.0
        self.consume(PAYMENTS_GROUP)
        self.consume(SETTLEMENT_GROUP)
        self.now = start + 60.0
        self.cut_off()
        self.now = start + DAY + 5.0
        self.ingest()

    # -- reads ----------------------------------------------------------------------------
    def batches(self) -> list[dict[str, Any]]:
        with self.store.unit_of_work() as uow:
            return [b for t in TENANTS for b in list_settlements(uow, t, limit=10_000)]

    def breaks(self) -> list[Break]:
        with self.store.unit_of_work() as uow:
            rows = [b for t in (*TENANTS, "") for b in list_breaks(uow, t, limit=10_000)]
        return [Break(**{**r, "kind": BreakKind(r["kind"])}) for r in rows]

    def statuses(self) -> dict[str, PaymentStatus]:
        with self.store.unit_of_work() as uow:
            found = {pid: get_payment(uow, t, pid) for t, pid in self.accepted}
        return {pid: p.status for pid, p in found.items() if p is not None}

    def settled_events(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        with self.store.unit_of_work() as uow:
            for partition in range(self.config.partitions):
                for logged in uow.read_events(SETTLEMENTS_TOPIC, partition, 0, 1_000_000):
                    if logged.type == "PaymentSettled":
                        counts[decode(logged.type, logged.payload).payment_id] += 1
        return counts

    def snapshot(self) -> tuple[Any, ...]:
        return (self.batches(), self.breaks(), self.statuses(), self.settled_events())


class SettlementFlowContract:
    @pytest.fixture
    def store(self) -> Store:
        raise NotImplementedError

    def test_a_perfect_partner_settles_every_posted_payment_exactly_once(
        self, store: Store
    ) -> None:
        flow = Flow(store, PartnerBehaviour(statement_delay=2.0))
        for _ in range(3):
            flow.day(40)
        flow.day(0)  # the last day's statements
        statuses = flow.statuses()
        assert set(statuses.values()) == {PaymentStatus.SETTLED}
        batches = flow.batches()
        in_batches = Counter(pid for b in batches for pid in b["payment_ids"])
        assert set(in_batches) == set(statuses) and set(in_batches.values()) == {1}
        assert {b["status"] for b in batches} == {"reconciled"}
        assert all(
            b["total"] == sum(b["amounts"]) and b["count"] == len(b["amounts"]) for b in batches
        )
        # One batch per (tenant, partner, currency) and day at most; per day and lane, netted.
        lanes = Counter((b["tenant"], b["partner"], b["currency"], b["sent_at"]) for b in batches)
        assert set(lanes.values()) == {1}
        credits = sum(ln.amount for s in flow.statements for ln in s.lines)
        assert credits == sum(b["total"] for b in batches)
        assert flow.breaks() == []
        assert flow.settled_events() == Counter(set(statuses))

    def test_redelivered_events_and_replayed_statements_change_nothing(self, store: Store) -> None:
        flow = Flow(
            store,
            PartnerBehaviour(duplicate_line_probability=0.2, fee_probability=0.2, fee_amount=1),
        )
        flow.day(30)
        flow.day(0)
        before = flow.snapshot()
        assert before[1], "the replay should cover breaks too"
        with store.unit_of_work() as uow:
            for partition in range(flow.config.partitions):
                for topic in SETTLEMENT_TOPICS:
                    uow.set_offset(SETTLEMENT_GROUP, topic, partition, 0)
            uow.commit()
        assert flow.consume(SETTLEMENT_GROUP) > 0
        flow.cut_off()
        for statement in flow.statements:
            with store.unit_of_work() as uow:
                result = ingest_statement(uow, statement, flow.now + 1, flow.config)
                uow.commit()
            assert result.replayed and result.statement_id == statement.id
        assert flow.snapshot() == before

    def test_a_misbehaving_partner_yields_every_break_kind_and_money_still_adds_up(
        self, store: Store
    ) -> None:
        behaviour = PartnerBehaviour(
            statement_delay=3.0,
            late_probability=0.3,
            duplicate_line_probability=0.05,
            missing_line_probability=0.05,
            fee_probability=0.05,
            fee_amount=25,
            reversal_probability=0.05,
        )
        flow = Flow(store, behaviour)
        for _ in range(4):
            flow.day(50)
        flow.day(0)
        flow.day(0)  # late bookings and reversals land a day later
        breaks = flow.breaks()
        open_breaks = [b for b in breaks if not b.resolved_by]
        kinds = Counter(b.kind for b in breaks)
        for kind in (
            BreakKind.MISSING,
            BreakKind.DUPLICATE,
            BreakKind.AMOUNT,
            BreakKind.TIMING,
            BreakKind.REVERSAL,
        ):
            assert kinds[kind] > 0, f"no {kind} break"
        assert kinds[BreakKind.UNKNOWN] == 0
        # A late booking first shows as missing, then as timing, which resolves it.
        assert any(b.kind is BreakKind.MISSING and b.resolved_by for b in breaks)
        batches = flow.batches()
        lines = [ln for s in flow.statements for ln in s.lines if ln.kind is not LineKind.FEE]
        assert sum(b["total"] for b in batches) == sum(ln.amount for ln in lines) - sum(
            b.difference for b in open_breaks
        )
        settled = flow.settled_events()
        assert set(settled.values()) == {1}
        statuses = flow.statuses()
        assert {p for p, s in statuses.items() if s is PaymentStatus.SETTLED} == set(settled)
        never_credited = {b.payment_id for b in open_breaks if b.kind is BreakKind.MISSING}
        assert never_credited and all(statuses[p] is PaymentStatus.POSTED for p in never_credited)
        credited = {ln.end_to_end_id for ln in lines if ln.kind is LineKind.CREDIT}
        assert credited == set(settled)

    def test_an_unreachable_partner_gets_the_batch_at_a_later_cut_off_once(
        self, store: Store
    ) -> None:
        flow = Flow(store, PartnerBehaviour(outage_until=150.0))
        flow.now = 10.0
        flow.pay(10)
        flow.consume(PAYMENTS_GROUP)
        flow.consume(SETTLEMENT_GROUP)
        flow.now = 60.0
        flow.cut_off()
        closed = flow.batches()
        assert closed and {b["status"] for b in closed} == {"closed"}
        flow.now = 160.0
        flow.ingest()
        assert flow.statements == []  # it booked nothing while unreachable
        flow.cut_off()
        sent = flow.batches()
        assert {b["id"] for b in sent} == {b["id"] for b in closed}
        assert {b["status"] for b in sent} == {"sent"} and {b["sent_at"] for b in sent} == {160.0}
        flow.now = 170.0
        flow.cut_off()
        assert flow.batches() == sent
        flow.now = 205.0
        flow.ingest()
        assert set(flow.statuses().values()) == {PaymentStatus.SETTLED}
        assert flow.breaks() == []

    def test_a_restarted_worker_reingests_the_durable_feed_and_reconciles_everything(
        self, store: Store
    ) -> None:
        flow = Flow(store, PartnerBehaviour(statement_delay=2.0), durable_partner=True)
        flow.day(30)  # ingested
        flow.now += 50.0
        flow.pay(30)
        flow.consume(PAYMENTS_GROUP)
        flow.consume(SETTLEMENT_GROUP)
        flow.now += 10.0
        flow.cut_off()  # sent; the partner books them durably
        flow.now = 3 * DAY + 5.0
        flow.restart_settlement()  # the worker (and its partner clients) restart before ingesting
        flow.ingest()
        statuses = flow.statuses()
        assert set(statuses.values()) == {PaymentStatus.SETTLED}
        assert {b["status"] for b in flow.batches()} == {"reconciled"}
        assert flow.breaks() == []
        assert flow.settled_events() == Counter(set(statuses))
        before = flow.snapshot()
        flow.now += 20.0  # past the old member's lease
        flow.restart_settlement()
        assert flow.settlement.holds_group
        flow.ingest()  # nothing new in the feed: nothing is ingested twice
        assert flow.snapshot() == before
        with store.unit_of_work() as uow:
            positions = {name: feed_position(uow, name) for name in PARTNERS}
        assert positions == {name: len(book.feed(0)) for name, book in flow.books.items()}

    def test_a_batch_with_a_missing_line_stays_sent(self, store: Store) -> None:
        flow = Flow(store, PartnerBehaviour(missing_line_probability=0.3))
        flow.day(20)
        flow.day(0)
        missing = {b.payment_id for b in flow.breaks() if b.kind is BreakKind.MISSING}
        assert missing
        for batch in flow.batches():
            short = missing & set(batch["payment_ids"])
            assert batch["status"] == ("sent" if short else "reconciled"), batch["id"]


class TestMemorySettlementFlow(SettlementFlowContract):
    @pytest.fixture
    def store(self) -> Store:
        return open_store("memory://")


class TestSqliteSettlementFlow(SettlementFlowContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[Store]:
        store = open_store(f"sqlite:///{tmp_path}/settlement.db")
        yield store
        store.close()


@pytest.mark.postgres
class TestPostgresSettlementFlow(SettlementFlowContract):
    @pytest.fixture
    def store(self, postgres_url: str) -> Iterator[Store]:
        store = open_store(postgres_url)
        yield store
        store.close()
