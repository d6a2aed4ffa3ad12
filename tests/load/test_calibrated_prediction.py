"""Prediction accuracy of a calibration: the sim, calibrated on a load run at one rate, predicts
the posted latency of a load run at another rate of the same topology that it was not fitted on.

The band is generous (a factor of 3 either way) so that a noisy machine does not fail it; what
it catches is a calibration that is broken. On the quickstart's topology (SQLite, consumers
polling every 50 ms) the sim with its *default* service times also lands inside the band, so a
calibration that is not applied at all would pass the first check; the second check runs the
same fit with every service time scaled up 10x and asserts that this prediction falls outside
the band: a calibration file that does not reach the sim, or a fit whose times are 10x too
large, fails the test. (10x too small does not leave the band at this rate: posted p50 is then
mostly the consumers' polling, which is measured, not fitted.)
testbed/bench_calibration.py measures the same thing against a +-20% target.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_calibrate_run import cli
from test_load_runtime import check_clean_run, run, scenario

FIT_RATE, PREDICTED_RATE = 100, 200
FACTOR = 3.0
"""How far (either way) the predicted posted p50 may be from the measured one."""
NOT_TIMES = frozenset({"ledger_writers", "host_cores", "light_weight", "consumer_poll"})
"""Calibration fields that are not service times (counts, a fraction, a poll interval)."""


def _scenario(tmp_path: Path, rate: int) -> Path:
    directory = tmp_path / f"scenario-{rate}"
    directory.mkdir()
    return scenario(directory, workload={"rate": f"{rate}/s"})


def _posted_p50(run_dir: Path) -> float:
    metrics: dict[str, Any] = json.loads((run_dir / "summary.json").read_text())["metrics"]
    return float(metrics["posted.p50"])


def _scaled(value: Any, factor: float) -> Any:
    """Every time in a calibration entry times `factor` (shapes and sample counts kept)."""
    if isinstance(value, dict):
        return {k: v if k in ("sigma", "samples") else _scaled(v, factor) for k, v in value.items()}
    return value * factor


def _sim(path: Path, calibration: Path, out: Path) -> float:
    done = cli("run", str(path), "--calibration", str(calibration), "--out", str(out))
    assert done.returncode in (0, 1), done.stdout + done.stderr  # 1: an SLO missed
    return _posted_p50(out)


@pytest.mark.timeout(300)
def test_the_calibrated_sim_predicts_a_load_run_it_was_not_fitted_on(tmp_path: Path) -> None:
    fit_dir = tmp_path / "fit"
    check_clean_run(run("--mode", "load", str(_scenario(tmp_path, FIT_RATE)),
                        "--out", str(fit_dir)), fit_dir)  # fmt: skip
    calibration = tmp_path / "calibration.yaml"
    done = cli("calibrate", str(fit_dir), "-o", str(calibration))
    assert done.returncode == 0, done.stdout + done.stderr

    path = _scenario(tmp_path, PREDICTED_RATE)
    measured_dir = tmp_path / "measured"
    done = run("--mode", "load", str(path), "--out", str(measured_dir))
    assert done.returncode == 0, done.stdout + done.stderr
    measured = _posted_p50(measured_dir)
    predicted = _sim(path, calibration, tmp_path / "predicted")
    assert measured / FACTOR <= predicted <= measured * FACTOR, (predicted, measured)

    data = yaml.safe_load(calibration.read_text())
    times = data["service_times"]
    data["service_times"] = {k: v if k in NOT_TIMES else _scaled(v, 10) for k, v in times.items()}
    slow = tmp_path / "calibration-x10.yaml"
    slow.write_text(yaml.safe_dump(data))
    mis_scaled = _sim(path, slow, tmp_path / "mis-scaled")
    assert mis_scaled > measured * FACTOR, (mis_scaled, measured)
