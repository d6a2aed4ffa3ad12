"""`topology.gateway.rate_limit` and the `redis` fault: what validates, and the one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scenarios.loader import ScenarioError, load_scenario, resolved_yaml

BASE = "description: d\nduration: 1s\nworkload:\n  rate: 10/s\n"
REDIS = "faults:\n  timed:\n    - {kind: redis, at: 1s, duration: 1s}\n"


def _limit(text: str) -> str:
    return f"{BASE}topology:\n  gateway:\n    rate_limit: {text}\n"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "x.yaml"
    path.write_text(text)
    return path


def _problems(tmp_path: Path, text: str) -> list[str]:
    path = _write(tmp_path, text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    return [line.removeprefix(f"{path}: ") for line in info.value.lines]


def test_a_limit_reads_rate_burst_and_shared_with_the_rate_as_default_burst(tmp_path: Path):
    limit = load_scenario(_write(tmp_path, _limit("{rate: 500/s, shared: true}")))
    spec = limit.scenario.topology.gateway.rate_limit
    assert spec is not None and spec.rate == 500.0 and spec.shared and spec.tokens == 500
    explicit = load_scenario(_write(tmp_path, _limit("{rate: 30/min, burst: 5}")))
    spec = explicit.scenario.topology.gateway.rate_limit
    assert spec is not None and spec.rate == 0.5 and not spec.shared and spec.tokens == 5
    assert "rate_limit:" in resolved_yaml(explicit.scenario)


def test_without_a_limit_the_resolved_scenario_does_not_mention_one(tmp_path: Path):
    loaded = load_scenario(_write(tmp_path, BASE))
    assert loaded.scenario.topology.gateway.rate_limit is None
    assert "rate_limit" not in resolved_yaml(loaded.scenario)


@pytest.mark.parametrize(
    ("text", "field", "rule"),
    [
        ("{rate: fast}", "topology.gateway.rate_limit.rate", "must be a rate"),
        ("{rate: 0/s}", "topology.gateway.rate_limit", "rate: must be more than 0"),
        ("{rate: 10/s, burst: 0}", "topology.gateway.rate_limit.burst", "greater than or equal"),
        ("{rate: 10/s, shared: maybe}", "topology.gateway.rate_limit.shared", "true or false"),
        ("{rate: 10/s, per: tenant}", "topology.gateway.rate_limit.per", "unknown field"),
        ("{burst: 3}", "topology.gateway.rate_limit.rate", "required field is missing"),
    ],
)
def test_a_bad_limit_names_the_field(tmp_path: Path, text: str, field: str, rule: str):
    (line,) = _problems(tmp_path, _limit(text))
    assert line.startswith(f"{field}: ") and rule in line, line


@pytest.mark.parametrize("limit", ["", "{rate: 10/s}", "{rate: 10/s, shared: false}"])
def test_a_redis_fault_needs_a_shared_limit(tmp_path: Path, limit: str):
    text = (_limit(limit) if limit else BASE) + REDIS
    (line,) = _problems(tmp_path, text)
    assert "faults.timed[0]: a redis fault needs a shared rate limit" in line
    assert "topology.gateway.rate_limit" in line


def test_a_redis_fault_with_a_shared_limit_validates(tmp_path: Path):
    loaded = load_scenario(_write(tmp_path, _limit("{rate: 10/s, shared: true}") + REDIS))
    (fault,) = loaded.scenario.faults.timed
    assert fault.kind == "redis" and fault.at == 1.0 and fault.duration == 1.0


def test_testbed_run_refuses_a_redis_fault_without_a_shared_limit_with_exit_2(tmp_path: Path):
    path = _write(tmp_path, _limit("{rate: 10/s}") + REDIS)
    done = subprocess.run(
        [str(Path(sys.executable).with_name("testbed")), "run", str(path), "--mode", "load"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done
    assert "a redis fault needs a shared rate limit" in done.stderr + done.stdout
