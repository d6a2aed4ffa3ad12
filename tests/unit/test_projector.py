"""The reporting projector: read models from the event log, exactly once, and their check."""

from __future__ import annotations

import json

import pytest

from reference_impl.adapters.memory import MemoryStore
from reference_impl.core.events import PAYMENTS_TOPIC, TOPICS
from reference_impl.core.ledger import Account, Transfer
from reference_impl.core.screening import ScreeningRules
from reference_impl.runtime.consumer import drain
from reference_impl.service.accept import PaymentRequest, accept_payment
from reference_impl.service.consumer import Member
from reference_impl.service.groups import Identity
from reference_impl.service.ledger import create_accounts, submit_transfers
from reference_impl.service.members import GroupSettings, payments_member, reporting_member
from reference_impl.service.payments import (
    PAYMENTS_GROUP,
    PAYMENTS_TOPICS,
    PaymentsConfig,
    fail_payment,
    handle_payment_events,
)
from reference_impl.service.ports import LoggedEvent, UnitOfWork
from reference_impl.service.projector import (
    BALANCE,
    REPORTING_GROUP,
    check_read_models,
    group_lag,
    handle_reporting_events,
    read_models,
)

CONFIG = PaymentsConfig(partitions=4)
DAY1 = 1_700_000_000.0  # 2023-11-14 UTC
DAY2 = DAY1 + 86_400.0
RULES = ScreeningRules(max_amount={"EUR": 5_000})


class BankClock:
    def __init__(self, bank: Bank) -> None:
        self.bank = bank

    def now(self) -> float:
        return self.bank.now


class Bank:
    """One tenant with funded EUR accounts, payments driven through the real handlers."""

    def __init__(self) -> None:
        self.store = MemoryStore()
        self.now = DAY1
        create_accounts(
            self.store,
            "acme",
            [
                Account("funding", "EUR", overdraft=True),
                Account("alice", "EUR"),
                Account("bob", "EUR"),
                Account("carol", "EUR"),
            ],
        )
        submit_transfers(
            self.store, "acme", [Transfer("fund-alice", "funding", "alice", 10_000, "EUR")], DAY1
        )
        self.n = 0
        settings = GroupSettings(partitions=CONFIG.partitions, batch_size=3)
        clock = BankClock(self)
        self.members: dict[str, Member] = {
            PAYMENTS_GROUP: payments_member(Identity("pay"), clock, settings, CONFIG, RULES),
            REPORTING_GROUP: reporting_member(Identity("rep"), clock, settings),
        }

    def pay(self, debtor: str, creditor: str, amount: int) -> str:
        self.n += 1
        req = PaymentRequest(debtor, creditor, amount, "EUR")
        with self.store.unit_of_work() as uow:
            acc = accept_payment(
                uow, "acme", f"k{self.n}", req, f"h{self.n}", f"p{self.n}", self.now, CONFIG
            )
            uow.commit()
        return str(acc.body["id"])

    def drain(self, group: str) -> int:
        """Run one consumer group (on the engine) until it is idle; the events it handled."""
        member = self.members[group]
        before = member.stats.events
        drain(self.store, [member])
        return member.stats.events - before

    def check(self) -> list[str]:
        with self.store.unit_of_work() as uow:
            result = check_read_models(uow, ["acme"], CONFIG.partitions)
        assert result.lag == 0
        return result.mismatches


@pytest.fixture
def bank() -> Bank:
    return Bank()


