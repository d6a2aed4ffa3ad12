"""The correct implementation over 300 seeds of the swarm scenario: zero safety violations.

Issue 5 asks for it in CI. Each seed draws its own fault mix and rates (swarm testing), so 300
seeds are 300 different fault scenarios; any safety violation fails the test with its seed
and the command that reproduces it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scenarios.loader import load_scenario
from sim.campaign import CampaignJob, run_seeds
from testbed.seeds import describe_failure, judge_seed

SWARM = Path(__file__).resolve().parents[2] / "scenarios" / "catalog" / "swarm.yaml"
SEEDS = range(1, 301)


@pytest.mark.timeout(1200)
def test_the_correct_implementation_has_no_safety_violation_over_300_swarm_seeds(tmp_path: Path):
    loaded = load_scenario(SWARM)
    assert loaded.scenario.faults.swarm, "the swarm scenario draws its faults per seed"
    assert loaded.scenario.bugs == []
    job = CampaignJob(loaded.scenario, loaded.name, tmp_path)
    outcomes = list(run_seeds(judge_seed, job, SEEDS, os.cpu_count() or 1))
    assert sorted(o.seed for o in outcomes) == list(SEEDS)
    failures = [
        f"{describe_failure(o)}\n  reproduce: testbed run {SWARM} --seed {o.seed}"
        for o in sorted(outcomes, key=lambda o: o.seed)
        if not o.ok
    ]
    assert not failures, "\n".join(failures)
    assert sum(o.payments for o in outcomes) > 100 * len(SEEDS), "the seeds carried traffic"
