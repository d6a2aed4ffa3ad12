"""Compliance checks on the consumer engine: one decision per check, the saga waiting for them
(in parallel) or running them (in sequence), timeouts and their policy, held payments and the
operator's review. Real handlers on a memory store; the checks here decide by the creditor's
name so that every outcome is chosen by the test."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from reference_impl.adapters.memory import MemoryStore
from reference_impl.core.checks import Decision
from reference_impl.core.events import DECISIONS_TOPIC, PAYMENTS_TOPIC, CheckDecided, decode
from reference_impl.core.ledger import Account, Transfer
from reference_impl.core.payments import Payment, PaymentStatus
from reference_impl.core.screening import ScreeningRules
from reference_impl.runtime.consumer import drain
from reference_impl.service import checks
from reference_impl.service.accept import PaymentRequest, accept_payment
from reference_impl.service.checks import ChecksConfig, Outcome, decide_once, outcome
from reference_impl.service.consumer import Member
from reference_impl.service.groups import Identity
from reference_impl.service.ledger import create_accounts, submit_transfers
from reference_impl.service.members import GroupSettings, check_member, payments_member
from reference_impl.service.payments import (
    PaymentsConfig,
    ReviewRefused,
    get_payment,
    review_payment,
)
from reference_impl.service.ports import UnitOfWork

T0 = 1_700_000_000.0
PARTITIONS = 4


@dataclass(frozen=True, slots=True)
class ByName:
    """Decides by the creditor's name: "review-x" reviews, "reject-x" rejects, else approves."""

    name: str

    def decide(self, uow: UnitOfWork, payment: Payment, now: float) -> Decision:
        verdict, _, _ = payment.creditor_name.partition("-")
        if verdict in ("review", "reject"):
            return Decision(verdict, f"{self.name}:{verdict}", 0.9)  # type: ignore[arg-type]
        return Decision("approve", "", 0.1)


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def now(self) -> float:
        return self.t


class Bank:
    def __init__(self, mode: str = "parallel", on_timeout: str = "hold") -> None:
        self.store = MemoryStore()
        self.clock = Clock()
        create_accounts(
            self.store,
            "acme",
            [
                Account("funding", "EUR", overdraft=True),
                Account("alice", "EUR"),
                Account("bob", "EUR"),
            ],
        )
        submit_transfers(
            self.store, "acme", [Transfer("fund", "funding", "alice", 100_000, "EUR")], T0
        )
        self.checks = ChecksConfig(mode, ("sanctions", "aml"), 2.0, on_timeout)  # type: ignore[arg-type]
        self.config = PaymentsConfig(partitions=PARTITIONS, checks=self.checks)
        settings = GroupSettings(partitions=PARTITIONS, batch_size=10)
        checkers = [ByName("sanctions"), ByName("aml")]
        inline = checkers if mode == "sequential" else []
        self.payments = payments_member(
            Identity("pay"), self.clock, settings, self.config, ScreeningRules(), None, inline
        )
        self.checkers: list[Member] = [
            check_member(Identity(c.name), self.clock, settings, c, self.config) for c in checkers
        ]
        self.n = 0

    def pay(self, creditor_name: str = "", amount: int = 1_000) -> str:
        self.n += 1
        req = PaymentRequest("alice", "bob", amount, "EUR", creditor_name=creditor_name)
        with self.store.unit_of_work() as uow:
            acc = accept_payment(
                uow,
                "acme",
                f"k{self.n}",
                req,
                f"h{self.n}",
                f"p{self.n}",
                self.clock.t,
                self.config,
            )
            uow.commit()
        return str(acc.body["id"])

    def run(self, *members: Member) -> None:
        """Run the members until idle; again, since one's commit does not wake the others here
        (the runtimes wake them on commit): a third round finds nothing new."""
        for _ in range(3):
            drain(self.store, list(members) or [self.payments, *self.checkers])

    def payment(self, pid: str) -> Payment:
        with self.store.unit_of_work() as uow:
            p = get_payment(uow, "acme", pid)
        assert p is not None
        return p

    def moved(self, pid: str) -> list[str]:
        """The kinds of the journal entries carrying the payment's id."""
        with self.store.unit_of_work() as uow:
            entries = uow.read_journal("acme", 0, 10_000)
        return [str(e.kind) for e in entries if e.payment_id == pid]

    def decisions(self) -> list[tuple[str, str, str]]:
        """(payment, check, verdict) of every CheckDecided in the log, in log order."""
        out = []
        with self.store.unit_of_work() as uow:
            for p in range(PARTITIONS):
                for logged in uow.read_events(DECISIONS_TOPIC, p, 0, 10_000):
                    e = decode(logged.type, logged.payload)
                    assert isinstance(e, CheckDecided)
                    out.append((e.payment_id, e.check, e.verdict))
        return sorted(out)