def test_posted_payments_build_balances_volumes_and_statuses(bank: Bank) -> None:
    bank.pay("alice", "bob", 1_000)
    bank.pay("alice", "carol", 250)
    bank.pay("alice", "bob", 9_000)  # screening: over the 5,000 limit -> rejected
    bank.drain(PAYMENTS_GROUP)
    bank.now = DAY2
    bank.pay("alice", "bob", 8_000)  # insufficient funds after 1,250 -> rejected
    bank.pay("bob", "carol", 400)
    bank.drain(PAYMENTS_GROUP)
    bank.drain(REPORTING_GROUP)

    with bank.store.unit_of_work() as uow:
        models = read_models(uow, "acme")
    assert models.balances == {
        "alice": {"currency": "EUR", "debits": 1_250, "credits": 0},
        "bob": {"currency": "EUR", "debits": 400, "credits": 1_000},
        "carol": {"currency": "EUR", "debits": 0, "credits": 650},
    }
    assert models.volumes == {
        "2023-11-14/EUR": {"count": 2, "amount": 1_250},
        "2023-11-15/EUR": {"count": 1, "amount": 400},
    }
    assert models.statuses == {"posted": 3, "rejected": 2}
    assert bank.check() == []


def unread(uow: UnitOfWork, group: str, topics: tuple[str, ...]) -> list[LoggedEvent]:
    """Every event of `topics` after the group's committed offsets."""
    return [
        e
        for t in topics
        for p in range(CONFIG.partitions)
        for e in uow.read_events(t, p, uow.get_offset(group, t, p), 100)
    ]


def test_redelivery_after_a_rolled_back_batch_counts_once(bank: Bank) -> None:
    bank.pay("alice", "bob", 100)
    bank.drain(PAYMENTS_GROUP)
    with bank.store.unit_of_work() as uow:
        # A projector that crashed before commit: its effect and offset vanish together.
        handle_reporting_events(uow, unread(uow, REPORTING_GROUP, TOPICS))
        uow.rollback()
    assert bank.drain(REPORTING_GROUP) == 3  # received, reserved, posted: redelivered
    assert bank.drain(REPORTING_GROUP) == 0
    with bank.store.unit_of_work() as uow:
        assert read_models(uow, "acme").balances["bob"]["credits"] == 100
    assert bank.check() == []


def test_failure_from_reserved_moves_the_reserved_count(bank: Bank) -> None:
    pid = bank.pay("alice", "bob", 300)
    with bank.store.unit_of_work() as uow:
        # Reserve only: handle the PaymentReceived, not the PaymentReserved that follows it.
        handle_payment_events(
            uow, unread(uow, PAYMENTS_GROUP, (PAYMENTS_TOPIC,)), RULES, bank.now, CONFIG
        )
        uow.commit()
    with bank.store.unit_of_work() as uow:
        assert fail_payment(uow, "acme", pid, "retries_exhausted", bank.now, CONFIG) is not None
        uow.commit()
    bank.drain(PAYMENTS_GROUP)
    bank.drain(REPORTING_GROUP)
    with bank.store.unit_of_work() as uow:
        models = read_models(uow, "acme")
    assert models.statuses == {"failed": 1}
    assert models.balances == {}
    assert bank.check() == []


def test_check_finds_a_tampered_read_model(bank: Bank) -> None:
    bank.pay("alice", "bob", 700)
    bank.drain(PAYMENTS_GROUP)
    bank.drain(REPORTING_GROUP)
    assert bank.check() == []
    with bank.store.unit_of_work() as uow:
        row = {"currency": "EUR", "debits": 0, "credits": 701}
        uow.put_record(BALANCE, "acme", "bob", json.dumps(row))
        uow.commit()
    problems = bank.check()
    assert any("balances (events)" in p for p in problems)
    assert any("balances (journal)" in p for p in problems)


def test_check_reports_lag_and_skips_the_journal_until_caught_up(bank: Bank) -> None:
    bank.pay("alice", "bob", 700)
    bank.drain(PAYMENTS_GROUP)
    with bank.store.unit_of_work() as uow:
        result = check_read_models(uow, ["acme"], CONFIG.partitions)
        assert group_lag(uow, PAYMENTS_GROUP, PAYMENTS_TOPICS, CONFIG.partitions) == 0
    assert result.lag == 3
    assert result.ok  # nothing projected yet, and nothing replayed up to offset 0 either
