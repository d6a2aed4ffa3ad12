"""Calibration end to end: a load run's processes time their stages, `testbed calibrate` fits the
sim's service times to them, and a sim run uses the file and says so in its meta."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_load_runtime import TESTBED, check_clean_run, run, scenario

from sim.calibration import load_calibration


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TESTBED, *args], capture_output=True, text=True, timeout=300,
                          check=False)  # fmt: skip


@pytest.mark.timeout(300)
def test_a_load_run_calibrates_the_sim(tmp_path: Path) -> None:
    path = scenario(tmp_path)
    load_dir = tmp_path / "load"
    check_clean_run(run("--mode", "load", str(path), "--out", str(load_dir)), load_dir)

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

    out = tmp_path / "calibration.yaml"
    done = cli("calibrate", str(load_dir), "-o", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
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
