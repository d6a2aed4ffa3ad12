"""A run's numbers: latencies named for what they measure, throughput, outcomes and counts.

Everything here is computed from the run record's tables alone, so a sim run and a load run are
measured the same way, and summary.json, the HTML report, the gate and the sweep all agree on
what `posted.p99` means. The four latencies (docs/run-record.md, "Latencies"):

- `ack`: a key's first send (its intended send time) to its first 202;
- `processing`: the payment's `received_at` (the gateway committed it) to `posted_at`;
- `posted`: the key's first send to the payment's `posted_at`;
- `settled`: the key's first send to the payment's `settled_at`.

summary.json is plain JSON with sorted keys and no wall-clock or host facts, so two runs of one
seed give byte-identical summaries.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from scenarios.slo import LATENCY_KINDS, LATENCY_STATS, parse_slo

_QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99, "p999": 0.999}


class Samples(NamedTuple):
    """One latency kind: `seconds[i]` is a sample and `at[i]` when its clock started."""

    at: np.ndarray
    seconds: np.ndarray


def latency_stats(values: np.ndarray) -> dict[str, float]:
    """p50, p95, p99, p999, max and mean of `values` (NaN for each when there are none)."""
    if len(values) == 0:
        return dict.fromkeys(LATENCY_STATS, math.nan)
    stats = dict(zip(_QUANTILES, np.quantile(values, list(_QUANTILES.values())), strict=True))
    out = {name: float(v) for name, v in stats.items()}
    out["max"] = float(values.max())
    out["mean"] = float(values.mean())
    return out


def first_sent(requests: pd.DataFrame) -> pd.Series:
    """Per (tenant, key): when the first attempt was meant to go out (no coordinated omission)."""
    return requests.groupby(["tenant", "key"], sort=False)["intended_at"].min()


def first_acked(requests: pd.DataFrame) -> pd.Series:
    """Per (tenant, key) that was answered 202: when the first 202 arrived."""
    ok = requests[requests["status"] == 202]
    return ok.groupby(["tenant", "key"], sort=False)["done_at"].min()


def latencies(tables: Mapping[str, pd.DataFrame]) -> dict[str, Samples]:
    """Every sample of each latency kind, NaN-free, in the order of the tables' rows."""
    requests, payments = tables["requests"], tables["payments"]
    first = first_sent(requests)
    acked = first_acked(requests)
    ack_start = first.reindex(acked.index).to_numpy(dtype=float)
    keys = pd.MultiIndex.from_arrays([payments["tenant"], payments["idempotency_key"]])
    start = first.reindex(keys).to_numpy(dtype=float)
    received = payments["received_at"].to_numpy(dtype=float)
    posted = payments["posted_at"].to_numpy(dtype=float)
    settled = payments["settled_at"].to_numpy(dtype=float)
    raw = {
        "ack": (ack_start, acked.to_numpy(dtype=float) - ack_start),
        "processing": (received, posted - received),
        "posted": (start, posted - start),
        "settled": (start, settled - start),
    }
    out = {}
    for kind in LATENCY_KINDS:
        at, seconds = raw[kind]
        keep = ~(np.isnan(at) | np.isnan(seconds))
        out[kind] = Samples(at[keep], seconds[keep])
    return out


def metrics(
    tables: Mapping[str, pd.DataFrame], duration: float, audit_counts: Mapping[str, int]
) -> dict[str, float]:
    """The numbers SLO expressions name (scenarios/slo.py METRICS)."""
    requests, payments = tables["requests"], tables["payments"]
    out: dict[str, float] = {}
    for kind, samples in latencies(tables).items():
        for stat, value in latency_stats(samples.seconds).items():
            out[f"{kind}.{stat}"] = value
    out["offered"] = len(first_sent(requests)) / duration
    out["throughput"] = float((first_acked(requests) <= duration).sum()) / duration
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


def clean(value: Any) -> Any:
    """NaN as JSON null: a metric the run could not measure (no payment got that far)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def summarise(
    *,
    scenario: str,
    seed: int | None,
    mode: str,
    duration: float,
    slos: Iterable[str],
    tables: Mapping[str, pd.DataFrame],
    audit_json: Mapping[str, Any],
) -> dict[str, Any]:
    """summary.json: metrics, payments by status, the audit's counts and every SLO's result."""
    counts: Mapping[str, int] = audit_json["counts"]
    m = metrics(tables, duration, counts)
    results = [parse_slo(text).evaluate(m) for text in slos]
    by_status = tables["payments"]["status"].value_counts()
    audit_ok = bool(audit_json["ok"])
    return {
        "scenario": scenario,
        "seed": seed,
        "mode": mode,
        "metrics": {k: clean(v) for k, v in sorted(m.items())},
        "payments": {str(k): int(v) for k, v in sorted(by_status.items())},
        "requests": len(tables["requests"]),
        "audit": {"ok": audit_ok, "counts": dict(sorted(counts.items()))},
        "slos": [
            {"slo": r.text, "passed": r.passed, "left": clean(r.left), "right": clean(r.right)}
            for r in results
        ],
        "passed": audit_ok and all(r.passed for r in results),
    }


def dumps(summary: Mapping[str, Any]) -> str:
    return json.dumps(summary, sort_keys=True, indent=2, allow_nan=False) + "\n"
