"""Shrinking: ddmin finds a 1-minimal fault set, the workload halves while the failure holds, and
`testbed shrink` turns a real failing run into a smaller scenario file that fails the same way."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from sim_harness import quickstart_with
from test_campaign import cli, small_scenario

from scenarios.loader import load_scenario
from scenarios.schema import Scenario
from sim import export
from sim.run import simulate
from sim.shrink import ddmin, expand_swarm, fault_items, keep_faults, shrink


def test_ddmin_finds_the_two_items_that_matter_among_twelve():
    asked: set[tuple[int, ...]] = set()

    def fails(items: list[int]) -> bool:
        asked.add(tuple(items))
        return {3, 8} <= set(items)

    assert ddmin(list(range(12)), fails) == [3, 8]
    assert len(asked) < 30  # distinct runs: the shrinker caches repeats
    assert ddmin(list(range(12)), lambda items: 7 in items) == [7]
    assert ddmin([5], lambda items: True) == []  # fails even with nothing: nothing is needed
    assert ddmin([5], lambda items: bool(items)) == [5]


NOISY = {
    "duration": "8s",
    "faults": {
        "timed": [
            {"kind": "crash", "node": "payments-1", "at": "1s", "duration": "1s"},
            {"kind": "latency", "zones": ["a", "b"], "at": "2s", "duration": "1s", "extra": "20ms"},
            {"kind": "crash", "node": "ledger", "at": "3s", "duration": "500ms"},
            {"kind": "crash", "node": "gateway-2", "at": "5s", "duration": "1s"},
        ],
        "background": {
            "crashes": {"rate": "0.1/s", "nodes": ["payments-2"]},
            "latency": {"rate": "1/s"},
        },
    },
}


def _ledger_crashes(s: Scenario) -> int:
    return sum(getattr(f, "node", None) == "ledger" for f in s.faults.timed)


def test_fault_items_cover_timed_faults_and_background_families_and_keep_faults_drops_them():
    scenario = quickstart_with(**NOISY)
    items = fault_items(scenario.faults)
    assert len(items) == 6
    assert ((("background", "crashes"), None)) in items
    only = keep_faults(scenario, [(("timed",), 2)])
    assert [f.kind for f in only.faults.timed] == ["crash"] and _ledger_crashes(only) == 1
    assert only.faults.background.crashes is None and only.faults.background.latency is None
    assert fault_items(only.faults) == [(("timed",), 0)]
    assert scenario.faults.background.crashes is not None, "the original is untouched"


def test_shrink_keeps_the_needed_fault_and_halves_the_workload_while_it_still_fails():
    scenario = quickstart_with(**NOISY)

    def fails(s: Scenario) -> bool:  # a stand-in for "the audit still finds `lost`"
        return _ledger_crashes(s) == 1 and s.duration >= 2 and s.workload.rate >= 40

    result = shrink(scenario, fails)
    small = result.scenario
    assert fault_items(small.faults) == [(("timed",), 0)] and _ledger_crashes(small) == 1
    assert small.duration == 2.0  # 8 -> 4 -> 2; 1 would pass
    assert small.workload.rate == 50.0  # 200 -> 100 -> 50; 25 would pass
    assert small.workload.accounts == 2 and small.workload.tenants == 1
    assert small.workload.client.retries == 0
    assert result.steps[0] == "faults 6 -> 1 (kept: timed[2] crash)"
    assert "duration 8s -> 2s" in result.steps and "rate 200/s -> 50/s" in result.steps
    assert fails(small) and result.trials < 60


def test_a_swarm_written_out_makes_the_same_run_and_shrinks_to_the_one_family_that_fails():
    swarm = quickstart_with(duration="3s", faults={"swarm": True})
    expanded = expand_swarm(swarm, 7)
    assert not expanded.faults.swarm
    kinds = [f.kind for f in expanded.faults.background.poisson]
    assert len(kinds) >= 3, kinds
    a, b = export.tables(simulate(swarm, 7)), export.tables(simulate(expanded, 7))
    assert a["journal"].equals(b["journal"]) and a["requests"].equals(b["requests"])
    faults_a = a["faults"][a["faults"]["kind"] != "swarm"].reset_index(drop=True)
    assert faults_a.equals(b["faults"]) and len(faults_a) > 0

    culprit = kinds[1]

    def fails(s: Scenario) -> bool:  # a stand-in: only the second drawn family matters
        drawn = s.faults.background.poisson
        return s.faults.swarm or any(f.kind == culprit for f in drawn)

    small = shrink(swarm, fails, seed=7)
    assert [f.kind for f in small.scenario.faults.background.poisson] == [culprit]
    assert not small.scenario.faults.swarm and small.scenario.faults.timed == []
    assert small.steps[0].startswith(f"swarm written out: {len(kinds)} background fault")


def test_shrink_refuses_a_scenario_that_does_not_fail():
    try:
        shrink(quickstart_with(), lambda s: False)
    except ValueError as e:
        assert "does not fail" in str(e)
    else:
        raise AssertionError("expected ValueError")


FAILOVER = Path(__file__).resolve().parents[2] / "scenarios/catalog/async-replication-failover.yaml"
NOISE = [
    {"kind": "crash", "node": "payments-1", "at": "1s", "duration": "1s"},
    {"kind": "latency", "zones": ["a", "b"], "at": "2s", "duration": "1s", "extra": "20ms"},
    {"kind": "crash", "node": "gateway-2", "at": "4s", "duration": "1s"},
    {"kind": "pause", "node": "settlement", "at": "4500ms", "duration": "500ms"},
]


def test_testbed_shrink_turns_a_failing_run_into_a_smaller_scenario_that_fails_the_same_way(
    tmp_path: Path,
):
    """Async replication loses acknowledged payments at a ledger failover; around it, noise."""
    data = yaml.safe_load(FAILOVER.read_text())
    data["faults"]["timed"] += NOISE
    data["faults"]["background"] = {"latency": {"rate": "1/s"}}
    scenario = tmp_path / "noisy-failover.yaml"
    scenario.write_text(yaml.safe_dump(data))
    run = cli("run", str(scenario), "--seed", "2", "--out", str(tmp_path / "run"))
    assert run.returncode == 1, run.stdout
    assert (
        json.loads((tmp_path / "run" / "audit.json").read_text())["violations"][0]["kind"] == "lost"
    )

    done = cli("shrink", str(tmp_path / "run"))
    assert done.returncode == 0, done.stdout + done.stderr
    shrunk = tmp_path / "run" / "shrunk.yaml"
    text = shrunk.read_text()
    assert f"Reproduce: testbed run {shrunk} --seed 2" in text
    assert f"reproduce: testbed run {shrunk} --seed 2" in done.stdout
    assert "faults 6 -> 1 (kept: timed[0] failover)" in text
    small = load_scenario(shrunk).scenario
    assert [f.kind for f in small.faults.timed] == ["failover"]
    assert fault_items(small.faults) == [(("timed",), 0)]
    assert small.duration < 6 and small.workload.rate < 250 and small.seed == 2
    assert small.topology.ledger.replication == "async"
    assert "- {kind: failover, at: 3s, duration: 500ms}" in text

    again = cli("run", str(shrunk), "--out", str(tmp_path / "again"))
    assert again.returncode == 1
    audit = json.loads((tmp_path / "again" / "audit.json").read_text())
    assert audit["counts"]["lost"] > 0


def test_testbed_shrink_refuses_a_run_that_passed(tmp_path: Path):
    scenario = small_scenario(tmp_path)
    assert cli("run", str(scenario), "--out", str(tmp_path / "run")).returncode == 0
    done = cli("shrink", str(tmp_path / "run"))
    assert done.returncode == 2
    assert "the audit found no safety violation to shrink" in done.stderr
    assert not (tmp_path / "run" / "shrunk.yaml").exists()
    assert cli("shrink", str(tmp_path / "nothing")).returncode == 2
