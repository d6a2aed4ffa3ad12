"""What a sweep says about capacity: the knee, the bottleneck, the scalability fit, the limit.

A sweep writes one row per grid point (points.parquet: the varied values, the measured offered
load and throughput, latency percentiles, mean utilization and queue length per node role, the
SLO and audit verdicts) and its settings (sweep.json). This module reads only those two files.

Definitions (docs/reports.md):
- A point is **sustained** when its achieved throughput is at least 95% of its offered load.
- Points that share every varied value except the load (`workload.rate`) form a **curve**,
  ordered by offered load. Its **knee** is the last point of the curve's leading run of
  sustained points: beyond it the system no longer keeps up. Its **capacity** is the highest
  throughput any of its points achieved.
- The **bottleneck** is the node role with the highest mean utilization at the first point
  that was not sustained (at the highest load when every point was).
- The **recommended maximum load** is the highest offered load of the curve's leading run of
  points that meet every SLO and pass the audit, less the stated headroom.
- Where a topology size is varied, each size's capacity feeds a Universal Scalability Law fit
  (reports/usl.py); a size none of whose points was overloaded only gives a lower bound.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from reports.usl import UslError, UslFit, fit_usl

SUSTAINED = 0.95
LOAD_PATH = "workload.rate"


@dataclass(frozen=True)
class Curve:
    label: str
    size: float | None
    offered: list[float]
    points: list[int]
    knee: float | None
    """Offered load at the knee (None: not even the lightest point was sustained)."""
    saturated: bool
    capacity: float
    bottleneck: str | None
    bottleneck_utilization: float | None
    max_load_at_slos: float | None
    recommended: float | None


@dataclass(frozen=True)
class Capacity:
    curves: list[Curve]
    usl: UslFit | None
    usl_note: str
    headroom: float

    def to_json(self) -> dict[str, Any]:
        return {
            "sustained_fraction": SUSTAINED,
            "headroom": self.headroom,
            "curves": [_finite(asdict(c)) for c in self.curves],
            "usl": None if self.usl is None else self.usl.to_json(),
            "usl_note": self.usl_note,
        }


def _finite(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def role_columns(points: pd.DataFrame, prefix: str) -> list[str]:
    return [c for c in points.columns if c.startswith(prefix)]


def cpu_seconds(samples: pd.DataFrame, by: str) -> float:
    """CPU seconds in per-process samples of `cpu` (a share of one core) taken at `at`: each
    share covers the time since the same process's (`by`) previous sample; a first sample
    covers nothing."""
    ordered = samples.sort_values([by, "at"])
    spans = ordered.groupby(by)["at"].diff()
    return float((ordered["cpu"] * spans).sum())


def node_roles(nodes: pd.DataFrame, duration: float) -> dict[str, float]:
    """Mean utilization and queue length per role (gateway-2 -> gateway) over the traffic
    window, from whichever of the two columns the nodes table has."""
    if nodes.empty or "node" not in nodes.columns or "at" not in nodes.columns:
        return {}
    window = nodes[nodes["at"] <= duration]
    roles = window["node"].str.replace(r"-\d+$", "", regex=True)
    out: dict[str, float] = {}
    for column, prefix in (("utilization", "util:"), ("queue_length", "queue:")):
        if column in window.columns:
            means = window[column].astype(float).groupby(roles).mean()
            out.update({f"{prefix}{role}": float(v) for role, v in means.items()})
    return out


def analyse(
    points: pd.DataFrame, varied: list[str], size_path: str | None, headroom: float
) -> Capacity:
    ok = points[points["error"].fillna("") == ""] if "error" in points else points
    others = [p for p in varied if p != LOAD_PATH]
    groups = ok.groupby(others, sort=True, dropna=False) if others else [((), ok)]
    curves = []
    for key, frame in groups:
        values = key if isinstance(key, tuple) else (key,)
        label = ", ".join(f"{p}={v}" for p, v in zip(others, values, strict=True)) or "all points"
        size = float(str(values[others.index(size_path)])) if size_path in others else None
        curves.append(_curve(label, size, frame.sort_values("offered", kind="stable"), headroom))
    fit, note = _usl(curves, size_path)
    return Capacity(curves, fit, note, headroom)


def _leading(flags: np.ndarray) -> int:
    """How many of the first flags are true in a row."""
    return len(flags) if flags.all() else int(np.argmin(flags))


def _curve(label: str, size: float | None, frame: pd.DataFrame, headroom: float) -> Curve:
    offered = frame["offered"].to_numpy(dtype=float)
    throughput = frame["throughput"].to_numpy(dtype=float)
    sustained = throughput >= SUSTAINED * offered
    run = _leading(sustained)
    knee = float(offered[run - 1]) if run else None
    first_over = run if run < len(frame) else len(frame) - 1
    bottleneck, busiest = None, None
    utils = role_columns(frame, "util:")
    if utils and len(frame):
        row = frame.iloc[first_over][utils].astype(float)
        if row.notna().any():
            top = str(row.idxmax())
            bottleneck, busiest = top.removeprefix("util:"), float(row.max())
    meets = frame["slos_passed"].to_numpy(dtype=bool) & frame["audit_ok"].to_numpy(dtype=bool)
    good = _leading(meets)
    at_slos = float(offered[good - 1]) if good else None
    return Curve(
        label=label,
        size=size,
        offered=[float(v) for v in offered],
        points=[int(p) for p in frame["point"]],
        knee=knee,
        saturated=bool((~sustained).any()),
        capacity=float(throughput.max()) if len(throughput) else math.nan,
        bottleneck=bottleneck,
        bottleneck_utilization=busiest,
        max_load_at_slos=at_slos,
        recommended=None if at_slos is None else at_slos * (1 - headroom),
    )


def _usl(curves: list[Curve], size_path: str | None) -> tuple[UslFit | None, str]:
    if size_path is None:
        return None, "no topology size was varied, so there is no scalability fit"
    usable = [c for c in curves if c.size is not None and c.capacity > 0]
    n = np.array([c.size for c in usable], dtype=float)
    x = np.array([c.capacity for c in usable], dtype=float)
    try:
        fit = fit_usl(n, x)
    except UslError as e:
        return None, f"{size_path}: {e}"
    lower = [c.label for c in usable if not c.saturated]
    note = f"X(N) is the capacity measured at each {size_path}"
    if lower:
        note += (f"; at {', '.join(lower)} no point was overloaded, so those capacities are "
                 "lower bounds and the fit understates scaling")  # fmt: skip
    return fit, note
