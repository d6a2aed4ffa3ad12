"""testbed sweep: finds the knee where queueing theory puts it, the same on a Dask cluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from sim.service_times import DEFAULTS
from testbed.cli import app
from testbed.commands import register

register(app)
RATES = (0.4, 0.7, 0.9, 1.15, 1.4)
"""Offered load as multiples of the analytical capacity: three below it, two above."""


def gateway_capacity() -> float:
    """Requests per second one gateway worker serves, from the sim's service times: its CPU, the
    round trip to the ledger in its zone and the commit, which the worker waits for."""
    t = DEFAULTS
    commit = t.ledger_commit.base.mean + t.ledger_commit.per_item
    return 1.0 / (t.gateway_accept.mean + 2 * t.same_zone.mean + commit)


def gateway_bound(tmp_path: Path) -> Path:
    """One zone, one gateway worker, everything else ample; clients wait and never retry, so
    what the gateway cannot serve queues instead of turning into retries."""
    scenario = {
        "description": "gateway-bound: one worker, known service time",
        "seed": 3,
        "duration": "5s",
        "drain": "30s",
        "topology": {
            "zones": ["a"],
            "gateway": {"replicas": 1, "workers": 1},
            "payments": {"workers": 4},
            "ledger": {"connections": 16, "replicas": 0},
            "settlement": {"cutoff": "2s"},
        },
        "workload": {
            "tenants": 1,
            "accounts": 500,
            "rate": "100/s",
            "client": {"timeout": "60s", "retries": 0, "duplicate_probability": 0.0},
        },
        "slos": ["ack.p99 < 250ms", "audit.violations == 0"],
    }
    path = tmp_path / "gateway-bound.yaml"
    path.write_text(yaml.safe_dump(scenario))
    return path


def sweep(*args: str) -> Any:
    return CliRunner().invoke(app, ["sweep", *args])


@pytest.fixture(scope="module")
def knee_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    base = tmp_path_factory.mktemp("sweep")
    scenario = gateway_bound(base)
    rates = ",".join(f"{gateway_capacity() * r:.1f}" for r in RATES)
    vary = f"workload.rate={rates}"
    done = sweep(str(scenario), "--vary", vary, "--jobs", "2", "--out", str(base / "local"))
    assert done.exit_code == 0, done.output
    return scenario, base / "local", vary


def test_the_knee_is_where_the_analytical_capacity_puts_it(knee_sweep: tuple[Path, Path, str]):
    _, out, _ = knee_sweep
    capacity = json.loads((out / "capacity.json").read_text())
    [curve] = capacity["curves"]
    points = pd.read_csv(out / "points.csv")
    assert len(points) == 5 and list(points["point"]) == [0, 1, 2, 3, 4]
    c = gateway_capacity()
    # the knee is the last load below capacity; the overloaded points carry capacity and no more
    assert curve["knee"] == pytest.approx(points["offered"][2])
    assert 0.85 * c < curve["knee"] < c
    assert curve["capacity"] == pytest.approx(c, rel=0.1)
    assert curve["saturated"] is True
    assert curve["bottleneck"] == "gateway" and curve["bottleneck_utilization"] > 0.95
    sustained = points["throughput"] >= 0.95 * points["offered"]
    assert list(sustained) == [True, True, True, False, False]
    assert points["ack.p99"].is_monotonic_increasing
    # SLOs (ack p99 < 250ms) hold below the knee only; recommended keeps 20% headroom
    assert curve["max_load_at_slos"] <= curve["knee"]
    assert curve["recommended"] == pytest.approx(0.8 * curve["max_load_at_slos"])


def test_every_point_is_a_run_with_its_report_and_the_sweep_has_one(
    knee_sweep: tuple[Path, Path, str],
):
    _, out, _ = knee_sweep
    points = pd.read_parquet(out / "points.parquet")
    assert list(points.columns[:4]) == ["point", "run_dir", "workload.rate", "seed"]
    assert {"util:gateway", "queue:gateway", "posted.p99", "settled.p50"} <= set(points.columns)
    for run_dir in points["run_dir"]:
        assert (out / run_dir / "report.html").exists()
        assert (out / run_dir / "summary.json").exists()
    text = (out / "report.html").read_text()
    for heading in ("Recommendation", "Offered and achieved throughput", "Latency against load",
                    "Utilization per node role", "Every point"):  # fmt: skip
        assert f"<h2>{heading}</h2>" in text
    assert "no topology size was varied" in text
    (out / "report.html").unlink()
    rebuilt = CliRunner().invoke(app, ["report", str(out)])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert (out / "report.html").read_text() == text


def test_a_dask_cluster_gives_the_same_points_as_the_local_pool(
    knee_sweep: tuple[Path, Path, str], tmp_path: Path
):
    from distributed import LocalCluster

    scenario, local, vary = knee_sweep
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None, scheduler_port=0) as cluster:  # fmt: skip
        address = cluster.scheduler_address
        done = sweep(str(scenario), "--vary", vary, "--scheduler", address, "--out",
                     str(tmp_path / "dask"))  # fmt: skip
    assert done.exit_code == 0, done.output
    assert address.startswith("tcp://")
    assert (tmp_path / "dask" / "points.csv").read_bytes() == (local / "points.csv").read_bytes()


def test_a_calibrated_sweep_charges_the_fitted_service_times(tmp_path: Path):
    # A gateway fitted at 5 ms of CPU a request: its one worker serves about 146 a second
    # (with the commit and the round trip), where the defaults' serves about 364.
    calibration = tmp_path / "calibration.yaml"
    calibration.write_text("service_times: {gateway_accept: {constant: {value: 0.005}}}\n")
    rate = round(0.9 * gateway_capacity())
    out = tmp_path / "calibrated"
    done = sweep(str(gateway_bound(tmp_path)), "--vary", f"workload.rate={rate}",
                 "--jobs", "1", "--calibration", str(calibration), "--out", str(out))  # fmt: skip
    assert done.exit_code in (0, 1), done.output  # 1: the point fails its ack SLO
    sha = json.loads((out / "sweep.json").read_text())["calibration"]["sha256"]
    (point,) = pd.read_csv(out / "points.csv").itertuples()
    meta = json.loads((out / point.run_dir / "meta.json").read_text())
    assert meta["calibration"]["sha256"] == sha
    assert point.throughput < 160 < 0.6 * rate


def test_a_load_sweep_runs_each_point_on_real_processes(tmp_path: Path):
    scenario = yaml.safe_load(gateway_bound(tmp_path).read_text())
    scenario.update(duration="2s", drain="20s")
    scenario["workload"].update(accounts=20)
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(scenario))
    done = sweep(str(path), "--vary", "workload.rate=10,20", "--mode", "load",
                 "--out", str(tmp_path / "load"))  # fmt: skip
    assert done.exit_code == 0, done.output
    points = pd.read_csv(tmp_path / "load" / "points.csv")
    assert list(points["workload.rate"]) == [10, 20]
    assert list(points["audit_ok"]) == [True, True]
    for run_dir in points["run_dir"]:
        meta = json.loads((tmp_path / "load" / run_dir / "meta.json").read_text())
        assert meta["mode"] == "load"


@pytest.mark.parametrize("flags", [["--jobs", "2"], ["--scheduler", "tcp://127.0.0.1:8786"]])
def test_a_load_sweep_refuses_parallel_points(knee_sweep: tuple[Path, Path, str], flags):
    scenario, _, _ = knee_sweep
    done = sweep(str(scenario), "--vary", "workload.rate=1,2", "--mode", "load", *flags,
                 "--out", str(scenario.parent / "never"))  # fmt: skip
    assert done.exit_code == 2
    assert done.output.strip() == (
        f"{flags[0]}: load points run one at a time on this machine (two at once would "
        "share its cores and measure each other)"
    )
    assert not (scenario.parent / "never").exists()


@pytest.mark.parametrize(
    ("vary", "line"),
    [
        ("topology.ledger.shards=1,2",
         "--vary topology.ledger.shards=1,2: topology.ledger.shards is not in the scenario "
         "schema (topology.ledger has: connections, replicas, replication, replication_lag)"),
        ("workload.rate=500:100:5",
         "--vary workload.rate=500:100:5: the range is empty (LO must be below HI and STEPS at "
         "least 1; STEPS 1 takes LO alone)"),
        ("workload.rate=100:500:0",
         "--vary workload.rate=100:500:0: the range is empty (LO must be below HI and STEPS at "
         "least 1; STEPS 1 takes LO alone)"),
        ("workload.rate=low:high:3",
         "--vary workload.rate=low:high:3: a range must be numeric LO:HI:STEPS, e.g. 100:2000:5"),
        ("topology.gateway.workers=1:4:3",
         "--vary topology.gateway.workers=1:4:3: topology.gateway.workers is a whole number; "
         "choose LO, HI and STEPS whose steps are whole (e.g. 1:8:8)"),
        ("topology.gateway.workers=0,1",
         "--vary topology.gateway.workers=0,1: the value 0 is invalid: "
         "topology.gateway.workers: input should be greater than or equal to 1"),
        ("rate=100", "--vary rate=100: rate is not in the scenario schema (the scenario has: "
         "description, seed, duration, drain, topology, workload, faults, slos, bugs, checks)"),
    ],
)  # fmt: skip
def test_bad_vary_exits_2_with_one_line_and_runs_nothing(tmp_path: Path, vary: str, line: str):
    out = tmp_path / "sweep"
    done = sweep(str(gateway_bound(tmp_path)), "--vary", vary, "--out", str(out))
    assert done.exit_code == 2
    assert done.output.strip().splitlines() == [line]
    assert not out.exists()


def test_a_missing_scenario_and_a_bad_scheduler_are_refused(tmp_path: Path):
    done = sweep(str(tmp_path / "nope.yaml"), "--vary", "workload.rate=1,2")
    assert done.exit_code == 2 and done.output.strip() == f"{tmp_path / 'nope.yaml'}: no such file"
    done = sweep(str(gateway_bound(tmp_path)), "--vary", "workload.rate=1,2", "--scheduler", "x")
    assert done.exit_code == 2
    assert done.output.strip() == (
        "--scheduler: must be a Dask scheduler address like tcp://HOST:8786, got 'x'"
    )
    done = sweep(str(gateway_bound(tmp_path)), "--vary", "workload.rate=1,2", "--jobs", "2",
                 "--scheduler", "tcp://127.0.0.1:8786")  # fmt: skip
    assert done.exit_code == 2
    assert done.output.strip() == (
        "--jobs: not with --scheduler (a Dask cluster runs as many jobs at once as its workers "
        "have threads)"
    )
