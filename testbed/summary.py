"""summary.json for a scenario run: the scenario's duration and SLOs handed to reports.metrics.

The numbers themselves are computed in reports/metrics.py from the run record alone; this module
only unpacks the scenario, so the runtimes' callers need not know which fields the summary uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from reports.metrics import dumps, metrics
from reports.metrics import summarise as summarise_record
from scenarios.schema import Scenario

__all__ = ["dumps", "metrics", "summarise"]


def summarise(
    scenario: Scenario,
    scenario_name: str,
    seed: int,
    tables: Mapping[str, pd.DataFrame],
    audit_json: Mapping[str, Any],
    mode: str = "sim",
    start: float = 0.0,
) -> dict[str, Any]:
    """`start`: when the traffic started (0 in the sim; a load run's meta `started_at`)."""
    return summarise_record(
        scenario=scenario_name,
        seed=seed,
        mode=mode,
        duration=scenario.duration,
        slos=scenario.slos,
        tables=tables,
        audit_json=audit_json,
        start=start,
    )
