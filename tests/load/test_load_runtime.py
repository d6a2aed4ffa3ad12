"""`testbed run --mode load`: the reference system as real processes, real faults, the same audit.

Each test runs a short scenario (a few seconds of traffic) end to end through the command line:
processes started from the topology, accounts funded through the API, Locust traffic, a fault
on a real process, the drain, the record read from the store, the audit. Afterwards no process
of the run is left, whatever happened.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import pytest
import yaml

from loadtest.system import RUN_DIR_ENV
from reference_impl.runtime.launcher import ServeProcess

ROOT = Path(__file__).resolve().parents[2]
TESTBED = str(Path(sys.executable).with_name("testbed"))


def scenario(tmp_path: Path, **changes: Any) -> Path:
    """The quickstart, shortened for a test, with `changes` merged one level deep."""
    data = yaml.safe_load((ROOT / "scenarios" / "quickstart.yaml").read_text())
    data.update(duration="6s", drain="40s")
    data["workload"].update(rate="100/s", tenants=1, accounts=50)
    data["topology"]["settlement"] = {"cutoff": "3s"}
    data["faults"] = {"timed": []}
    data["slos"] = ["audit.violations == 0", "liveness.stuck == 0"]
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TESTBED, "run", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def run_processes(run_dir: Path) -> list[psutil.Process]:
    """Processes still alive that this run started (each carries its run directory)."""
    found = []
    for p in psutil.process_iter(["environ", "status"]):
        try:
            env = p.info["environ"] or {}
            if env.get(RUN_DIR_ENV) == str(run_dir.resolve()) and p.info["status"] != "zombie":
                found.append(p)
        except psutil.Error:
            continue
    return found


def record(run_dir: Path) -> dict[str, pd.DataFrame]:
    return {
        n: pd.read_parquet(run_dir / f"{n}.parquet") for n in ("requests", "payments", "faults")
    }


def check_clean_run(
    done: subprocess.CompletedProcess[str], run_dir: Path, ours: bool = True
) -> dict[str, Any]:
    """A load run that passed, lost and duplicated nothing and left no process; `ours`: of our
    own processes (not a --target), every one of them sampled."""
    assert done.returncode == 0, done.stdout + done.stderr
    audit = json.loads((run_dir / "audit.json").read_text())
    assert audit["ok"] and not any(audit["counts"].values()), audit["violations"][:3]
    tables = record(run_dir)
    req = tables["requests"]
    # Complete: every key the traffic sent has its attempts, and every 202 names its payment.
    acked = req[req["status"] == 202]
    assert set(acked["payment_id"]) <= set(tables["payments"]["payment_id"])
    assert (req.groupby("key")["attempt"].max() == req.groupby("key")["attempt"].count()).all()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["mode"] == "load"
    # The rate offered is the scenario's 100/s unless the generator says it could not keep up
    # (a loaded machine): then it is what the generator measured, and the verdict says so.
    generator = summary["generator"]
    if generator["bound"]:
        assert "load generator could NOT keep up" in done.stdout
        assert 0 < summary["metrics"]["offered"] <= 105
    else:
        assert summary["metrics"]["offered"] == pytest.approx(100, rel=0.25)
    assert run_processes(run_dir) == []
    if ours:  # every process sampled, each of the gateway's workers (2 replicas) by its name
        nodes = set(pd.read_parquet(run_dir / "nodes.parquet")["node"])
        gateway = {"gateway-1", "gateway-2"}
        assert nodes == gateway | {"payments-1", "payments-2", "settlement", "projector"}
    return summary


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_flags(request: pytest.FixtureRequest) -> list[str]:
    if request.param == "sqlite":
        return []
    url: str = request.getfixturevalue("postgres_url")
    return ["--store", url]


@pytest.mark.timeout(300)
def test_a_payments_worker_killed_mid_run_loses_and_duplicates_nothing(
    tmp_path: Path, store_flags: list[str]
) -> None:
    faults = {"timed": [{"kind": "crash", "node": "payments-1", "at": "2s", "duration": "1s"}]}
    path = scenario(tmp_path, faults=faults)
    run_dir = tmp_path / "run"
    check_clean_run(run("--mode", "load", str(path), "--out", str(run_dir), *store_flags), run_dir)
    faults_table = record(run_dir)["faults"]
    assert list(faults_table[["kind", "target", "detail"]].itertuples(index=False)) == [
        ("crash", "payments-1", "SIGKILL; started again")
    ]
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["restarts"] == {"payments-1": 1} and meta["faults_not_applied"] == []


@pytest.mark.timeout(300)
def test_a_worker_paused_past_its_lease_is_fenced_and_the_audit_is_clean(tmp_path: Path) -> None:
    faults = {"timed": [{"kind": "pause", "node": "payments-1", "at": "2s", "duration": "3s"}]}
    path = scenario(tmp_path, faults=faults, topology={"payments": {"session_timeout": "1s"}})
    run_dir = tmp_path / "run"
    check_clean_run(run("--mode", "load", str(path), "--out", str(run_dir)), run_dir)
    parts = pd.read_parquet(run_dir / "partitions.parquet")
    during = parts[(parts["group"] == "payments") & (parts["at"] > parts["at"].min() + 3.5)]
    # The paused worker's partitions moved: at some sample one member held all of them.
    assert (during.groupby("at")["member"].nunique() == 1).any()


@pytest.mark.timeout(300)
def test_a_zoo_bug_is_caught_by_a_real_load_run(tmp_path: Path) -> None:
    client = {"duplicate_probability": 0.2, "timeout": "2s", "retries": 3}
    path = scenario(tmp_path, workload={"client": client})
    run_dir = tmp_path / "run"
    done = run("--mode", "load", str(path), "--out", str(run_dir), "--bug", "skip-idempotency")
    assert done.returncode == 1, done.stdout + done.stderr
    audit = json.loads((run_dir / "audit.json").read_text())
    assert audit["counts"]["duplicate"] > 0
    assert run_processes(run_dir) == []


@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_network_faults_act_through_the_proxies_and_what_cannot_apply_is_listed(
    tmp_path: Path, postgres_url: str
) -> None:
    faults = {
        "timed": [
            {"kind": "latency", "extra": "100ms", "at": "1s", "duration": "1500ms"},
            {"kind": "rebalance", "group": "payments", "at": "2s"},
            {"kind": "loss", "probability": 0.2, "at": "3s", "duration": "1s"},
            {"kind": "partition", "between": ["a", "b"], "at": "4s", "duration": "1s"},
            {"kind": "partition", "between": ["payments-1", "ledger"], "at": "4500ms",
             "duration": "1s"},
        ]
    }  # fmt: skip
    path = scenario(tmp_path, faults=faults)
    run_dir = tmp_path / "run"
    done = run("--mode", "load", str(path), "--out", str(run_dir), "--store", postgres_url)
    check_clean_run(done, run_dir)
    # Listed with the reason, not dropped: zones share this one machine.
    meta = json.loads((run_dir / "meta.json").read_text())
    assert [(f["kind"], f["target"], f["reason"]) for f in meta["faults_not_applied"]] == [
        (
            "partition",
            "a<->b",
            "a partition in a load run cuts clients<->gateway or a service process's link to"
            " ledger (on PostgreSQL); zones share one machine",
        )
    ]
    # ... and in the printed verdict and summary.json, with the generator's achieved rate
    # against the target and what of the topology load mode runs without (the two zones).
    assert "faults not applied in load mode (1)" in done.stdout
    assert "a<->b" in done.stdout
    assert "load generator kept up" in done.stdout or "could NOT keep up" in done.stdout
    assert "/s target" in done.stdout
    assert "not modelled in load mode" in done.stdout and "topology.zones" in done.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["faults_not_applied"] == meta["faults_not_applied"]
    generator = summary["generator"]
    assert generator["target_rate"] == pytest.approx(100, rel=0.01)
    # what was sent depends on the machine (a loaded one sent 70/s of 100/s): the summary says
    # what the record measured, and the verdict prints it
    achieved = generator["achieved_rate"]
    assert achieved == meta["generator"]["achieved_rate"] and 0 < achieved <= 105
    assert f"{achieved:.1f}/s sent of 100.0/s target" in done.stdout
    assert generator["bound"] == meta["generator"]["bound"]
    assert "topology.zones" in {n["setting"] for n in summary["not_modelled"]}
    assert "Faults not applied in load mode (1)" in (run_dir / "report.html").read_text()
    tables = record(run_dir)
    faults_table = tables["faults"]
    rows = {r.kind: r for r in faults_table[faults_table["target"] != "a<->b"].itertuples()}
    assert rows["rebalance"].detail == "8 claims revoked"
    assert rows["latency"].target == "clients<->gateway, services<->ledger"
    assert rows["latency"].detail == "+100ms each way (services<->ledger: 5 links, one per process)"
    assert rows["loss"].target == "clients<->gateway"
    assert _count(rows["loss"].detail, "connections cut") > 0
    assert rows["partition"].target == "payments-1<->ledger"  # that process's link only
    assert _count(rows["partition"].detail, "chunks held") > 0
    # A request sent and answered inside the latency window crossed the clients' link twice.
    req = tables["requests"]
    lat = rows["latency"]
    inside = req[(req["sent_at"] >= lat.start) & (req["done_at"] <= lat.end)]
    assert len(inside) > 0 and ((inside["done_at"] - inside["sent_at"]) >= 0.2).all()


def _count(detail: str, what: str) -> int:
    """The number before `what` in a fault row's detail."""
    return int(detail.split(what)[0].split()[-1])


