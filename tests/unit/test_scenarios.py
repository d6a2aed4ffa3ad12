"""Scenario files: the catalog validates, bad files fail with one line naming field and rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from scenarios.loader import SCHEMA_FILE, ScenarioError, catalog, json_schema, load_scenario
from scenarios.slo import SloError, parse_slo
from scenarios.units import DURATION_RULE, RATE_RULE, parse_duration, parse_rate

MINIMAL = "description: d\nduration: 1s\nworkload:\n  rate: 10/s\n"
CRASH = "faults:\n  timed:\n    - {{kind: crash, node: {node}, at: {at}, duration: 1s}}\n"


def _load(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    return [line.removeprefix(f"{path}: ") for line in info.value.lines]


def test_every_catalog_scenario_validates_and_says_what_it_is_for():
    paths = catalog()
    assert {p.stem for p in paths} >= {"quickstart", "steady-state", "peak-burst"}
    assert (Path(__file__).resolve().parents[2] / "scenarios" / "quickstart.yaml") in paths
    for path in paths:
        assert load_scenario(path).scenario.description.strip()


def test_minimal_scenario_gets_defaults(tmp_path: Path):
    path = tmp_path / "m.yaml"
    path.write_text(MINIMAL)
    scenario = load_scenario(path).scenario
    assert scenario.workload.rate == 10.0
    assert scenario.topology.gateway.replicas == 2


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (MINIMAL.replace("10/s", "fast"), f"workload.rate: {RATE_RULE}"),
        (MINIMAL.replace("1s", "1 parsec"), f"duration: {DURATION_RULE}"),
        (MINIMAL + "colour: red\n", "colour: unknown field"),
        ("duration: 1s\nworkload:\n  rate: 1/s\n", "description: required field is missing"),
        (MINIMAL + "topology:\n  gateway:\n    replicas: 0\n",
         "topology.gateway.replicas: input should be greater than or equal to 1"),
        (MINIMAL + "slos: ['ack.p42 < 1s']\n", "slos[0]: unknown metric 'ack.p42'"),
        (MINIMAL + CRASH.format(node="payments-9", at="1s"),
         "(top level): faults: no node 'payments-9'"),
        (MINIMAL + CRASH.format(node="ledger", at="soon"), f"faults.timed[0].at: {DURATION_RULE}"),
    ],
)  # fmt: skip
def test_a_bad_file_names_the_field_and_the_rule_in_one_line(tmp_path: Path, text: str, line: str):
    lines = _load(tmp_path, text)
    assert len(lines) == 1
    assert "\n" not in lines[0]
    assert lines[0].startswith(line)


def test_missing_file_and_bad_yaml(tmp_path: Path):
    with pytest.raises(ScenarioError, match=r"nope.yaml: no such file"):
        load_scenario(tmp_path / "nope.yaml")
    assert _load(tmp_path, "a: [1\n")[0].startswith("line ")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("2s", 2.0), ("1.5s", 1.5), ("5min", 300.0), ("1h", 3600.0), (3, 3.0),
     ("100us", 1e-4)],
)  # fmt: skip
def test_durations_parse(text: object, seconds: float):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "per_second"), [("1500/s", 1500.0), ("30/min", 0.5), ("7200/h", 2.0), (12, 12.0)]
)
def test_rates_parse(text: object, per_second: float):
    assert parse_rate(text) == pytest.approx(per_second)


@pytest.mark.parametrize("bad", ["-1s", "2", "s", "1e999s", True, None, "10 per s"])
def test_bad_durations_are_refused(bad: object):
    with pytest.raises(ValueError):
        parse_duration(bad if bad != "2" else "2 fortnights")


def test_slo_expressions_evaluate_against_metrics():
    metrics = {"ack.p99": 0.15, "throughput": 960.0, "offered": 1000.0, "audit.violations": 0.0}
    assert parse_slo("ack.p99 < 200ms").evaluate(metrics).passed
    assert not parse_slo("ack.p99 < 100ms").evaluate(metrics).passed
    assert parse_slo("throughput >= 0.95 * offered").evaluate(metrics).passed
    assert not parse_slo("throughput >= 0.97 * offered").evaluate(metrics).passed
    assert parse_slo("audit.violations == 0").evaluate(metrics).passed
    assert parse_slo("(offered - throughput) / offered <= 5%").evaluate(metrics).passed
    assert not parse_slo("posted.p99 < 1s").evaluate(metrics).passed  # not measured: fails


@pytest.mark.parametrize("bad", ["ack.p99", "ack.p99 < ", "ack.p99 < 1s 2", "__import__('os')"])
def test_malformed_slos_are_refused(bad: str):
    with pytest.raises(SloError):
        parse_slo(bad)


def test_committed_json_schema_is_current():
    assert SCHEMA_FILE.read_text() == json_schema(), "regenerate: testbed scenarios --json-schema"
