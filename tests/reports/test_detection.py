"""The detection table: each check's flags against the labelled fraud, on counts known by hand,
and in the verdict of a short sim run with the checks on."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from record_harness import payment, tables
from rich.console import Console

from reports.detection import ALL, DetectionRow, detection
from reports.record import OPTIONAL_SCHEMAS, RunRecord
from scenarios.loader import HERE, LoadedScenario, parse_scenario
from testbed.run import execute, verdict_tables

AMOUNTS = {f"p{i}": 10**i for i in range(1, 10)}
"""Distinct powers of ten, so every sum of amounts says which payments it added."""


def _optional(name: str, rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=OPTIONAL_SCHEMAS[name].names)


def _payment(pid: str, status: str, reason: str = "", tenant: str = "t1") -> dict[str, Any]:
    row = payment(pid, f"k{pid[1:]}", status, 0.0, tenant=tenant)
    return {**row, "amount": AMOUNTS.get(pid, 7), "reason": reason}


def _decision(pid: str, check: str, verdict: str, at: float = 1.0) -> tuple[Any, ...]:
    return (pid, "t1", check, verdict, f"{check}:x" if verdict != "approve" else "", 0.5, at)


def _record(labels: pd.DataFrame, decisions: pd.DataFrame) -> RunRecord:
    pays = [
        _payment("p1", "rejected", "sanctions:match X-1 'Ivan Petrov'"),  # sanctioned payee
        _payment("p2", "held", "fraud:rules:velocity"),  # card testing
        _payment("p3", "posted"),  # structuring nobody caught
        _payment("p4", "held", "aml:structuring"),  # mule chain
        _payment("p5", "held", "aml:passthrough"),  # legitimate, flagged by AML
        _payment("p6", "posted"),
        _payment("p7", "rejected", "screening:amount_limit"),  # before the checks: not theirs
        _payment("p8", "posted"),  # fraud approved it, then announced a review: first counts
        _payment("p9", "rejected", "looked wrong"),  # held by AML, rejected by an operator
        _payment("p1", "posted", tenant="t2"),  # same ids and key in another tenant: legitimate
    ]
    t = tables(payments=pays)
    return RunRecord.from_tables({**t, "labels": labels, "decisions": decisions}, {"seed": 1})


LABELS = _optional(
    "labels",
    [
        ("k1", "t1", "sanctioned_payee", "c1"),
        ("k2", "t1", "card_testing", "c2"),
        ("k3", "t1", "structuring", "c3"),
        ("k4", "t1", "mule_chain", "c4"),
        ("k99", "t1", "card_testing", "c2"),  # a labelled request that made no payment
    ],
)
DECISIONS = _optional(
    "decisions",
    [
        _decision("p8", "fraud", "review", at=2.0),  # listed first, decided second
        _decision("p1", "sanctions", "reject"),
        _decision("p5", "sanctions", "approve"),
        _decision("p2", "fraud", "review"),
        _decision("p3", "fraud", "approve"),
        _decision("p3", "aml", "approve"),
        _decision("p4", "aml", "review"),
        _decision("p5", "aml", "review"),
        _decision("p9", "aml", "review"),
        _decision("p8", "fraud", "approve", at=1.0),
        _decision("p9", "operator", "reject", at=5.0),
    ],
)


def _by_check(rows: list[DetectionRow]) -> dict[str, DetectionRow]:
    return {r.check: r for r in rows}


def test_each_check_is_scored_on_its_own_patterns_by_its_first_decision() -> None:
    rows = detection(_record(LABELS, DECISIONS))
    assert [r.check for r in rows] == ["sanctions", "aml", "fraud", ALL]
    a = AMOUNTS
    assert _by_check(rows) == {
        "sanctions": DetectionRow("sanctions", 10, 1, 1, 1, a["p1"], 0, 0),
        "aml": DetectionRow("aml", 10, 2, 3, 1, a["p4"], a["p3"], 2),
        "fraud": DetectionRow("fraud", 10, 2, 1, 1, a["p2"], a["p4"], 1),
        ALL: DetectionRow(ALL, 10, 4, 5, 3, a["p1"] + a["p2"] + a["p4"], a["p3"], 3),
    }
    aml, fraud, every = (_by_check(rows)[c] for c in ("aml", "fraud", ALL))
    assert (aml.precision, aml.recall, aml.false_positive_rate) == (1 / 3, 1 / 2, 2 / 8)
    assert (fraud.precision, fraud.recall, fraud.false_positive_rate) == (1.0, 0.5, 0.0)
    assert (every.precision, every.recall, every.false_positive_rate) == (3 / 5, 3 / 4, 2 / 6)


def test_a_record_without_decisions_has_no_table() -> None:
    assert detection(_record(LABELS, _optional("decisions", []))) == []
    no_tables = RunRecord.from_tables(tables(payments=[_payment("p1", "posted")]), {})
    assert detection(no_tables) == []
    operator_only = _optional("decisions", [_decision("p9", "operator", "reject")])
    assert detection(_record(LABELS, operator_only)) == []


def test_without_labels_every_flag_is_a_false_positive_and_recall_is_undefined() -> None:
    rows = _by_check(detection(_record(_optional("labels", []), DECISIONS)))
    aml = rows["aml"]
    assert (aml.positives, aml.flagged, aml.true_positives) == (0, 3, 0)
    assert aml.precision == 0.0 and math.isnan(aml.recall)
    assert aml.false_positive_rate == 3 / 10
    assert aml.to_json()["recall"] is None


def test_payments_outside_the_traffic_are_left_out() -> None:
    traffic = np.array([True] * 9 + [False])  # the t2 payment: a load run's set-up, say
    every = _by_check(detection(_record(LABELS, DECISIONS), traffic))[ALL]
    assert (every.payments, every.positives, every.flagged) == (9, 4, 5)


@pytest.fixture(scope="module")
def checked_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A few seconds of the catalog's fraud mix with the checks in parallel."""
    path = HERE / "catalog" / "fraud-mix.yaml"
    data = yaml.safe_load(path.read_text())
    data.update(duration="4s", drain="10s", checks={"mode": "parallel"})
    scenario = parse_scenario(data, "fraud-mix")
    out = tmp_path_factory.mktemp("checked")
    return execute(LoadedScenario("fraud-mix", path, scenario), 3, out, Console(quiet=True))


def test_the_verdict_of_a_run_with_checks_shows_the_detection_table(
    checked_run: dict[str, Any],
) -> None:
    rows = checked_run["detection"]
    assert [r["check"] for r in rows] == ["sanctions", "aml", "fraud", ALL]
    every = rows[-1]
    assert every["payments"] == sum(checked_run["payments"].values())
    assert 0 < every["positives"] < every["payments"]
    assert every["held"] == checked_run["payments"].get("held", 0)
    console = Console(width=120, record=True)
    for table in verdict_tables(checked_run):
        console.print(table)
    text = console.export_text()
    assert "detection: the checks against the labelled fraud" in text
    assert "false-positive rate" in text


def test_the_verdict_of_a_run_without_checks_has_no_detection_table(tmp_path: Path) -> None:
    path = HERE / "quickstart.yaml"
    data = yaml.safe_load(path.read_text())
    data.update(duration="1s")
    summary = execute(
        LoadedScenario("q", path, parse_scenario(data, "q")), 1, tmp_path, Console(quiet=True)
    )
    assert "detection" not in summary
    assert len(verdict_tables(summary)) == 2
