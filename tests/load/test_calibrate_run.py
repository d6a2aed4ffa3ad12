"""Calibration end to end: a load run's processes time their stages, `testbed calibrate` fits the
sim's service times to them, a sim run uses the file and says so in its meta, and the calibrated
sim predicts a load run at another rate that it was not fitted on.

The prediction's band is generous (a factor of 3 either way) so that a noisy machine does not
fail it; what it catches is a calibration that is broken. On the quickstart's topology (SQLite,
consumers polling every 50 ms) the sim with its *default* service times also lands inside the
band, so a calibration that is not applied at all would pass the first check; the second check
runs the same fit with every service time scaled up 10x and asserts that this prediction falls
outside the band: a calibration file that does not reach the sim, or a fit whose times are 10x
too large, fails the test. (10x too small does not leave the band at this rate: posted p50 is
then mostly the consumers' polling, which is measured, not fitted.)
testbed/bench_calibration.py measures the same thing against a +-20% target.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from test_load_runtime import TESTBED, check_clean_run, run, scenario

from sim.calibration import load_calibration


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TESTBED, *args], capture_output=True, text=True, timeout=300,
                          check=False)  # fmt: skip


FIT_RATE, PREDICTED_RATE = 100, 200
"""Payments per second of the load run the calibration is fitted on, and of the one it predicts."""
FACTOR = 3.0
"""How far (either way) the predicted posted p50 may be from the measured one."""
NOT_TIMES = frozenset({"ledger_writers", "host_cores", "light_weight", "consumer_poll"})
"""Calibration fields that are not service times (counts, a fraction, a poll interval)."""


@dataclass(frozen=True)
class Fitted:
    scenario: Path
    load_dir: Path
    calibration: Path
    measured_scenario: Path
    """The scenario at PREDICTED_RATE, and its load run: what the calibration must predict."""
    measured_dir: Path


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> Fitted:
    """One load run at FIT_RATE and its calibration, shared by the tests of this module, and
    the load run at PREDICTED_RATE right after it: back to back, the two runs see the machine
    under the same other load (a busy machine slows real processes, not the sim)."""
    base = tmp_path_factory.mktemp("fit")
    path = _scenario(base, FIT_RATE)
    load_dir = base / "load"
    check_clean_run(run("--mode", "load", str(path), "--out", str(load_dir)), load_dir)
    measured_path = _scenario(base, PREDICTED_RATE)
    measured_dir = base / "measured"
    done = run("--mode", "load", str(measured_path), "--out", str(measured_dir))
    assert done.returncode == 0, done.stdout + done.stderr
    out = base / "calibration.yaml"
    done = cli("calibrate", str(load_dir), "-o", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    return Fitted(path, load_dir, out, measured_path, measured_dir)


@pytest.mark.timeout(300)
def test_a_load_run_calibrates_the_sim(fitted: Fitted, tmp_path: Path) -> None:
    path, load_dir, out = fitted.scenario, fitted.load_dir, fitted.calibration
    timings = pd.read_parquet(load_dir / "timings.parquet")
    assert not (load_dir / "timings").exists()  # the processes' files, merged and removed
    payments = pd.read_parquet(load_dir / "payments.parquet")
    requests = timings[timings["kind"] == "request"]
    # One row per payment the gateway made (funding included), none for a replay.
    assert sorted(requests["key"]) == sorted(payments["tenant"] + "/" + payments["idempotency_key"])
    assert (requests["commit"] > 0).all() and (requests["seconds"] > requests["commit"]).all()
    steps = timings[timings["kind"] == "step"]
    assert {"payments", "settlement", "reporting"} <= set(steps["stage"])
    worked = steps[steps["stage"] == "payments"]
    assert (worked["items"] + worked["skipped"] > 0).all()

    calibration = load_calibration(out)
    fitted = yaml.safe_load(out.read_text())["service_times"]
    assert {"gateway_accept", "ledger_commit", "payments_batch", "client"} <= set(fitted)
    assert fitted["gateway_accept"]["samples"] > 0
    assert calibration.times.consumer_poll == 0.05  # SQLite: the consumers polled
    assert calibration.source["run"] == str(load_dir)

    sim_dir = tmp_path / "sim"
    done = cli("run", str(path), "--calibration", str(out), "--out", str(sim_dir))
    assert done.returncode == 0, done.stdout + done.stderr
    meta = json.loads((sim_dir / "meta.json").read_text())
    assert meta["calibration"]["sha256"] == calibration.sha256

    # A sim run has nothing to calibrate from; a load run cannot take a calibration.
    done = cli("calibrate", str(sim_dir))
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"LOAD_RUN: {sim_dir} is a sim run; calibrate fits a load run (testbed run --mode load)"
    )
    done = cli("run", str(path), "--mode", "load", "--calibration", str(out))
    assert done.returncode == 2
    assert "--calibration: sim mode only" in done.stderr


def test_a_bad_calibration_file_is_one_line_naming_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text("service_times: {payments_batch: {base: {constant: {value: -1}}}}\n")
    done = cli("run", str(scenario(tmp_path)), "--calibration", str(bad),
                   "--out", str(tmp_path / "never"))  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"--calibration: {bad}: service_times.payments_batch.base.constant.value: "
        "Input should be greater than or equal to 0"
    )
    assert not (tmp_path / "never").exists()


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
def test_the_calibrated_sim_predicts_a_load_run_it_was_not_fitted_on(
    fitted: Fitted, tmp_path: Path
) -> None:
    calibration, path = fitted.calibration, fitted.measured_scenario
    measured = _posted_p50(fitted.measured_dir)
    predicted = _sim(path, calibration, tmp_path / "predicted")
    assert measured / FACTOR <= predicted <= measured * FACTOR, (predicted, measured)

    data = yaml.safe_load(calibration.read_text())
    times = data["service_times"]
    data["service_times"] = {k: v if k in NOT_TIMES else _scaled(v, 10) for k, v in times.items()}
    slow = tmp_path / "calibration-x10.yaml"
    slow.write_text(yaml.safe_dump(data))
    mis_scaled = _sim(path, slow, tmp_path / "mis-scaled")
    assert mis_scaled > measured * FACTOR, (mis_scaled, measured)
