"""Benchmark: how well the calibrated sim predicts load runs it was not fitted on.
`python -m testbed.bench_calibration`.

On this machine, with the quickstart's topology (its fault removed, so the runs compare the
system and not a crash's timing): a load run at the fit rate is calibrated (`testbed
calibrate`); then at a higher rate and at rates up to past saturation, a load run and a sim run
with the calibration are made and compared: posted-latency p50 and p99 at the higher rate, and
the saturation throughput (the highest acknowledged throughput over the rates). The baseline is
the real system itself, measured in the same run. Every error within +-20% passes; the benchmark
exits 1 on a miss and prints the errors either way.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 0.20
TESTBED = str(Path(sys.executable).with_name("testbed"))


def _scenario(directory: Path, rate: float) -> Path:
    data = yaml.safe_load((ROOT / "scenarios" / "quickstart.yaml").read_text())
    data["faults"] = {"timed": []}
    data["workload"]["rate"] = f"{rate:g}/s"
    data["slos"] = ["audit.violations == 0"]
    path = directory / f"quickstart-{rate:g}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _run(scenario: Path, out: Path, *flags: str) -> dict[str, Any]:
    done = subprocess.run([TESTBED, "run", str(scenario), "--out", str(out), *flags],
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode not in (0, 1):
        raise SystemExit(f"testbed run {scenario.name} {' '.join(flags)} failed:\n{done.stderr}")
    metrics: dict[str, Any] = json.loads((out / "summary.json").read_text())["metrics"]
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m testbed.bench_calibration", description=__doc__
    )
    parser.add_argument("--fit-rate", type=float, default=100.0)
    parser.add_argument("--rate", type=float, default=200.0, help="the rate predicted")
    parser.add_argument(
        "--saturation-rates", default="200,300,450,600",
        help="rates whose highest achieved throughput is the saturation throughput",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, help="keep the runs here (default: a temporary dir)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-calibration-") as tmp:
        base = args.out or Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        _run(_scenario(base, args.fit_rate), base / "fit", "--mode", "load")
        calibration = base / "calibration.yaml"
        done = subprocess.run([TESTBED, "calibrate", str(base / "fit"), "-o", str(calibration)],
                              capture_output=True, text=True, check=False)  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"testbed calibrate failed:\n{done.stderr}")
        print(done.stdout)
        rates = sorted({args.rate, *(float(r) for r in args.saturation_rates.split(","))})
        real, sim = {}, {}
        for rate in rates:
            path = _scenario(base, rate)
            real[rate] = _run(path, base / f"load-{rate:g}", "--mode", "load")
            sim[rate] = _run(path, base / f"sim-{rate:g}", "--calibration", str(calibration))
            r, m = real[rate], sim[rate]
            print(f"{rate:6g}/s: load {r['throughput']:6.1f}/s, posted p50 "
                  f"{r['posted.p50'] * 1e3:6.1f} ms; sim {m['throughput']:6.1f}/s, "
                  f"{m['posted.p50'] * 1e3:6.1f} ms")  # fmt: skip
        rows = [
            (f"{name} at {args.rate:g}/s", real[args.rate][name], sim[args.rate][name])
            for name in ("posted.p50", "posted.p99")
        ]
        rows.append(("saturation throughput", max(m["throughput"] for m in real.values()),
                     max(m["throughput"] for m in sim.values())))  # fmt: skip
    print(f"fitted on a load run at {args.fit_rate:g}/s; each row: load run, calibrated sim")
    missed = 0
    for label, real, sim in rows:
        error = (sim - real) / real if real else float("inf")
        ok = abs(error) <= TOLERANCE
        missed += not ok
        unit, scale = ("/s", 1.0) if "throughput" in label else (" ms", 1e3)
        verdict = "PASS" if ok else "MISS"
        print(f"{label:24s} load {real * scale:8.1f}{unit}  sim {sim * scale:8.1f}{unit}  "
              f"error {error:+7.1%}  (target +-{TOLERANCE:.0%}) {verdict}")  # fmt: skip
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
