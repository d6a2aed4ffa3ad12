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

from reports.audit_vectors import encode, encode_scoped
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


class KeyTimes(NamedTuple):
    """Per idempotency key (tenant and key), as dense integer codes shared by both tables."""

    request_key: np.ndarray
    """The key code of each request row."""
    payment_key: np.ndarray
    """The key code of each payment row (the key it was created under)."""
    first_sent: np.ndarray
    """Per key: when its first attempt was meant to go out (NaN: no request sent it)."""
    first_acked: np.ndarray
    """Per key: when its first 202 arrived (NaN: never acknowledged)."""


def _first_at(codes: np.ndarray, times: np.ndarray, n: int) -> np.ndarray:
    out = np.full(n, np.inf)
    np.minimum.at(out, codes, times)
    out[np.isinf(out)] = np.nan
    return out


def key_times(tables: Mapping[str, pd.DataFrame]) -> KeyTimes:
    """First send and first acknowledgement of every key. Keys are encoded once as integers:
    grouping a million rows by two string columns takes seconds, by one integer milliseconds."""
    requests, payments = tables["requests"], tables["payments"]
    (tr, tp), _ = encode(requests["tenant"], payments["tenant"])
    (kr, kp), n = encode_scoped((tr, requests["key"]), (tp, payments["idempotency_key"]))
    intended = requests["intended_at"].to_numpy(dtype=float)
    ok = requests["status"].to_numpy() == 202
    done = requests["done_at"].to_numpy(dtype=float)
    return KeyTimes(kr, kp, _first_at(kr, intended, n), _first_at(kr[ok], done[ok], n))


def latencies(
    tables: Mapping[str, pd.DataFrame], times: KeyTimes | None = None, since: float = 0.0
) -> dict[str, Samples]:
    """Every sample of each latency kind, NaN-free: per key for `ack`, per payment otherwise.

    Keys first sent before `since` (a load run's set-up: the accounts' funding payments, sent
    before the traffic started) are left out.
    """
    times = key_times(tables) if times is None else times
    payments = tables["payments"]
    start = times.first_sent[times.payment_key]
    received = payments["received_at"].to_numpy(dtype=float)
    posted = payments["posted_at"].to_numpy(dtype=float)
    settled = payments["settled_at"].to_numpy(dtype=float)
    raw = {
        "ack": (times.first_sent, times.first_acked - times.first_sent),
        "processing": (received, posted - received),
        "posted": (start, posted - start),
        "settled": (start, settled - start),
    }
    traffic = {
        "ack": times.first_sent >= since,
        **dict.fromkeys(("processing", "posted", "settled"), start >= since),
    }
    out = {}
    for kind in LATENCY_KINDS:
        at, seconds = raw[kind]
        keep = ~(np.isnan(at) | np.isnan(seconds)) & traffic[kind]
        out[kind] = Samples(at[keep], seconds[keep])
    return out


def traffic_payments(times: KeyTimes, start: float) -> np.ndarray:
    """Which payments the traffic made: not those of keys first sent before `start` (a load
    run's set-up funding the accounts); a payment no request made stays in."""
    first = times.first_sent[times.payment_key]
    return np.asarray(~(first < start), dtype=bool)


def metrics(
    tables: Mapping[str, pd.DataFrame],
    duration: float,
    audit_counts: Mapping[str, int],
    times: KeyTimes | None = None,
    start: float = 0.0,
) -> dict[str, float]:
    """The numbers SLO expressions name (scenarios/slo.py METRICS).

    The traffic ran from `start` for `duration` (a sim run starts at 0; a load run's record is
    on the wall clock and its meta says when the traffic started); keys sent before `start` (a
    load run's set-up) count in no figure here, only in the audit.
    """
    requests, payments = tables["requests"], tables["payments"]
    times = key_times(tables) if times is None else times
    out: dict[str, float] = {}
    for kind, samples in latencies(tables, times, start).items():
        for stat, value in latency_stats(samples.seconds).items():
            out[f"{kind}.{stat}"] = value
    traffic = times.first_sent >= start
    out["offered"] = float(traffic.sum()) / duration
    out["throughput"] = float((traffic & (times.first_acked <= start + duration)).sum()) / duration
    status = payments["status"][traffic_payments(times, start)].value_counts()
    for s in ("posted", "rejected", "failed"):
        out[f"payments.{s}"] = float(
            status.get(s, 0) + (status.get("settled", 0) if s == "posted" else 0)
        )
    sent = requests["intended_at"].to_numpy(dtype=float) >= start
    out["requests.timeouts"] = float((sent & (requests["outcome"] == "timeout")).sum())
    out["requests.errors"] = float((sent & (requests["outcome"] == "error")).sum())
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
    start: float = 0.0,
) -> dict[str, Any]:
    """summary.json: metrics, payments by status, the audit's counts and every SLO's result."""
    counts: Mapping[str, int] = audit_json["counts"]
    times = key_times(tables)
    m = metrics(tables, duration, counts, times, start)
    results = [parse_slo(text).evaluate(m) for text in slos]
    by_status = tables["payments"]["status"][traffic_payments(times, start)].value_counts()
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


def load_verdict(meta: Mapping[str, Any]) -> dict[str, Any]:
    """From a load run's meta: whether the load generator kept up (its achieved and target
    rates over the arrival window), the scenario's faults the runtime could not apply and the
    topology settings it runs without. A meta written before the rates were kept has None."""
    generator = meta.get("generator") or {}
    return {
        "generator": {
            "bound": bool(generator.get("bound", False)),
            "reason": str(generator.get("reason", "")),
            "achieved_rate": generator.get("achieved_rate"),
            "target_rate": generator.get("target_rate"),
        },
        "faults_not_applied": [dict(f) for f in meta.get("faults_not_applied", [])],
        "not_modelled": [dict(n) for n in meta.get("not_modelled", [])],
    }


def generator_row(generator: Mapping[str, Any]) -> tuple[str, str, bool]:
    """(label, value, bound): the verdict's row on a load run's generator (`load_verdict`), its
    achieved against target rate ("-" when not recorded)."""
    achieved, target = generator.get("achieved_rate"), generator.get("target_rate")
    value = (
        "-"
        if achieved is None or target is None
        else (f"{achieved:.1f}/s sent of {target:.1f}/s target")
    )
    if generator["bound"]:
        return "load generator could NOT keep up", value, True
    return "load generator kept up", value, False


def dumps(summary: Mapping[str, Any]) -> str:
    return json.dumps(summary, sort_keys=True, indent=2, allow_nan=False) + "\n"
