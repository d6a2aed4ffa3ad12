"""Benchmark: seeds per minute of a 10,000-payment swarm campaign, against one core in-process.

The target is 1,000 seeds of a 10,000-payment swarm scenario in under 10 minutes on the machine
that runs it (exit 1 when missed). The swarm scenario's duration is set so that its rate offers
about 10,000 payments (profile and bursts dropped, so the count does not depend on them). The
baseline is one seed judged in this process, no pool, measured in the same run, so the ratio
shows what the pool adds over a single core (and what its process start-up costs). The
projection is honest: it uses the pool's measured rate, start-up included.

    python -m testbed.bench_campaign [--seeds N] [--jobs J] [--scenario PATH] [--payments P]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from scenarios.loader import load_scenario
from scenarios.schema import Scenario
from sim.campaign import CampaignJob
from testbed.executors import default_jobs
from testbed.judge import judge_seed, run_seeds

SWARM = Path(__file__).resolve().parents[1] / "scenarios" / "catalog" / "swarm.yaml"
TARGET_SEEDS = 1_000
TARGET_MINUTES = 10.0


def sized(scenario: Scenario, payments: int) -> Scenario:
    """The scenario at its own base rate for as long as it takes to offer `payments`."""
    workload = scenario.workload.model_copy(update={"profile": [], "bursts": []})
    duration = round(payments / scenario.workload.rate, 3)
    return scenario.model_copy(update={"workload": workload, "duration": duration})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", type=Path, default=SWARM)
    parser.add_argument("--payments", type=int, default=10_000)
    parser.add_argument("--seeds", type=int, default=8, help="seeds through the pool")
    parser.add_argument("--jobs", type=int, default=default_jobs())
    args = parser.parse_args()

    loaded = load_scenario(args.scenario)
    scenario = sized(loaded.scenario, args.payments)
    job = CampaignJob(scenario, loaded.name, None)
    print(
        f"{loaded.name}: {scenario.workload.rate:g}/s for {scenario.duration:g}s "
        f"(~{args.payments} payments a seed), {args.jobs} jobs"
    )

    start = time.perf_counter()
    base = judge_seed(job, 1_000_000)
    single = time.perf_counter() - start
    per_core = 60 / single
    print(
        f"baseline, one seed in-process: {single:.2f} s ({base.payments} payments, "
        f"{base.payments / single:,.0f} payments/s) -> {per_core:.1f} seeds/min on one core"
    )

    start = time.perf_counter()
    outcomes = list(run_seeds(job, range(1, args.seeds + 1), args.jobs))
    wall = time.perf_counter() - start
    pooled = 60 * len(outcomes) / wall
    failed = sum(not o.ok for o in outcomes)
    mean_payments = sum(o.payments for o in outcomes) / len(outcomes)
    print(
        f"pool, {args.seeds} seeds on {args.jobs} jobs: {wall:.1f} s -> {pooled:.1f} seeds/min "
        f"({pooled / per_core:.2f}x one core; {mean_payments:,.0f} payments a seed, "
        f"{failed} failed)"
    )

    projected = TARGET_SEEDS / pooled
    verdict = "PASS" if projected <= TARGET_MINUTES else "MISS"
    need = TARGET_SEEDS / TARGET_MINUTES
    print(
        f"projected {TARGET_SEEDS:,} seeds: {projected:.1f} min vs target {TARGET_MINUTES:g} min "
        f"-> {verdict} (needs {need:.0f} seeds/min, {need / pooled:.1f}x the measured rate)"
    )
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