def test_against_a_target_the_audit_reads_its_public_api(tmp_path: Path) -> None:
    # testbed serve cuts off every 10 s and settles a day's payments after 60 s: the drain need
    # not wait for the settling, but spans a cut-off, so that every payment posted is in a sent
    # batch (a cut-off falls anywhere in the traffic, wherever serve's clock stands).
    path = scenario(tmp_path, drain="12s")
    with ServeProcess(f"sqlite:///{tmp_path / 'target.db'}", {"tenant-1": "k1"}) as target:
        run_dir = tmp_path / "run"
        done = run("--mode", "load", str(path), "--out", str(run_dir), "--target", target.url,
                   "--api-key", "tenant-1:k1")  # fmt: skip
        summary = check_clean_run(done, run_dir, ours=False)
        assert target.stop() == 0
    assert json.loads((run_dir / "meta.json").read_text())["target"] == target.url
    assert summary["payments"].get("settled", 0) + summary["payments"].get("posted", 0) > 400


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--store", "mysql://x"], "--store: invalid store URL"),
        (["--target", "http://127.0.0.1:9"], "--api-key: no key for tenant 'tenant-1'"),
        (["--api-key", "t:k"], "--api-key: only with --target"),
        (["--mode", "sim", "--locust-workers", "2"], "--locust-workers: only with --mode load"),
        (["--bug", "lost-update"], "--bug lost-update: sim mode only"),
    ],
)
def test_bad_load_flags_are_one_line_naming_the_flag(
    tmp_path: Path, args: list[str], message: str
) -> None:
    mode = [] if "--mode" in args else ["--mode", "load"]
    done = run(*mode, str(scenario(tmp_path)), "--out", str(tmp_path / "run"), *args)
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), done.stderr
    assert run_processes(tmp_path / "run") == []


