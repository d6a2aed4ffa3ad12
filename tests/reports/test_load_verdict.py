"""A load run's verdict says what it did not measure: the generator that could not keep up, the
faults not applied, the settings not modelled; in the printed verdict, summary.json and
report.html. From a synthetic meta: a real load run is tests/load/test_load_runtime.py's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from reports.record import SCHEMAS, load_run
from reports.run_report import build_run_report
from scenarios.loader import LoadedScenario, parse_scenario
from testbed.run import execute, verdict_tables
from testbed.summary import summarise

QUICKSTART = Path(__file__).resolve().parents[2] / "scenarios" / "quickstart.yaml"
REASON = "local used 97% of a core while sending"
LOAD_META: dict[str, Any] = {
    "mode": "load",
    "generator": {"bound": True, "reason": REASON, "achieved_rate": 61.25, "target_rate": 100.0},
    "faults_not_applied": [
        {"kind": "partition", "target": "a<->b", "reason": "zones share one machine"},
        {"kind": "disk", "target": "", "reason": "no disk faults in load mode"},
    ],
    "not_modelled": [
        {"setting": "topology.zones", "value": "a, b", "reason": "one machine"},
    ],
}


@pytest.fixture(scope="module")
def sim_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A short sim run (2 s of the quickstart) and its summary."""
    data = yaml.safe_load(QUICKSTART.read_text())
    data.update(duration="2s", faults={"timed": []})
    run_dir = tmp_path_factory.mktemp("runs") / "sim"
    loaded = LoadedScenario("short", QUICKSTART, parse_scenario(data, "test"))
    return run_dir, execute(loaded, 7, run_dir, Console(quiet=True))


def printed(summary: dict[str, Any]) -> str:
    console = Console(record=True, width=200, color_system=None)
    for table in verdict_tables(summary):
        console.print(table)
    return console.export_text()


def load_summary(run_dir: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """The summary of the sim run's record as if its meta were a load run's `meta`."""
    record = load_run(run_dir)
    tables = {name: getattr(record, name) for name in SCHEMAS}
    scenario = parse_scenario(yaml.safe_load((run_dir / "scenario.yaml").read_text()), "test")
    audit = json.loads((run_dir / "audit.json").read_text())
    return summarise(scenario, "short", 7, tables, audit, mode="load", meta=meta)


def test_a_generator_bound_load_run_says_so_with_its_rates(sim_run: tuple[Path, Any]) -> None:
    summary = load_summary(sim_run[0], LOAD_META)
    assert summary["generator"] == {**LOAD_META["generator"]}
    assert summary["faults_not_applied"] == LOAD_META["faults_not_applied"]
    assert summary["not_modelled"] == LOAD_META["not_modelled"]
    json.dumps(summary, allow_nan=False)  # summary.json takes it as it is
    text = printed(summary)
    assert "load generator could NOT keep up" in text
    assert "61.2/s sent of 100.0/s target" in text
    # The reason is the table's caption, wrapped to its width.
    assert f"the load generator was the bottleneck: {REASON}" in " ".join(text.split())
    assert "faults not applied in load mode (2)" in text
    assert "a<->b" in text and "zones share one machine" in text
    assert "not modelled in load mode" in text and "topology.zones" in text


def test_a_generator_that_kept_up_is_one_row_and_empty_lists_no_table(
    sim_run: tuple[Path, Any],
) -> None:
    meta = {**LOAD_META, "generator": {**LOAD_META["generator"], "bound": False, "reason": ""},
            "faults_not_applied": [], "not_modelled": []}  # fmt: skip
    text = printed(load_summary(sim_run[0], meta))
    assert "load generator kept up" in text and "61.2/s sent of 100.0/s target" in text
    assert "bottleneck" not in text
    assert "not applied" not in text and "not modelled" not in text


def test_a_sim_verdict_has_none_of_it(sim_run: tuple[Path, dict[str, Any]]) -> None:
    run_dir, summary = sim_run
    assert not {"generator", "faults_not_applied", "not_modelled"} & set(summary)
    assert len(verdict_tables(summary)) == 2
    assert "load generator" not in printed(summary)
    html = (run_dir / "report.html").read_text()
    assert "load generator" not in html and "not applied in load mode" not in html


def test_the_report_of_a_load_run_lists_them(sim_run: tuple[Path, Any], tmp_path: Path) -> None:
    run_dir = tmp_path / "load"
    run_dir.mkdir()
    for path in sim_run[0].iterdir():
        if path.is_file():
            (run_dir / path.name).write_bytes(path.read_bytes())
    meta = json.loads((run_dir / "meta.json").read_text())
    (run_dir / "meta.json").write_text(json.dumps({**meta, **LOAD_META}))
    html = build_run_report(run_dir).read_text()
    assert "load generator could NOT keep up" in html
    assert "61.2/s sent of 100.0/s target" in html
    assert f"The load generator was the bottleneck: {REASON}" in html
    assert "Faults not applied in load mode (2)" in html
    assert "a&lt;-&gt;b" in html and "no disk faults in load mode" in html
    assert "Not modelled in load mode" in html and "topology.zones" in html