CONFIG = ChecksConfig("parallel", ("sanctions", "aml"), 2.0, "hold")
A, RV, RJ = Decision("approve"), Decision("review", "aml:velocity"), Decision("reject", "s:x")
"""Approve; a review and a reject with their reasons."""


@pytest.mark.parametrize(
    ("found", "timed_out", "policy", "expected"),
    [
        ({"sanctions": A, "aml": A}, False, "hold", Outcome("approve")),
        ({"sanctions": RJ, "aml": RV}, False, "hold", Outcome("reject", "s:x")),
        ({"sanctions": A, "aml": RV}, False, "hold", Outcome("hold", "aml:velocity")),
        ({"sanctions": A}, False, "hold", None),
        ({"sanctions": A}, True, "hold", Outcome("hold", "aml:timeout")),
        ({"sanctions": A}, True, "approve", Outcome("approve")),
        ({"sanctions": A}, True, "reject", Outcome("reject", "aml:timeout")),
        ({"sanctions": Decision("review")}, True, "approve", Outcome("hold", "sanctions:review")),
    ],
)
def test_what_the_decisions_add_up_to(
    found: dict[str, Decision], timed_out: bool, policy: str, expected: Outcome | None
) -> None:
    config = replace(CONFIG, on_timeout=policy)  # type: ignore[arg-type]
    assert outcome(found, config, timed_out) == expected


def test_parallel_checks_approve_then_the_payment_is_reserved_and_posted() -> None:
    bank = Bank()
    pid = bank.pay()
    bank.run(bank.payments)  # the checks have not answered: it waits in screening
    assert bank.payment(pid).status is PaymentStatus.SCREENING
    assert bank.moved(pid) == []
    bank.run()
    assert bank.payment(pid).status is PaymentStatus.POSTED
    assert bank.decisions() == [(pid, "aml", "approve"), (pid, "sanctions", "approve")]


def test_checks_that_answered_first_are_found_when_the_payment_is_screened() -> None:
    bank = Bank()
    pid = bank.pay()
    bank.run(*bank.checkers)
    bank.run(bank.payments)
    assert bank.payment(pid).status is PaymentStatus.POSTED


def test_a_review_holds_the_payment_and_moves_no_money_until_an_operator_approves() -> None:
    bank = Bank()
    pid = bank.pay("review-me")
    bank.run()
    held = bank.payment(pid)
    assert held.status is PaymentStatus.HELD
    assert held.reason == "sanctions:review; aml:review"
    assert bank.moved(pid) == []
    with bank.store.unit_of_work() as uow:
        review_payment(uow, "acme", pid, "approve", "looked fine", bank.clock.t, bank.config)
        uow.commit()
    with bank.store.unit_of_work() as uow, pytest.raises(ReviewRefused, match="reviewed already"):
        review_payment(uow, "acme", pid, "reject", "", bank.clock.t, bank.config)
    bank.run()
    assert bank.payment(pid).status is PaymentStatus.POSTED
    assert bank.moved(pid) == ["pending", "post_pending"]
    with bank.store.unit_of_work() as uow, pytest.raises(ReviewRefused, match="not held"):
        review_payment(uow, "acme", pid, "reject", "", bank.clock.t, bank.config)


