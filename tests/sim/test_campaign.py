"""`testbed seeds`: a campaign passes, a bug fails it with a command that reproduces the failure,
the outcome of every seed is the same whatever the number of jobs, and bad input exits 2."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml
from sim_harness import QUICKSTART

from sim.campaign import CampaignJob, run_seeds
from testbed.seeds import judge_seed

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
    one = sorted(run_seeds(judge_seed, job, range(10, 14), 1), key=lambda o: o.seed)
    two = sorted(run_seeds(judge_seed, job, range(10, 14), 2), key=lambda o: o.seed)
    assert [o.seed for o in one] == [10, 11, 12, 13]
    assert one == two  # wall time is not compared
    assert any(not o.ok for o in one), "the bug should fail some of these seeds"
    assert len({o.posted_p99 for o in one}) == 4, "different seeds, different runs"


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_bad_input_exits_2_with_a_message_naming_the_problem(tmp_path: Path):
    scenario = str(small_scenario(tmp_path))
    cases = {
        ("--count", "0"): "--count: must be at least 1, got 0",
        ("--count", "2", "--jobs", "0"): "--jobs: must be at least 1, got 0",
        ("--count", "2", "--start", "-1"): "--start: seeds must lie between 0 and 2^63-1",
        ("--count", "2", "--bug", "nope"): "--bug: unknown bug 'nope' (valid: ack-before-durable,",
    }
    for args, message in cases.items():
        done = cli("seeds", scenario, *args, "--out", str(tmp_path / "x"))
        assert done.returncode == 2, args
        assert message in _one_line(done.stderr), (args, done.stderr)
    assert "skip-idempotency" in _one_line(done.stderr)
    missing = cli("seeds", str(tmp_path / "nope.yaml"), "--count", "2")
    assert missing.returncode == 2
    assert f"{tmp_path / 'nope.yaml'}: no such file" in _one_line(missing.stderr)
    broken = small_scenario(tmp_path, duration="soon")
    bad = cli("seeds", str(broken), "--count", "2")
    assert bad.returncode == 2 and "duration:" in bad.stderr
    assert not (tmp_path / "x").exists(), "bad input writes nothing"
