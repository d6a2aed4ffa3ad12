"""Was it the system or the generator? The generator's view of its own run.

A load test measures the system only while the generator keeps its schedule. This module
reads what the generator recorded and says when it did not, and why:

- a generator process used ~a whole core while sending (`CPU_BOUND`): its event loop cannot
  have kept up;
- sends started more than `late_after` after their intended time although a user was idle
  (`LATE_SHARE`): the process fell behind its own schedule;
- sends waited for a free user: every user was holding an attempt the system had not answered,
  so fewer attempts went out on time than the scenario asked for; raise `users` (the latency of
  those attempts still counts from their intended time, so it is not hidden);
- attempts never sent before the run ended.

The per-second table puts the scenario's target rate (the profile's expected arrivals), the
arrivals the Poisson schedule drew, and the first attempts actually sent side by side; Poisson
noise separates the first two, only the generator separates the last two.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from scenarios.schema import Workload
from scenarios.workload import expected_arrivals

CPU_BOUND = 0.9
"""Mean share of one core, over the arrival window, at which a generator process is saturated."""
LATE_SHARE = 0.01
"""Share of sends that may start late (or wait for a user) before the generator is the limit."""

SAMPLE_COLUMNS = ["process", "at", "cpu", "busy_users", "backlog"]
RATE_COLUMNS = ["second", "target", "scheduled", "achieved", "sent", "answered"]


def per_second_rates(
    rows: pd.DataFrame, workload: Workload, duration: float, started_at: float
) -> pd.DataFrame:
    """Per second of the traffic (`second` s after its start, times in rows since t0):
    `target` the profile's expected arrivals, `scheduled` the arrivals drawn (first attempts by
    intended time), `achieved` first attempts sent, `sent` all attempts sent (retries and
    double submits too), `answered` attempts answered (any HTTP status)."""
    last = max(duration, float(np.nanmax(rows["sent_at"])) - started_at if len(rows) else 0.0)
    n = math.ceil(last)
    seconds = np.arange(n, dtype=np.int64)

    def count(times: pd.Series) -> np.ndarray:
        t = times.to_numpy(dtype=np.float64) - started_at
        t = t[~np.isnan(t) & (t >= 0)]
        return np.bincount(t.astype(np.int64), minlength=len(seconds))[: len(seconds)]

    first = rows[rows["attempt"] == 1]
    return pd.DataFrame(
        {
            "second": seconds,
            "target": [
                expected_arrivals(workload, duration, s, s + 1.0) for s in range(len(seconds))
            ],
            "scheduled": count(first["intended_at"]),
            "achieved": count(first["sent_at"]),
            "sent": count(rows["sent_at"]),
            "answered": count(rows.loc[rows["status"] != 0, "done_at"]),
        },
        columns=RATE_COLUMNS,
    )


def generator_verdict(
    processes: Sequence[Mapping[str, Any]],
    samples: pd.DataFrame,
    started_at: float,
    duration: float,
    late_after: float,
    service_p50: float,
) -> tuple[bool, str]:
    """(generator bound?, why) from each process's counters and the CPU samples."""
    reasons: list[str] = []
    window = samples[(samples["at"] >= started_at) & (samples["at"] <= started_at + duration)]
    for process, cpu in window.groupby("process")["cpu"].mean().items():
        if cpu >= CPU_BOUND:
            reasons.append(f"{process} used {cpu:.0%} of a core while sending")
    sent = sum(p["counters"]["sent"] for p in processes)
    late_idle = sum(p["counters"]["late_idle"] for p in processes)
    late_waited = sum(p["counters"]["late_waited"] for p in processes)
    unsent = sum(p["counters"]["unsent"] for p in processes)
    users = sum(p["counters"]["users"] for p in processes)
    ms = f"{late_after * 1000:g} ms"
    if sent and late_idle > LATE_SHARE * sent:
        reasons.append(
            f"{late_idle} of {sent} sends ({late_idle / sent:.1%}) started more than {ms} late "
            "with a user idle: the generator fell behind its schedule (its own CPU, or a machine "
            "too busy to run it on time)"
        )
    if sent and late_waited > LATE_SHARE * sent:
        reasons.append(
            f"{late_waited} of {sent} sends ({late_waited / sent:.1%}) started more than {ms} "
            f"late waiting for one of the {users} users, all held by unanswered attempts "
            f"(median service time {service_p50 * 1000:.1f} ms): raise users to keep the "
            "arrivals open"
        )
    if unsent:
        reasons.append(f"{unsent} attempts were never sent before the run ended")
    return bool(reasons), "; ".join(reasons)


def mean_rates(rates: pd.DataFrame, duration: float) -> tuple[float, float]:
    """(achieved, target) per second over the arrival window: first attempts sent in the
    `duration` seconds after the traffic's start, and the profile's expected arrivals, each over
    `duration`. A generator that falls behind sends its backlog after the window: not counted."""
    if duration <= 0 or rates.empty:
        return 0.0, 0.0
    inside = rates[rates["second"] < duration]
    return float(inside["achieved"].sum()) / duration, float(inside["target"].sum()) / duration
