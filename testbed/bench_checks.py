"""Benchmark: what the compliance checks cost in latency, in the sim.
`python -m testbed.bench_checks [--seeds N]`.

The catalog's fraud-mix (labelled fraud over legitimate traffic) is first swept with the checks
off to find its capacity (the highest throughput at which at least 95% of the offered load is
acknowledged, doubling the rate then bisecting); then, at half that rate, each seed runs with
the checks off (the baseline, measured in the same run), `sequential` and `parallel`. Printed
per mode: ack and posted p50/p99 and their ratio to checks off.

Posted latency is compared on the same payments: the seeds give every mode the same traffic, and
only the keys posted in all three modes of a seed are counted (with the checks on, the payments
they hold or reject never post, so the modes' own posted sets differ in what they contain, not
only in how fast). Payments first sent in a run's first second are left out of every latency
(the consumer groups form then: a start-up cost of every mode, not the checks'). Percentiles
are of the samples pooled over the seeds, never averaged.

Targets (issue 13): parallel checks add at most 20% to posted p99 (ratio <= 1.2), and sequential
checks cost measurably more than parallel (posted p99 above parallel's pooled and in every
seed). Exit 1 on a miss. This is the sim with the default modelled check costs
(sim/service_times.py: sanctions_batch, aml_batch, fraud_batch), not a load run.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import yaml

from reference_impl.core.aml import AmlRules
from scenarios.loader import HERE, parse_scenario
from scenarios.units import parse_rate
from testbed.executors import default_jobs, run_jobs

SCENARIO = HERE / "catalog" / "fraud-mix.yaml"
MODES = ("off", "sequential", "parallel")
PARALLEL_MAX = 1.2
SUSTAINED = 0.95
WARMUP = 1.0
"""Seconds at the start of each run left out of the latencies: the consumer groups form then
(members join, the partitions are assigned), a start-up cost of every mode, not the checks'."""


@dataclass(frozen=True)
class Point:
    """One sim run: offered and acknowledged rates, every ack latency, and the posted latency
    of each posted payment by its "tenant/key"."""

    offered: float
    throughput: float
    ack: np.ndarray
    posted: pd.Series
    held: int


def _scenario(rate: float, duration: str, mode: str) -> Any:
    """fraud-mix at `rate` with the checks in `mode`, its AML rules kept and their volume
    thresholds scaled with the rate (they are set for the scenario's own rate: at ten times
    the traffic every busy account would look like a burst, and most payments would be held)."""
    data = yaml.safe_load(SCENARIO.read_text())
    scale = rate / parse_rate(data["workload"]["rate"])
    aml, defaults = dict(data.get("checks", {}).get("aml", {})), AmlRules()
    for name in ("velocity_count", "velocity_amount"):
        aml[name] = max(1, round(aml.get(name, getattr(defaults, name)) * scale))
    data["workload"]["rate"] = f"{rate:g}/s"
    data.update(duration=duration, drain="10s", slos=[])
    data["checks"] = {**data.get("checks", {}), "mode": mode, "aml": aml}
    return parse_scenario(data, "fraud-mix")


def run_point(duration: str, job: tuple[float, str, int]) -> Point:
    """Simulate fraud-mix at `rate` with the checks in `mode` and read its latencies."""
    from reports.metrics import key_times, metrics
    from sim import export
    from sim.run import simulate

    rate, mode, seed = job
    scenario = _scenario(rate, duration, mode)
    result = simulate(scenario, seed)
    tables = {"requests": export.requests(result), "payments": export.payments(result)}
    m = metrics(tables, scenario.duration, {})
    times = key_times(tables)
    warm = times.first_sent >= WARMUP
    acked = (times.first_acked - times.first_sent)[warm]
    payments = tables["payments"]
    sent = times.first_sent[times.payment_key]
    posted = payments["posted_at"].to_numpy(dtype=float) - sent
    keep = ~np.isnan(posted) & (sent >= WARMUP)
    keys = (payments["tenant"] + "/" + payments["idempotency_key"])[keep]
    return Point(
        offered=m["offered"],
        throughput=m["throughput"],
        ack=acked[~np.isnan(acked)],
        posted=pd.Series(posted[keep], index=keys.to_numpy()),
        held=int((payments["status"] == "held").sum()),
    )


def capacity(duration: str, seed: int, start: float, jobs: int) -> tuple[float, list[str]]:
    """(the highest sustained throughput with the checks off, a line per rate tried)."""
    lines: list[str] = []

    def sustained(rate: float) -> tuple[bool, float]:
        [(_, p)] = run_jobs(partial(run_point, duration), [(rate, "off", seed)], jobs)
        ok = p.throughput >= SUSTAINED * p.offered
        lines.append(
            f"  {rate:7.0f}/s offered {p.offered:7.1f}/s, acknowledged "
            f"{p.throughput:7.1f}/s {'sustained' if ok else 'saturated'}"
        )
        return ok, p.throughput

    best, low, high = 0.0, 0.0, start
    while True:
        ok, achieved = sustained(high)
        if not ok:
            break
        best, low, high = max(best, achieved), high, high * 2
    for _ in range(2):
        mid = (low + high) / 2
        ok, achieved = sustained(mid)
        if ok:
            best, low = max(best, achieved), mid
        else:
            high = mid
    return best, lines


