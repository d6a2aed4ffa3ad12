"""Fitting the sim's service times to a load run: what `testbed calibrate` computes.

A load run's processes time their stages (reference_impl/timings.py, kept as timings.parquet):
each 202's time in the gateway and its commit, each consumer step's work with the items it
worked on and skipped, each commit with its rows. From the start of the traffic on, this fits
what sim/service_times.py charges for the same things:

- `gateway_accept`: the gateway processes' CPU seconds (sampled each second, nodes.parquet)
  per answer, as a log-normal of the default's shape;
- `ledger_commit` (the commit's wall time; on SQLite the whole transaction's, which holds the
  database's one write lock from its first statement, and `ledger_writers` 1) and every
  consumer stage (the step thread's CPU time):
  `base + per_item * items + per_skipped * skipped`, the slopes by Theil-Sen (scipy), robust to
  long tails, the base a log-normal with the median and mean of what is left of each measurement;
- `host_cores` and `client_cpu`: the run's machine (meta.json `cpus`), whose cores the sim's
  gateway, consumers and load generator then share, and the generator's CPU per request (its
  processes' sampled CPU over the attempts it sent);
- `client` and `client_back`: from a request's intended send to the gateway's handler, and
  from the handler's answer to the client reading it (request rows joined by key; one host,
  one clock), log-normals with their median and mean;
- `same_zone` and `cross_zone`: zero, since the run was on one host and its links' time is
  already inside the stages it measured (set them to model a network);
- `consumer_poll`: how the run's consumers learnt of new events (meta.json: polling on SQLite,
  woken at once on PostgreSQL).

Measured times include whatever the machine was doing meanwhile (other processes on the same
cores), so a calibration describes that machine at that load; docs/calibration.md says how well
it predicts another load.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sized
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import theilslopes

from reports.capacity import cpu_seconds
from reports.runs import Run
from sim.calibration import batch_yaml, distribution_yaml
from sim.service_times import DEFAULTS, BatchCost, Constant, LogNormal, ServiceTimes

MAX_PAIRS_ROWS = 2000
"""Theil-Sen looks at every pair of rows: a subsample keeps it to about 2 million pairs."""
MIN_SAMPLES = 3
"""Fewer measurements than this keep the default (and the file says so)."""
STAGE_FIELDS = {
    "payments": "payments_batch",
    "settlement": "settlement_batch",
    "reporting": "reporting_batch",
    "settlement-close": "settlement_close",
    "statement": "statement",
    "sanctions": "sanctions_batch",
    "aml": "aml_batch",
    "fraud": "fraud_batch",
}
"""Consumer engine `Work` stages and the ServiceTimes field that charges each (the checks'
only in a load run that ran them: a fraud model's scoring is measured there)."""


@dataclass(frozen=True)
class Fit:
    times: ServiceTimes
    samples: dict[str, int]
    """Measurements behind each fitted field."""
    defaults: tuple[str, ...]
    """Fields left at their defaults: too few measurements."""
    source: dict[str, Any]


def fit_lognormal(values: np.ndarray) -> LogNormal:
    """The log-normal with the measurements' median and mean: the typical time and, for
    capacity, the average (a maximum-likelihood fit lets a heavy tail inflate the mean)."""
    positive = values[values > 0]
    median, mean = float(np.median(positive)), float(np.mean(positive))
    return LogNormal(median, math.sqrt(2 * math.log(mean / median)) if mean > median else 0.0)


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    """Seconds per unit of `x`, robust to the long tail of wall times (Theil-Sen, on an even
    subsample of at most MAX_PAIRS_ROWS rows); 0 when `x` does not vary."""
    if np.ptp(x) == 0:
        return 0.0
    step = max(1, len(x) // MAX_PAIRS_ROWS)
    return max(0.0, float(theilslopes(y[::step], x[::step]).slope))


def fit_batch(
    seconds: np.ndarray, items: np.ndarray, skipped: np.ndarray, default: BatchCost
) -> BatchCost:
    """`base + per_item * items + per_skipped * skipped`: the slopes by Theil-Sen (the default's
    per-skipped cost when nothing was skipped), the base a log-normal of what is left."""
    # The slope among batches: single-item rows mix other work (a gateway's transaction is
    # one item, and differs from a batch of one).
    batches = items >= 2
    if batches.sum() >= MIN_SAMPLES:
        per_item = _slope(items[batches], seconds[batches])
    else:
        per_item = _slope(items, seconds)
    left = seconds - per_item * items
    per_skipped = _slope(skipped, left) if skipped.any() else default.per_skipped
    base = left - per_skipped * skipped
    if (base > 0).sum() < MIN_SAMPLES:  # the slopes explain everything: a constant base
        return BatchCost(Constant(0.0), per_item, per_skipped)
    return BatchCost(fit_lognormal(base), per_item, per_skipped)


def fit_run(run: Run, timings: pd.DataFrame) -> Fit:
    """The service times `timings` (the run's timings.parquet) show, over the defaults."""
    t = timings[timings["at"] >= run.start]
    fitted: dict[str, Any] = {}
    samples: dict[str, int] = {}
    defaults: list[str] = []

    def take(name: str, rows: Sized, fit: Callable[[Any], object]) -> None:
        if len(rows) < MIN_SAMPLES:
            defaults.append(name)
            return
        fitted[name] = fit(rows)
        samples[name] = len(rows)

    cpu, answered = _gateway_cpu(run)
    if cpu > 0 and answered >= MIN_SAMPLES:
        fitted["gateway_accept"] = _cpu_per_request(cpu, answered)
        samples["gateway_accept"] = answered
    else:  # no answers, or no CPU samples of the gateway's workers
        defaults.append("gateway_accept")
    column = "commit"
    if str(run.record.meta.get("store", "")).startswith("sqlite"):
        # One write lock, held from a transaction's first statement to its commit.
        fitted["ledger_writers"] = 1
        column = "seconds"
    commits = t[(t["kind"] == "commit") & t[column].notna()]
    take("ledger_commit", commits, _batch_fit(column, DEFAULTS.ledger_commit))
    steps = t[t["kind"] == "step"]
    for stage, name in STAGE_FIELDS.items():
        default = getattr(DEFAULTS, name)
        take(name, steps[steps["stage"] == stage], _batch_fit("cpu", default))
    to_gateway, back = _client_ways(run.record.requests, t[t["kind"] == "request"])
    take("client", to_gateway, fit_lognormal)
    take("client_back", back, fit_lognormal)
    fitted["same_zone"] = fitted["cross_zone"] = Constant(0.0)
    meta = run.record.meta
    fitted["consumer_poll"] = float(meta.get("consumer_poll", 0.0))
    fitted["host_cores"] = int(meta.get("cpus") or 0)
    generator_cpu = float(meta.get("generator", {}).get("cpu_seconds", 0.0))
    if fitted["host_cores"] and generator_cpu > 0:
        sent = run.record.requests["sent_at"].between(run.start, run.start + run.duration)
        fitted["client_cpu"] = generator_cpu / max(1, int(sent.sum()))
    source = {
        "run": str(run.path),
        "scenario": run.name,
        "store": meta.get("store", ""),
        "host": meta.get("host", ""),
        "rate": run.scenario.get("workload", {}).get("rate"),
        "started_at": run.start,
    }
    return Fit(replace(DEFAULTS, **fitted), samples, tuple(defaults), source)


def _gateway_cpu(run: Run) -> tuple[float, int]:
    """CPU seconds the gateway's processes spent during the traffic, and the answers it gave.

    A request's time in the gateway is mostly waiting (for the event loop, a thread, a core)
    that the sim's queues model themselves, so its service time is its share of the CPU.
    """
    start, end = run.start, run.start + run.duration
    nodes = run.record.nodes
    gateway = nodes[nodes["node"].str.startswith("gateway") & nodes["at"].between(start, end)]
    cpu = cpu_seconds(gateway, by="node")
    requests = run.record.requests
    answered = requests["sent_at"].between(start, end) & (requests["status"] != 0)
    return cpu, int(answered.sum())


def _cpu_per_request(cpu: float, answered: int) -> LogNormal:
    """A log-normal with the default's shape whose mean is the CPU per answer."""
    shape = DEFAULTS.gateway_accept
    assert isinstance(shape, LogNormal)
    return LogNormal(cpu / answered / math.exp(shape.sigma**2 / 2), shape.sigma)


def _batch_fit(seconds: str, default: BatchCost) -> Callable[[pd.DataFrame], BatchCost]:
    """Fits the cost in column `seconds` of a frame of timing rows (items, skipped)."""

    def fit(rows: pd.DataFrame) -> BatchCost:
        return fit_batch(
            rows[seconds].to_numpy(dtype=float),
            rows["items"].to_numpy(dtype=float),
            rows["skipped"].to_numpy(dtype=float),
            default,
        )

    return fit


def _client_ways(requests: pd.DataFrame, gateway: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per 202 the gateway timed (joined by key; one host, one clock): from the intended send
    to the gateway's handler (the client's send lag included), and from its answer back."""
    answered = requests[requests["outcome"] == "accepted"]
    keyed = pd.DataFrame(
        {
            "key": answered["tenant"] + "/" + answered["key"],
            "intended_at": answered["intended_at"],
            "done_at": answered["done_at"],
        }
    )
    joined = keyed.merge(gateway[["key", "at", "seconds"]], on="key", how="inner")
    to_gateway = (joined["at"] - joined["seconds"] - joined["intended_at"]).to_numpy(float)
    back = (joined["done_at"] - joined["at"]).to_numpy(float)
    return to_gateway[to_gateway > 0], back[back > 0]


def calibration_yaml(fit: Fit) -> str:
    """The calibration file (sim/calibration.py reads it back)."""
    import yaml

    entries: dict[str, Any] = {}
    for name, value in vars_of(fit.times).items():
        if name in fit.defaults or value is None:
            continue
        n = fit.samples.get(name)
        if isinstance(value, float | int):
            entries[name] = value
        elif isinstance(value, BatchCost):
            entries[name] = batch_yaml(value, n)
        else:
            entries[name] = distribution_yaml(value, n)
    head = (
        "# Service times fitted by `testbed calibrate` from a load run; use with\n"
        "# `testbed run SCENARIO --calibration FILE`. Seconds. Fields not listed keep the sim's\n"
        "# defaults (too few measurements: " + (", ".join(fit.defaults) or "none") + ").\n"
        "# same_zone and cross_zone are 0: one host, its links' time is inside the stages.\n"
        "# consumer_poll > 0: the run's consumers polled (SQLite) instead of being woken.\n"
    )
    body = yaml.safe_dump(
        {"source": fit.source, "service_times": _rounded(entries)}, sort_keys=False
    )
    return head + body


def vars_of(times: ServiceTimes) -> dict[str, Any]:
    return {name: getattr(times, name) for name in times.__dataclass_fields__}


def _rounded(value: Any) -> Any:
    """Six significant digits: a readable file whose numbers still carry the fit."""
    if isinstance(value, float):
        return float(f"{value:.6g}") if math.isfinite(value) else value
    if isinstance(value, Mapping):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def mean_seconds(cost: Any, items: float = 1.0) -> float:
    """A field's mean cost, for the summary table (a batch at `items` items)."""
    if isinstance(cost, float | int):
        return float(cost)
    if isinstance(cost, BatchCost):
        return float(cost.base.mean) + cost.per_item * items
    return float(cost.mean)
