"""`testbed seeds`: a campaign passes, a bug fails it with a command that reproduces the failure,
the outcome of every seed is the same whatever the number of jobs or on a Dask cluster, and bad
input exits 2."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from sim_harness import QUICKSTART

from sim.campaign import WALL_FIELDS, CampaignJob
from testbed.judge import run_seeds

TESTBED = str(Path(sys.executable).with_name("testbed"))
BUG = "skip-idempotency"
"""A bug the small scenario catches in most seeds: client retries become new payments."""


def small_scenario(tmp_path: Path, **changes: object) -> Path:
    """The quickstart, three seconds at 100/s: a few hundred payments, under a second a seed."""
    data = yaml.safe_load(QUICKSTART.read_text())
    data["duration"] = "3s"
    data["workload"]["rate"] = "100/s"
    data.update(changes)
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [TESTBED, *args], capture_output=True, text=True, timeout=240, env=env, check=False
    )


def test_a_passing_campaign_exits_0_and_writes_its_summary(tmp_path: Path):
    scenario = small_scenario(tmp_path)
    done = cli("seeds", str(scenario), "--count", "8", "--jobs", "2", "--out", str(tmp_path / "c"))
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((tmp_path / "c" / "campaign.json").read_text())
    assert (summary["run"], summary["passed"], summary["failed"]) == (8, 8, 0)
    assert summary["seeds"] == {"first": 1, "last": 8}
    assert summary["failures"] == [] and summary["failures_by_kind"] == {}
    assert 8 * 200 < summary["payments"] < 8 * 400
    ack, posted = (summary["latency_across_seeds"][k] for k in ("ack_p99", "posted_p99"))
    assert 0 < ack["p50"] <= ack["p99"] <= ack["max"] < posted["max"]
    assert summary["wall_seconds"] > 0
    # nothing but the campaign's summary, per-seed table and report is written for seeds that pass
    written = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert written == ["campaign.json", "report.html", "seeds.csv"]


def test_a_failing_campaign_exits_1_and_its_reproduce_command_reproduces(tmp_path: Path):
    scenario = small_scenario(tmp_path)
    out = tmp_path / "c"
    done = cli(
        "seeds", str(scenario), "--count", "4", "--jobs", "2", "--bug", BUG, "--out", str(out)
    )
    assert done.returncode == 1, done.stdout + done.stderr
    summary = json.loads((out / "campaign.json").read_text())
    assert summary["failed"] >= 1 and summary["bugs"] == [BUG]
    failure = summary["failures"][0]
    seed, first = failure["seed"], failure["first"]
    assert failure["reproduce"] == f"testbed run {scenario} --seed {seed} --bug {BUG}"
    assert f"seed {seed} FAILED: " in done.stdout
    assert f"reproduce:  {failure['reproduce']}" in done.stdout
    assert Path(failure["run_dir"]) == out / f"seed-{seed}"
    recorded = json.loads((out / f"seed-{seed}" / "audit.json").read_text())
    assert recorded["violations"][0]["kind"] == first["kind"]

    command = failure["reproduce"].split()[1:]
    again = cli(*command, "--out", str(tmp_path / "again"))
    assert again.returncode == 1
    audit = json.loads((tmp_path / "again" / "audit.json").read_text())
    assert audit["counts"] == recorded["counts"]
    assert audit["violations"][0] == recorded["violations"][0]
    assert audit["violations"][0]["payment_id"] == first["payment_id"]


def test_seeds_shrink_writes_the_first_failure_as_a_smaller_scenario(tmp_path: Path):
    scenario = small_scenario(tmp_path)
    out = tmp_path / "c"
    done = cli("seeds", str(scenario), "--count", "3", "--bug", BUG, "--out", str(out), "--shrink")
    assert done.returncode == 1, done.stdout + done.stderr
    first = json.loads((out / "campaign.json").read_text())["failures"][0]
    shrunk = yaml.safe_load((out / "shrunk.yaml").read_text())
    assert shrunk["seed"] == first["seed"] and shrunk["bugs"] == [BUG]
    assert shrunk.get("faults", {}).get("timed", []) == []  # the bug needs no crash
    assert f"reproduce: testbed run {out / 'shrunk.yaml'} --seed {first['seed']}" in done.stdout
    again = cli("run", str(out / "shrunk.yaml"), "--out", str(tmp_path / "again"))
    assert again.returncode == 1
    audit = json.loads((tmp_path / "again" / "audit.json").read_text())
    assert audit["violations"][0]["kind"] == first["first"]["kind"]


def test_every_seed_has_the_same_outcome_with_one_job_or_two(tmp_path: Path):
    from scenarios.loader import load_scenario

    loaded = load_scenario(small_scenario(tmp_path))
    scenario = loaded.scenario.model_copy(update={"bugs": [BUG]})
    job = CampaignJob(scenario, "small", None)
    one = sorted(run_seeds(job, range(10, 14), 1), key=lambda o: o.seed)
    two = sorted(run_seeds(job, range(10, 14), 2), key=lambda o: o.seed)
    assert [o.seed for o in one] == [10, 11, 12, 13]
    assert one == two  # wall time is not compared
    assert any(not o.ok for o in one), "the bug should fail some of these seeds"
    assert len({o.posted_p99 for o in one}) == 4, "different seeds, different runs"


def test_a_dask_cluster_gives_the_same_campaign_as_the_local_pool(tmp_path: Path):
    from distributed import LocalCluster

    scenario = str(small_scenario(tmp_path))
    args = ("seeds", scenario, "--count", "4", "--start", "10", "--bug", BUG)
    local = cli(*args, "--jobs", "2", "--out", str(tmp_path / "local"))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None, scheduler_port=0) as cluster:  # fmt: skip
        address = cluster.scheduler_address
        dask = cli(*args, "--scheduler", address, "--out", str(tmp_path / "dask"))
    assert (local.returncode, dask.returncode) == (1, 1), dask.stdout + dask.stderr
    assert f"{Path(scenario).stem}, on {address}" in dask.stdout
    on_pool, on_dask = (json.loads((tmp_path / d / "campaign.json").read_text())
                        for d in ("local", "dask"))  # fmt: skip
    assert (on_pool["jobs"], on_pool["scheduler"]) == (2, None)
    assert (on_dask["jobs"], on_dask["scheduler"]) == (None, address)
    for c in (on_pool, on_dask):
        for f in WALL_FIELDS:
            del c[f]
        for failure in c["failures"]:  # the only field that names the campaign directory
            failure["run_dir"] = Path(failure["run_dir"]).name
    assert on_dask == on_pool
    assert 1 <= on_dask["failed"] < 4, "some seeds pass and some fail, so both are compared"
    seeds_csv = (tmp_path / "local" / "seeds.csv").read_bytes()
    assert (tmp_path / "dask" / "seeds.csv").read_bytes() == seeds_csv
    for failure in on_dask["failures"]:  # each failing seed's record, written by a Dask worker
        name = f"seed-{failure['seed']}"
        audits = [(tmp_path / d / name / "audit.json").read_text() for d in ("local", "dask")]
        assert audits[0] == audits[1]


@pytest.mark.timeout(300)
def test_a_campaign_whose_cluster_goes_away_keeps_the_seeds_that_finished(tmp_path: Path):
    from distributed import LocalCluster
    from distributed.diagnostics.plugin import SchedulerPlugin

    class Finished(SchedulerPlugin):  # type: ignore[misc]
        def __init__(self) -> None:
            self.count = 0

        def transition(self, key: object, start: str, finish: str, *args: object, **kw: object):
            self.count += finish == "memory"

    scenario = str(small_scenario(tmp_path))
    count = 400  # far more than run before the cluster goes: seconds each on two workers
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None, scheduler_port=0) as cluster:  # fmt: skip
        finished = Finished()
        cluster.scheduler.add_plugin(finished)
        out = tmp_path / "c"
        args = ["seeds", scenario, "--count", str(count), "--scheduler", cluster.scheduler_address]
        campaign = subprocess.Popen(
            [TESTBED, *args, "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, env={**os.environ, "COLUMNS": "200"},
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while finished.count < 2 and campaign.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert finished.count >= 2, "two seeds finish on the cluster"
    output, _ = campaign.communicate(timeout=180)
    assert campaign.returncode == 3, output
    summary = json.loads((out / "campaign.json").read_text())
    cut = summary["interrupted"]
    assert cut["reason"].startswith("--scheduler: lost tcp://"), cut
    assert summary["run"] >= 2 and summary["run"] + cut["seeds_not_run"] == count
    assert summary["passed"] == summary["run"], "the seeds that finished stand"
    assert len((out / "seeds.csv").read_text().splitlines()) == summary["run"] + 1
    assert "cut short" in (out / "report.html").read_text()
    assert f"{cut['seeds_not_run']} seeds did not run" in _one_line(output), output


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_bad_input_exits_2_with_a_message_naming_the_problem(tmp_path: Path):
    scenario = str(small_scenario(tmp_path))
    cases = {
        ("--count", "0"): "--count: must be at least 1, got 0",
        ("--count", "2", "--jobs", "0"): "--jobs: must be at least 1, got 0",
        ("--count", "2", "--start", "-1"): "--start: seeds must lie between 0 and 2^63-1",
        ("--count", "2", "--scheduler", "host:8786"):
            "--scheduler: must be a Dask scheduler address like tcp://HOST:8786, got 'host:8786'",
        ("--count", "2", "--jobs", "2", "--scheduler", "tcp://127.0.0.1:8786"):
            "--jobs: not with --scheduler (a Dask cluster runs as many jobs at once as its "
            "workers have threads)",
        ("--count", "2", "--scheduler", "tcp://127.0.0.1:1"):
            "--scheduler: cannot reach tcp://127.0.0.1:1: Connection refused",
        ("--count", "2", "--bug", "nope"): "--bug: unknown bug 'nope' (valid: ack-before-durable,",
    }  # fmt: skip
    for args, message in cases.items():
        done = cli("seeds", scenario, *args, "--out", str(tmp_path / "x"))
        assert done.returncode == 2, args
        assert message in _one_line(done.stderr), (args, done.stderr)
        if "--scheduler" in args:
            assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "skip-idempotency" in _one_line(done.stderr)
    missing = cli("seeds", str(tmp_path / "nope.yaml"), "--count", "2")
    assert missing.returncode == 2
    assert f"{tmp_path / 'nope.yaml'}: no such file" in _one_line(missing.stderr)
    broken = small_scenario(tmp_path, duration="soon")
    bad = cli("seeds", str(broken), "--count", "2")
    assert bad.returncode == 2 and "duration:" in bad.stderr
    assert not (tmp_path / "x").exists(), "bad input writes nothing"


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("jobs", "stop"),
    [(1, "ctrl-c"), (2, "ctrl-c"), (1, "sigterm"), (2, "sigterm")],
)
def test_ctrl_c_or_sigterm_stops_a_campaign_and_keeps_the_seeds_that_finished(
    tmp_path: Path, jobs: int, stop: str
):
    scenario = str(small_scenario(tmp_path))
    count = 400  # far more than run before the interrupt
    out = tmp_path / "c"
    args = ["seeds", scenario, "--count", str(count), "--jobs", str(jobs), "--bug", BUG]
    campaign = subprocess.Popen(
        [TESTBED, *args, "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env={**os.environ, "COLUMNS": "200"}, start_new_session=True,
    )  # fmt: skip

    def failing_seeds_written() -> int:
        return len(list(out.glob("seed-*/report.html")))

    deadline = time.monotonic() + 120
    while failing_seeds_written() < 2 and campaign.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert failing_seeds_written() >= 2, "two failing seeds' records were written"
    if stop == "ctrl-c":
        os.killpg(campaign.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole group
    else:
        campaign.terminate()  # kill PID: SIGTERM to the command alone
    output, _ = campaign.communicate(timeout=180)
    assert campaign.returncode == 3, output
    assert "Traceback" not in output, output
    summary = json.loads((out / "campaign.json").read_text())
    cut = summary["interrupted"]
    reason = {"ctrl-c": "stopped by the user (Ctrl-C)", "sigterm": "stopped by SIGTERM"}[stop]
    assert cut["reason"] == reason
    assert summary["run"] >= 1 and summary["run"] + cut["seeds_not_run"] == count
    assert summary["failed"] >= 1
    assert len((out / "seeds.csv").read_text().splitlines()) == summary["run"] + 1
    # every failing seed it reports has its whole record (a seed stopped midway is not reported)
    for failure in summary["failures"]:
        assert (Path(failure["run_dir"]) / "report.html").exists(), failure
    assert f"{cut['seeds_not_run']} seeds did not run" in _one_line(output), output