def test_an_operator_rejects_a_held_payment() -> None:
    bank = Bank()
    pid = bank.pay("review-me")
    bank.run()
    with bank.store.unit_of_work() as uow:
        review_payment(uow, "acme", pid, "reject", "confirmed match", bank.clock.t, bank.config)
        uow.commit()
    bank.run()
    assert bank.payment(pid).status is PaymentStatus.REJECTED
    assert bank.payment(pid).reason == "confirmed match"
    assert bank.moved(pid) == []


def test_a_reject_rejects_whatever_the_others_say() -> None:
    bank = Bank()
    pid = bank.pay("reject-me")
    bank.run()
    assert bank.payment(pid).status is PaymentStatus.REJECTED
    assert bank.payment(pid).reason == "sanctions:reject; aml:reject"


def test_a_redelivered_payment_is_decided_once() -> None:
    bank = Bank()
    pid = bank.pay()
    bank.run()
    # Deliver every PaymentReceived again, as after a lost answer to a commit.
    with bank.store.unit_of_work() as uow:
        for member in bank.checkers:
            for p in range(PARTITIONS):
                uow.set_offset(member.spec.name, PAYMENTS_TOPIC, p, 0)
        uow.commit()
    bank.run()
    assert bank.decisions() == [(pid, "aml", "approve"), (pid, "sanctions", "approve")]
    with bank.store.unit_of_work() as uow:
        assert decide_once(uow, ByName("aml"), bank.payment(pid), bank.clock.t) is None


@pytest.mark.parametrize(
    ("policy", "status", "reason"),
    [
        ("hold", PaymentStatus.HELD, "aml:timeout"),
        ("approve", PaymentStatus.POSTED, ""),
        ("reject", PaymentStatus.REJECTED, "aml:timeout"),
    ],
)
def test_a_check_that_does_not_answer_in_time_counts_as_the_policy_says(
    policy: str, status: PaymentStatus, reason: str
) -> None:
    bank = Bank(on_timeout=policy)
    pid = bank.pay()
    sanctions, _aml = bank.checkers  # the AML check is down
    bank.run(bank.payments, sanctions)
    assert bank.payment(pid).status is PaymentStatus.SCREENING
    bank.clock.t += 1.0  # before the deadline, the sweep leaves it waiting
    bank.run(bank.payments, sanctions)
    assert bank.payment(pid).status is PaymentStatus.SCREENING
    bank.clock.t += 1.5
    bank.run(bank.payments, sanctions)
    assert bank.payment(pid).status is status
    assert bank.payment(pid).reason == reason
    with bank.store.unit_of_work() as uow:  # the sweep's index is empty again
        assert all(checks.due(uow, p, bank.clock.t + 100) == [] for p in range(PARTITIONS))


def test_approve_on_timeout_bug_ignores_the_policy() -> None:
    bank = Bank(on_timeout="hold")
    bank.config = replace(bank.config, bugs=frozenset({"approve-on-timeout"}))
    settings = GroupSettings(partitions=PARTITIONS, batch_size=10)
    bank.payments = payments_member(
        Identity("pay"), bank.clock, settings, bank.config, ScreeningRules()
    )
    pid = bank.pay("review-me")
    bank.run(bank.payments)
    bank.clock.t += 3.0
    bank.run(bank.payments)
    assert bank.payment(pid).status is PaymentStatus.POSTED  # a review never came in time


def test_sequential_checks_decide_inside_the_payments_worker() -> None:
    bank = Bank(mode="sequential")
    ok, held = bank.pay(), bank.pay("review-me")
    bank.run(bank.payments)  # no check group runs
    assert bank.payment(ok).status is PaymentStatus.POSTED
    assert bank.payment(held).status is PaymentStatus.HELD
    assert bank.decisions() == sorted(
        [
            (ok, "sanctions", "approve"),
            (ok, "aml", "approve"),
            (held, "sanctions", "review"),
            (held, "aml", "review"),
        ]
    )