def _p(values: np.ndarray, q: float) -> float:
    return float(np.quantile(values, q)) if len(values) else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m testbed.bench_checks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seeds", type=int, default=3, help="seeds per mode (default 3)")
    parser.add_argument("--duration", default="10s", help="traffic per run (default 10s)")
    parser.add_argument("--jobs", type=int, default=default_jobs(), help="worker processes")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.jobs < 1:
        parser.error("--seeds, --jobs: must be at least 1")
    started = time.perf_counter()
    print(
        f"the sim, {SCENARIO.name} with the default modelled check costs "
        "(sim/service_times.py sanctions_batch, aml_batch, fraud_batch); not a load run"
    )
    found, lines = capacity(args.duration, 1, 500.0, args.jobs)
    print(
        f"capacity with the checks off (seed 1, {args.duration}): {found:.0f}/s", *lines, sep="\n"
    )
    rate = round(found / 2, -1)
    seeds = range(1, args.seeds + 1)
    jobs = [(rate, mode, seed) for seed in seeds for mode in MODES]
    points: dict[tuple[str, int], Point] = {}
    for i, point in run_jobs(partial(run_point, args.duration), jobs, args.jobs):
        points[jobs[i][1], jobs[i][2]] = point
    return report(points, rate, list(seeds), time.perf_counter() - started)


def report(
    points: Mapping[tuple[str, int], Point], rate: float, seeds: list[int], wall: float
) -> int:
    """Print the table, the per-seed posted p99s and the targets; 1 on a miss."""
    common = {s: _common_keys(points, s) for s in seeds}
    ack = {m: np.concatenate([points[m, s].ack for s in seeds]) for m in MODES}
    posted = {
        m: np.concatenate([points[m, s].posted.loc[common[s]].to_numpy() for s in seeds])
        for m in MODES
    }
    print(
        f"at {rate:g}/s (half the capacity), seeds {seeds[0]}..{seeds[-1]}, "
        f"{sum(len(c) for c in common.values()):,} payments posted in every mode"
    )
    print(
        f"{'checks':>11} {'ack p50':>9} {'ack p99':>9} {'ratio':>6} {'posted p50':>11} "
        f"{'posted p99':>11} {'ratio':>6} {'held':>7}"
    )
    base = {k: (_p(ack["off"], q), _p(posted["off"], q)) for k, q in (("p50", 0.5), ("p99", 0.99))}
    p99 = {}
    for m in MODES:
        a50, a99, c50, c99 = (
            _p(ack[m], 0.5),
            _p(ack[m], 0.99),
            _p(posted[m], 0.5),
            _p(posted[m], 0.99),
        )
        p99[m] = c99
        held = sum(points[m, s].held for s in seeds)
        print(
            f"{m:>11} {a50 * 1e3:7.1f}ms {a99 * 1e3:7.1f}ms {a99 / base['p99'][0]:6.2f} "
            f"{c50 * 1e3:9.1f}ms {c99 * 1e3:9.1f}ms {c99 / base['p99'][1]:6.2f} {held:>7,}"
        )
    per_seed = {
        m: [_p(points[m, s].posted.loc[common[s]].to_numpy(), 0.99) for s in seeds] for m in MODES
    }
    for m in MODES:
        print(
            f"posted p99 per seed, {m:>10}: " + ", ".join(f"{v * 1e3:.1f}ms" for v in per_seed[m])
        )
    ratio = p99["parallel"] / p99["off"]
    ok_parallel = ratio <= PARALLEL_MAX
    ok_order = p99["sequential"] > p99["parallel"] and all(
        q > p for q, p in zip(per_seed["sequential"], per_seed["parallel"], strict=True)
    )
    print(
        f"parallel posted p99 / checks off: {ratio:.2f} (target <= {PARALLEL_MAX}) "
        f"{'PASS' if ok_parallel else 'MISS'}"
    )
    print(
        f"sequential posted p99 / parallel: {p99['sequential'] / p99['parallel']:.2f} (target: "
        f"above 1, pooled and in every seed) {'PASS' if ok_order else 'MISS'}"
    )
    print(f"measured in {wall:.0f}s")
    return 0 if ok_parallel and ok_order else 1


def _common_keys(points: Mapping[tuple[str, int], Point], seed: int) -> list[str]:
    keys = set(points[MODES[0], seed].posted.index)
    for m in MODES[1:]:
        keys &= set(points[m, seed].posted.index)
    return sorted(keys)


if __name__ == "__main__":
    sys.exit(main())
