"""The swarm scenario finds every bug of the zoo and nothing in the correct implementation.

Each seed draws its own fault mix and rates (swarm testing), so 200 seeds are 200 different
fault scenarios: the correct implementation must pass every one (no safety violation, nothing
stuck after the drain), and with any one zoo bug switched on, a seed among the first 60 must
fail, as `testbed seeds scenarios/catalog/swarm.yaml --count 60 --bug NAME` does. Except the
bugs of the compliance checks, which the swarm scenario does not run (its fault families act on
the payment flow, not on the checks): their zoo scenarios catch them (tests/sim/test_bug_zoo.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reference_impl.bugs import BUGS
from reports.audit import KINDS
from scenarios.loader import load_scenario
from sim.campaign import CampaignJob
from testbed.judge import audit_seed, run_seeds
from testbed.seeds import describe_failure

SWARM = Path(__file__).resolve().parents[2] / "scenarios" / "catalog" / "swarm.yaml"
SEEDS = range(1, 201)
BUG_SEEDS = range(1, 61)
NEEDS_CHECKS = frozenset({"approve-on-timeout"})


@pytest.mark.timeout(1200)
def test_the_correct_implementation_has_no_safety_violation_over_200_swarm_seeds(tmp_path: Path):
    loaded = load_scenario(SWARM)
    assert loaded.scenario.faults.swarm, "the swarm scenario draws its faults per seed"
    assert loaded.scenario.bugs == []
    job = CampaignJob(loaded.scenario, loaded.name, tmp_path)
    outcomes = list(run_seeds(job, SEEDS, os.cpu_count() or 1))
    assert sorted(o.seed for o in outcomes) == list(SEEDS)
    failures = [
        f"{describe_failure(o)}\n  reproduce: testbed run {SWARM} --seed {o.seed}"
        for o in sorted(outcomes, key=lambda o: o.seed)
        if not o.ok
    ]
    assert not failures, "\n".join(failures)
    assert sum(o.payments for o in outcomes) > 100 * len(SEEDS), "the seeds carried traffic"


@pytest.mark.timeout(600)
@pytest.mark.parametrize("bug", sorted(set(BUGS) - NEEDS_CHECKS))
def test_the_swarm_catches_each_zoo_bug_within_60_seeds(bug: str) -> None:
    scenario = load_scenario(SWARM).scenario.model_copy(update={"bugs": [bug]})
    for seed in BUG_SEEDS:
        found = audit_seed(scenario, "swarm", seed)
        if any(found.counts[k] for k in KINDS):
            return
    pytest.fail(f"{bug}: seeds {BUG_SEEDS.start}-{BUG_SEEDS.stop - 1} of the swarm all passed")
