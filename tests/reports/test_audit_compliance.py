"""The audit's compliance rules on hand-written records: one decision per check, money moves
only on approval (or the timeout policy), a held payment moves none."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from record_harness import NAN, payment, tables

from reports.audit import Findings
from reports.audit_compliance import check_compliance, policy_of
from reports.record import OPTIONAL_SCHEMAS, RunRecord


def meta(on_timeout: str) -> dict[str, Any]:
    checks = {"mode": "parallel", "run": ["sanctions", "aml"], "timeout": 2.0}
    return {"seed": 1, "checks": {**checks, "on_timeout": on_timeout}}


def entry(pid: str, seq: int, kind: str, at: float) -> dict[str, Any]:
    return {
        "tenant": "t1", "seq": seq, "transfer_id": f"{pid}:{kind}", "payment_id": pid,
        "kind": kind, "pending_id": "", "debit_account": "a", "credit_account": "b",
        "amount": 100, "currency": "EUR", "at": at, "prev_hash": "", "hash": "",
    }  # fmt: skip


def decision(pid: str, check: str, verdict: str, at: float) -> dict[str, Any]:
    return {
        "payment_id": pid, "tenant": "t1", "check": check, "verdict": verdict, "reason": "",
        "score": 0.0, "at": at,
    }  # fmt: skip


def findings(
    payments: list[dict[str, Any]],
    journal: list[dict[str, Any]],
    decisions: list[dict[str, Any]],
    on_timeout: str = "hold",
) -> list[str]:
    given = tables(payments=payments, journal=journal)
    names = OPTIONAL_SCHEMAS["decisions"].names
    given["decisions"] = pd.DataFrame(decisions, columns=names).astype(
        {"score": float, "at": float}
    )
    record = RunRecord.from_tables(given, meta(on_timeout))
    found = Findings()
    check_compliance(record, found)
    result = found.result(1, 100)
    return [f"{v.payment_id}: {v.detail}" for v in result.violations]


POSTED = [entry("p1", 1, "pending", 10.5), entry("p1", 2, "post_pending", 10.6)]


def test_a_payment_posted_after_every_approval_is_clean() -> None:
    decided = [decision("p1", "sanctions", "approve", 10.1), decision("p1", "aml", "approve", 10.2)]
    assert findings([payment("p1", "k1", "posted", 10.0, 10.6)], POSTED, decided) == []


def test_a_check_deciding_twice_is_found() -> None:
    decided = [
        decision("p1", "sanctions", "approve", 10.1),
        decision("p1", "aml", "approve", 10.2),
        decision("p1", "aml", "review", 10.3),
    ]
    found = findings([payment("p1", "k1", "posted", 10.0, 10.6)], POSTED, decided)
    assert found == ["p1: aml decided it 2 times"]


def test_money_moved_without_an_approval_is_found() -> None:
    decided = [decision("p1", "sanctions", "approve", 10.1), decision("p1", "aml", "review", 10.2)]
    found = findings([payment("p1", "k1", "posted", 10.0, 10.6)], POSTED, decided)
    assert found == [
        "p1: money moved (pending entry 1) without aml's approval: review (on_timeout: hold)"
    ]


def test_an_approval_that_came_after_the_money_moved_does_not_count() -> None:
    decided = [decision("p1", "sanctions", "approve", 10.1), decision("p1", "aml", "approve", 13.0)]
    found = findings([payment("p1", "k1", "posted", 10.0, 10.6)], POSTED, decided)
    assert len(found) == 1 and "without aml's approval: approve" in found[0]


@pytest.mark.parametrize(("policy", "violations"), [("approve", 0), ("hold", 1), ("reject", 1)])
def test_a_check_that_missed_the_deadline_is_covered_only_by_an_approve_policy(
    policy: str, violations: int
) -> None:
    late = [entry("p1", 1, "pending", 12.5), entry("p1", 2, "post_pending", 12.6)]
    decided = [decision("p1", "sanctions", "approve", 10.1)]  # aml never answered
    found = findings([payment("p1", "k1", "posted", 10.0, 12.6)], late, decided, policy)
    assert len(found) == violations


def test_an_operator_approval_covers_a_review() -> None:
    decided = [
        decision("p1", "sanctions", "approve", 10.1),
        decision("p1", "aml", "review", 10.2),
        decision("p1", "operator", "approve", 20.0),
    ]
    moved = [entry("p1", 1, "pending", 20.5), entry("p1", 2, "post_pending", 20.6)]
    assert findings([payment("p1", "k1", "posted", 10.0, 20.6)], moved, decided) == []


def test_a_held_payment_that_moved_money_is_found() -> None:
    decided = [decision("p1", "sanctions", "review", 10.1), decision("p1", "aml", "approve", 10.2)]
    found = findings([payment("p1", "k1", "held", 10.0)], POSTED[:1], decided)
    assert "p1: held, yet pending entry 1 moved its money" in found


def test_records_without_checks_are_not_judged() -> None:
    record = RunRecord.from_tables(tables(payments=[payment("p1", "k1", "posted", 1.0, NAN)]), {})
    assert policy_of(record) is None
    assert policy_of(RunRecord.from_tables(tables(), meta("hold"))) is not None