def test_a_bank_partner_load_mode_cannot_run_is_one_line_and_starts_nothing(
    tmp_path: Path,
) -> None:
    partners = [{"name": "bank-a", "missing_line_probability": 0.05}]
    path = scenario(tmp_path, topology={"bank_partners": partners})
    done = run("--mode", "load", str(path), "--out", str(tmp_path / "run"))
    assert done.returncode == 2, done
    assert done.stderr.strip().splitlines() == [
        "topology.bank_partners[0].missing_line_probability: load mode runs a perfect bank "
        "partner (partner behaviours are sim mode only); got 0.05"
    ]
    assert not (tmp_path / "run").exists()


def test_a_store_that_cannot_be_opened_is_one_line_and_starts_nothing(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "store.db").mkdir()  # the store's file is a directory
    done = run("--mode", "load", str(scenario(tmp_path)), "--out", str(tmp_path / "run"))
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("--store: cannot open"), done.stderr
    assert run_processes(tmp_path / "run") == []


def test_a_busy_port_is_one_line_naming_it_and_starts_nothing(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run("--mode", "load", str(scenario(tmp_path)), "--out", str(tmp_path / "run"),
                   "--port", str(port))  # fmt: skip
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"the system could not be started: port {port}:"), lines[0]
    assert run_processes(tmp_path / "run") == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_no_process_outlives_an_interrupted_or_killed_load_run(tmp_path: Path, sig: int) -> None:
    path = scenario(tmp_path, duration="60s")
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [TESTBED, "run", "--mode", "load", str(path), "--out", str(run_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while len(run_processes(run_dir)) < 4:  # gateway, two payments workers, settlement, ...
        assert time.monotonic() < deadline, "the system never started"
        assert proc.poll() is None
        time.sleep(0.2)
    time.sleep(2.0)  # into the traffic
    os.kill(proc.pid, sig)
    proc.wait(120)
    deadline = time.monotonic() + 60
    while run_processes(run_dir):
        assert time.monotonic() < deadline, [p.cmdline() for p in run_processes(run_dir)]
        time.sleep(0.2)
