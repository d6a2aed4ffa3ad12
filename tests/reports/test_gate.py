"""The gate: fails on an injected slowdown, passes on a rerun of the baseline, says why."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xmlschema
import yaml
from browser import Browser
from rich.console import Console
from typer.testing import CliRunner

from reports.gate import bootstrap_change, evaluate, junit_xml, scenario_diff
from reports.runs import open_run
from scenarios.loader import LoadedScenario, parse_scenario
from testbed.cli import app
from testbed.commands import register
from testbed.run import execute

QUICKSTART = Path(__file__).resolve().parents[2] / "scenarios" / "quickstart.yaml"
SCHEMA = xmlschema.XMLSchema(Path(__file__).with_name("junit.xsd"))
register(app)


def run(out: Path, seed: int, name: str = "gated", **workload: Any) -> Path:
    """A 3 s quickstart (no faults); `slow` adds that much to every ledger commit."""
    data = yaml.safe_load(QUICKSTART.read_text())
    data["duration"] = "3s"
    data["faults"] = {}
    slow = workload.pop("slow", None)
    if slow:
        data["faults"] = {"timed": [{"kind": "disk", "at": "0s", "duration": "60s",
                                     "slow": slow}]}  # fmt: skip
    scenario = parse_scenario(data, "test")
    execute(LoadedScenario(name, QUICKSTART, scenario), seed, out, Console(quiet=True))
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("gate")
    return {
        "baseline": run(base / "baseline", 5),
        "rerun": run(base / "rerun", 5),
        "other-seed": run(base / "other-seed", 6),
        "slow": run(base / "slow", 5, slow="8ms"),
        "slow-other-seed": run(base / "slow-other-seed", 6, slow="8ms"),
        "other-scenario": run(base / "other-scenario", 5, name="another"),
    }


def gate(*args: str) -> Any:
    return CliRunner().invoke(app, ["gate", *args])


def test_a_rerun_of_the_baseline_passes_with_exact_figures(runs: dict[str, Path], tmp_path: Path):
    junit = tmp_path / "out" / "gate.xml"
    done = gate(str(runs["rerun"]), "--baseline", str(runs["baseline"]), "--junit", str(junit))
    assert done.exit_code == 0, done.output
    assert "exact comparison" in done.output
    assert "gate passed" in done.output
    SCHEMA.validate(str(junit))
    suite = ET.parse(junit).getroot()
    assert suite.get("failures") == "0" and int(suite.get("tests", "0")) == 5 + 1 + 12 + 1


def test_an_injected_slowdown_fails_the_gate_and_says_why(runs: dict[str, Path], tmp_path: Path):
    junit = tmp_path / "gate.xml"
    done = gate(str(runs["slow"]), "--baseline", str(runs["baseline"]), "--junit", str(junit))
    assert done.exit_code == 1, done.output
    assert "FAIL regression processing.p50" in done.output
    assert "method: exact figures: sim runs of the same seed (5)" in done.output
    assert "scenario differs from the baseline's: faults.timed: [] -> " in done.output
    assert f"testbed compare {runs['baseline']} {runs['slow']}" in done.output
    SCHEMA.validate(str(junit))
    failures = ET.parse(junit).getroot().iter("failure")
    failed = {f.get("message", "").split(":")[0] for f in failures}
    assert {"processing.p50", "posted.p50", "ack.p99"} <= failed


def test_other_seeds_are_compared_statistically(runs: dict[str, Path]):
    baseline = open_run(runs["baseline"])
    same = evaluate(open_run(runs["other-seed"]), baseline)
    assert same.method == "statistical"
    assert [c.name for c in same.failures] == []
    slow = evaluate(open_run(runs["slow-other-seed"]), baseline)
    failed = {c.name for c in slow.failures}
    assert {"processing.p50", "posted.p50", "posted.p99"} <= failed
    p50 = next(c for c in slow.failures if c.name == "processing.p50")
    assert "Mann-Whitney U (one-sided, larger): p = " in p50.explanation
    p99 = next(c for c in slow.failures if c.name == "posted.p99")
    assert "bootstrap 98% interval of the change: +" in p99.explanation


def test_a_small_significant_change_below_the_minimum_effect_passes():
    rng = np.random.default_rng(1)
    base = rng.lognormal(0.0, 0.3, 20_000)
    low, high = bootstrap_change(base * 1.04, base, 0.99, 0.01)
    assert 0 < low < 0.04 < high < 0.1  # significant, yet smaller than 10%


def test_slo_and_audit_failures_fail_the_gate_without_a_baseline(runs: dict[str, Path]):
    result = evaluate(open_run(runs["slow"]))
    assert result.method == "none"
    assert [c.kind for c in result.checks] == ["slo"] * 5 + ["audit"]
    assert result.passed == all(c.passed for c in result.checks)
    xml = junit_xml(result)
    SCHEMA.validate(xml.decode())


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["{other_scenario}", "--baseline", "{baseline}"],
         "--baseline: {baseline} is a run of scenario 'gated', RUN is of 'another'; "
         "a baseline must be a run of the same scenario"),
        (["{missing}"], "RUN: {missing} is not a run directory (no meta.json)"),
        (["{rerun}", "--baseline", "{missing}"],
         "--baseline: {missing} is not a run directory (no meta.json)"),
        (["{rerun}", "--min-effect", "ten"],
         "--min-effect: must be a fraction like 0.1 or a percentage like 10%, got 'ten'"),
        (["{rerun}", "--alpha", "0.9"], "--alpha: must lie between 1e-09 and 0.5, got '0.9'"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    runs: dict[str, Path], tmp_path: Path, args: list[str], line: str
):
    paths = {k.replace("-", "_"): str(v) for k, v in runs.items()}
    paths["missing"] = str(tmp_path / "nope")
    fill = [a.format(**paths) for a in args]
    junit = tmp_path / "gate.xml"
    done = gate(*fill, "--junit", str(junit))
    assert done.exit_code == 2
    assert done.output.strip().splitlines() == [line.format(**paths)]
    assert not junit.exists()


def test_scenario_diff_names_each_changed_field():
    a = {"topology": {"gateway": {"workers": 4}}, "slos": ["x"], "seed": 1}
    b = {"topology": {"gateway": {"workers": 1}}, "slos": ["x"], "seed": 1, "bugs": ["y"]}
    assert scenario_diff(a, b) == ["topology.gateway.workers: 4 -> 1", "bugs: None -> ['y']"]


def test_compare_prints_and_plots_two_runs_side_by_side(
    runs: dict[str, Path], tmp_path: Path, chromium: str
):
    out = tmp_path / "cmp.html"
    done = CliRunner().invoke(
        app, ["compare", str(runs["baseline"]), str(runs["slow"]), "--out", str(out)]
    )
    assert done.exit_code == 0, done.output
    a, b = open_run(runs["baseline"]), open_run(runs["slow"])
    row = next(line for line in done.output.splitlines() if " processing.p50 " in line)
    change = b.metrics["processing.p50"] / a.metrics["processing.p50"] - 1
    assert f"{a.metrics['processing.p50'] * 1000:.1f} ms" in row
    assert f"{change:+.1%}" in row
    for section in ("throughput", "payments", "requests", "audit", "SLOs"):
        assert f"│ {section} " in done.output
    with Browser(chromium) as browser:
        page = browser.inspect(out)
    assert page["headings"] == [
        "Latency",
        "Throughput",
        "Payments by status",
        "Requests by outcome",
        "Audit",
        "SLOs",
    ]
    assert len(page["images"]) == 2 and all(i["width"] > 0 for i in page["images"])


def test_compare_names_the_argument_that_is_not_a_run(runs: dict[str, Path], tmp_path: Path):
    done = CliRunner().invoke(app, ["compare", str(runs["baseline"]), str(tmp_path)])
    assert done.exit_code == 2
    assert done.output.strip() == f"RUN_B: {tmp_path} is not a run directory (no meta.json)"
