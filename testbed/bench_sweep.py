"""Benchmark: a 20-point sweep of the steady-state scenario in sim mode on two local workers.
`python -m testbed.bench_sweep`.

Runs `testbed sweep scenarios/catalog/steady-state.yaml --vary workload.rate=100:2000:20
--jobs 2` end to end, as a user would, in a separate process (every point's run record, audit,
summary and report, then the capacity report), and, as the same-run baseline, one point alone
at the scenario's own rate in this process. Prints the sweep's wall time against the budget of
5 minutes, the baseline, and the sweep's cost per point as a ratio of the baseline; exits 1 on
a miss.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from scenarios.loader import load_scenario
from testbed.run import run_scenario

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "catalog" / "steady-state.yaml"
BUDGET_SECONDS = 300.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.bench_sweep", description=__doc__)
    parser.add_argument("--vary", default="workload.rate=100:2000:20")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    loaded = load_scenario(SCENARIO)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run_scenario("sim", loaded, loaded.scenario.seed, Path(tmp) / "one", Console(quiet=True))
        baseline = time.perf_counter() - t0
        t1 = time.perf_counter()
        command = [
            str(Path(sys.executable).with_name("testbed")),
            "sweep",
            str(SCENARIO),
            "--vary",
            args.vary,
            "--jobs",
            str(args.jobs),
            "--out",
            str(Path(tmp) / "s"),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t1
        if done.returncode not in (0, 1):  # 1: a point failed its audit; the sweep still timed
            print(done.stdout + done.stderr)
            return 1
        points = len((Path(tmp) / "s" / "points.csv").read_text().splitlines()) - 1
    verdict = "PASS" if wall < BUDGET_SECONDS else "MISS"
    rate = loaded.scenario.workload.rate
    print(f"baseline: one point at {rate:g}/s in this process: {baseline:7.1f} s")
    print(f"sweep of {points} points ({args.vary}), {args.jobs} jobs: {wall:7.1f} s  "
          f"({wall / points:.1f} s a point, {wall / points / baseline:.2f}x baseline)  "
          f"{verdict} (budget {BUDGET_SECONDS:.0f} s)")  # fmt: skip
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
