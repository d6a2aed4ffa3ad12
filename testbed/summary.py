"""A run's verdict numbers: throughput, latency percentiles, outcomes, audit, SLOs.

Computed from the run record's tables only, so a sim run and a load run are summarised the
same way. The result is plain JSON with sorted keys and no wall-clock or host facts, so two runs
of one seed give a byte-identical summary.json.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from scenarios.schema import Scenario
from scenarios.slo import LATENCY_STATS, parse_slo

_QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99, "p999": 0.999}


def latency_stats(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return dict.fromkeys(LATENCY_STATS, math.nan)
    stats = {name: float(np.quantile(values, q)) for name, q in _QUANTILES.items()}
    stats["max"] = float(values.max())
    stats["mean"] = float(values.mean())
    return stats


def _first_sent(requests: pd.DataFrame) -> pd.Series:
    return requests.groupby(["tenant", "key"])["intended_at"].min()


def metrics(
    tables: Mapping[str, pd.DataFrame], duration: float, audit_counts: Mapping[str, int]
) -> dict[str, float]:
    """The numbers SLO expressions name (see scenarios/slo.py METRICS)."""
    requests, payments = tables["requests"], tables["payments"]
    first = _first_sent(requests)
    acked = requests[requests["status"] == 202].groupby(["tenant", "key"])["done_at"].min()
    ack_latency = (acked - first.reindex(acked.index)).to_numpy(dtype=float)
    posted = payments[payments["posted_at"].notna()]
    start = first.reindex(pd.MultiIndex.from_frame(posted[["tenant", "idempotency_key"]]))
    posted_latency = posted["posted_at"].to_numpy(dtype=float) - start.to_numpy(dtype=float)
    out: dict[str, float] = {}
    for name, values in (("ack", ack_latency), ("posted", posted_latency)):
        for stat, value in latency_stats(values[~np.isnan(values)]).items():
            out[f"{name}.{stat}"] = value
    out["offered"] = len(first) / duration
    out["throughput"] = float((acked <= duration).sum()) / duration
    status = payments["status"].value_counts()
    for s in ("posted", "rejected", "failed"):
        out[f"payments.{s}"] = float(
            status.get(s, 0) + (status.get("settled", 0) if s == "posted" else 0)
        )
    out["requests.timeouts"] = float((requests["outcome"] == "timeout").sum())
    out["requests.errors"] = float((requests["outcome"] == "error").sum())
    out["audit.violations"] = float(sum(v for k, v in audit_counts.items() if k != "liveness"))
    out["liveness.stuck"] = float(audit_counts.get("liveness", 0))
    return out


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def summarise(
    scenario: Scenario,
    scenario_name: str,
    seed: int,
    tables: Mapping[str, pd.DataFrame],
    audit_json: Mapping[str, Any],
) -> dict[str, Any]:
    counts: Mapping[str, int] = audit_json["counts"]
    m = metrics(tables, scenario.duration, counts)
    slos = [parse_slo(text).evaluate(m) for text in scenario.slos]
    by_status = tables["payments"]["status"].value_counts()
    audit_ok = bool(audit_json["ok"])
    return {
        "scenario": scenario_name,
        "seed": seed,
        "mode": "sim",
        "metrics": {k: _clean(v) for k, v in sorted(m.items())},
        "payments": {str(k): int(v) for k, v in sorted(by_status.items())},
        "requests": len(tables["requests"]),
        "audit": {"ok": audit_ok, "counts": dict(sorted(counts.items()))},
        "slos": [
            {"slo": r.text, "passed": r.passed, "left": _clean(r.left), "right": _clean(r.right)}
            for r in slos
        ],
        "passed": audit_ok and all(r.passed for r in slos),
    }


def dumps(summary: Mapping[str, Any]) -> str:
    return json.dumps(summary, sort_keys=True, indent=2, allow_nan=False) + "\n"
