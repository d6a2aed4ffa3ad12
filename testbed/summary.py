"""summary.json for a scenario run: the scenario's duration and SLOs handed to reports.metrics.

The numbers themselves are computed in reports/metrics.py (and, for a run with compliance
checks, reports/detection.py) from the run record alone; this module only unpacks the scenario,
so the runtimes' callers need not know which fields the summary uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
from rich.table import Table

from reports.detection import detection
from reports.metrics import (
    dumps,
    key_times,
    load_verdict,
    metrics,
    traffic_payments,
)
from reports.metrics import summarise as summarise_record
from reports.record import RunRecord
from scenarios.schema import Scenario

__all__ = ["detection_table", "dumps", "load_tables", "load_verdict", "metrics", "summarise"]


def summarise(
    scenario: Scenario,
    scenario_name: str,
    seed: int,
    tables: Mapping[str, pd.DataFrame],
    audit_json: Mapping[str, Any],
    mode: str = "sim",
    start: float = 0.0,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """`start`: when the traffic started (0 in the sim; a load run's meta `started_at`).

    A record with the checks' decisions adds `detection`: a row per check (reports/detection.py);
    without them the summary is what it always was. A load run's (`meta` mode load) adds what
    its verdict did not measure: `generator`, `faults_not_applied` and `not_modelled`
    (`load_verdict`)."""
    summary = summarise_record(
        scenario=scenario_name,
        seed=seed,
        mode=mode,
        duration=scenario.duration,
        slos=scenario.slos,
        tables=tables,
        audit_json=audit_json,
        start=start,
    )
    rows = detection(RunRecord.from_tables(tables, {}), traffic_payments(key_times(tables), start))
    if rows:
        summary["detection"] = [row.to_json() for row in rows]
    if meta is not None and meta.get("mode") == "load":
        summary.update(load_verdict(meta))
    return summary


def load_tables(summary: Mapping[str, Any]) -> list[Table]:
    """A load run's verdict additions: the faults not applied (kind, target, reason) and the
    settings not modelled in load mode; none for a sim run or when both lists are empty."""
    tables = []
    faults = summary.get("faults_not_applied") or []
    if faults:
        table = Table(
            title=f"faults not applied in load mode ({len(faults)})",
            caption="the verdict above did not face these faults (faults.parquet has them all)",
        )
        for head in ("kind", "target", "reason"):
            table.add_column(head)
        for f in faults:
            table.add_row(f["kind"], f["target"] or "-", f["reason"])
        tables.append(table)
    settings = summary.get("not_modelled") or []
    if settings:
        table = Table(title="not modelled in load mode")
        for head in ("setting", "value", "why"):
            table.add_column(head)
        for n in settings:
            table.add_row(n["setting"], n["value"], n["reason"])
        tables.append(table)
    return tables


def detection_table(summary: Mapping[str, Any]) -> Table | None:
    """The summary's detection rows as the verdict's third table, one column per check (so it
    fits a terminal); None when the summary has none."""
    rows = summary.get("detection")
    if not rows:
        return None
    table = Table(
        title="detection: the checks against the labelled fraud",
        caption="each check counts as positives only the patterns it is meant to catch "
        "(docs/compliance.md, Detection)",
    )
    table.add_column("")
    for r in rows:
        table.add_column(r["check"], justify="right")
    for key, name in _DETECTION_ROWS:
        fmt = _rate if key in _RATES else _count
        table.add_row(name, *(fmt(r[key]) for r in rows))
    return table


_DETECTION_ROWS = (
    ("payments", "payments"),
    ("positives", "labelled positives"),
    ("flagged", "flagged (review, reject)"),
    ("true_positives", "true positives"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("false_positive_rate", "false-positive rate"),
    ("caught_amount", "fraud caught (minor units)"),
    ("missed_amount", "fraud missed (minor units)"),
    ("held", "held"),
)
_RATES = frozenset({"precision", "recall", "false_positive_rate"})


def _count(value: int) -> str:
    return f"{value:,}"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"
