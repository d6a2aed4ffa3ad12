"""One run directory opened for reading: its record, scenario, audit and the numbers derived.

The report, the gate and compare all start from a run directory a person named on the command
line, so opening one fails with a message that names that argument (`RUN_A: runs/x is not a
run directory (no meta.json)`), and what they compute from it is computed once.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from reports.metrics import KeyTimes, Samples, key_times, latencies, metrics
from reports.record import RunRecord, RunRecordError, load_run
from scenarios.slo import SloError, parse_slo
from scenarios.units import parse_duration


class NotARun(ValueError):
    """The directory cannot be read as a run; the message names the argument and the rule."""


@dataclass(frozen=True)
class SloOutcome:
    slo: str
    passed: bool
    left: float
    right: float
    error: str = ""


@dataclass
class Run:
    path: Path
    record: RunRecord
    scenario: dict[str, Any]
    duration: float
    audit: dict[str, Any] = field(repr=False)

    @property
    def name(self) -> str:
        return str(self.record.meta.get("scenario") or self.path.name)

    @property
    def mode(self) -> str:
        return str(self.record.meta.get("mode"))

    @property
    def start(self) -> float:
        """When the traffic started: 0 in a sim run, a wall-clock time in a load run's meta."""
        return float(self.record.meta.get("started_at", 0.0))

    @property
    def tables(self) -> dict[str, pd.DataFrame]:
        r = self.record
        return {"requests": r.requests, "payments": r.payments, "journal": r.journal}

    @cached_property
    def times(self) -> KeyTimes:
        return key_times(self.tables)

    @cached_property
    def metrics(self) -> dict[str, float]:
        return metrics(self.tables, self.duration, self.audit["counts"], self.times, self.start)

    @cached_property
    def samples(self) -> dict[str, Samples]:
        return latencies(self.tables, self.times, self.start)

    @property
    def acked_at(self) -> np.ndarray:
        """When each acknowledged key got its first 202."""
        acked = self.times.first_acked
        found: np.ndarray = acked[~np.isnan(acked)]
        return found

    @cached_property
    def slos(self) -> list[SloOutcome]:
        """The scenario's SLOs evaluated on this run's metrics (an unparsable one fails)."""
        out = []
        for text in self.scenario.get("slos") or []:
            try:
                r = parse_slo(str(text)).evaluate(self.metrics)
            except SloError as e:
                out.append(SloOutcome(str(text), False, math.nan, math.nan, str(e)))
                continue
            out.append(SloOutcome(r.text, r.passed, r.left, r.right))
        return out

    @property
    def audit_ok(self) -> bool:
        return bool(self.audit["ok"])

    @property
    def passed(self) -> bool:
        return self.audit_ok and all(s.passed for s in self.slos)


def scenario_data(record: RunRecord) -> dict[str, Any]:
    """The run's resolved scenario as plain data ({} when the record has none)."""
    data = yaml.safe_load(record.scenario_yaml) if record.scenario_yaml else None
    return data if isinstance(data, dict) else {}


def run_duration(record: RunRecord, scenario: dict[str, Any]) -> float | None:
    """The traffic window in seconds: meta.json's `duration`, else the scenario's."""
    value = record.meta.get("duration")
    if isinstance(value, int | float) and value > 0:
        return float(value)
    try:
        seconds = parse_duration(scenario.get("duration"))
    except Exception:  # pydantic's custom error: not a duration
        return None
    return seconds if seconds > 0 else None


def open_run(
    path: str | Path, argument: str = "RUN", record: RunRecord | None = None,
    audit: dict[str, Any] | None = None,
) -> Run:  # fmt: skip
    """Read the run directory `path` (NotARun names `argument`); the audit comes from
    audit.json, or is computed when the directory has none."""
    base = Path(path)
    if not (base / "meta.json").is_file():
        raise NotARun(f"{argument}: {base} is not a run directory (no meta.json)")
    try:
        record = load_run(base) if record is None else record
    except (RunRecordError, OSError, ValueError) as e:
        raise NotARun(f"{argument}: {base}: {e}") from None
    scenario = scenario_data(record)
    duration = run_duration(record, scenario)
    if duration is None:
        raise NotARun(f"{argument}: {base}: neither meta.json nor scenario.yaml gives a duration")
    if audit is None:
        audit_path = base / "audit.json"
        if audit_path.is_file():
            audit = json.loads(audit_path.read_text())
        else:
            from reports.audit import audit as run_audit

            audit = run_audit(record).to_json()
    return Run(base, record, scenario, duration, audit)
