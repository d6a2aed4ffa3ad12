"""report.html: written for every run, self-contained, and it renders, charts and all."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from browser import Browser
from rich.console import Console
from typer.testing import CliRunner

from reports.run_report import build_run_report
from scenarios.loader import LoadedScenario, load_scenario, parse_scenario
from testbed.cli import app
from testbed.commands import register
from testbed.run import execute

QUICKSTART = Path(__file__).resolve().parents[2] / "scenarios" / "quickstart.yaml"
SECTIONS = [
    "Verdict",
    "Latency",
    "Throughput: offered and achieved",
    "Nodes: utilization and queues",
    "Where the time goes: stages",
    "Audit",
    "SLOs",
    "Faults",
]
register(app)


def short_quickstart(**changes: Any) -> dict[str, Any]:
    """The quickstart cut to 4 s, a payments worker crash at 1 s, with `changes` on top."""
    data = yaml.safe_load(QUICKSTART.read_text())
    data["duration"] = "4s"
    data["faults"] = {"timed": [{"kind": "crash", "node": "payments-1", "at": "1s",
                                 "duration": "500ms"}]}  # fmt: skip
    data.update(changes)
    return data


@pytest.fixture(scope="module")
def buggy_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run the audit fails: skip-idempotency with clients that send duplicates."""
    data = short_quickstart(bugs=["skip-idempotency"])
    data["workload"]["client"]["duplicate_probability"] = 0.05
    scenario = parse_scenario(data, "test")
    run_dir = tmp_path_factory.mktemp("runs") / "buggy"
    loaded = LoadedScenario("buggy", QUICKSTART, scenario)
    summary = execute(loaded, 3, run_dir, Console(quiet=True))
    assert summary["audit"]["ok"] is False
    return run_dir


def test_every_run_directory_has_a_self_contained_report(buggy_run: Path):
    text = (buggy_run / "report.html").read_text()
    assert text.startswith("<!DOCTYPE html>")
    for section in SECTIONS:
        assert f"<h2>{section}</h2>" in text
    assert len(re.findall(r'<img src="data:image/png;base64,', text)) >= 6
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)
    assert "<script" not in text
    assert f"testbed run {buggy_run / 'scenario.yaml'} --seed 3" in text


def test_rebuilding_a_report_gives_the_same_bytes(buggy_run: Path):
    first = (buggy_run / "report.html").read_bytes()
    build_run_report(buggy_run)
    assert (buggy_run / "report.html").read_bytes() == first


def test_the_report_and_its_charts_render_in_chromium(buggy_run: Path, chromium: str):
    with Browser(chromium) as browser:
        page = browser.inspect(buggy_run / "report.html")
    assert page["title"] == "buggy seed 3: run report"
    assert page["headings"] == SECTIONS
    assert page["banner"] == "FAIL"
    assert page["tables"] >= 8
    assert len(page["images"]) >= 6
    for image in page["images"]:
        assert image["width"] >= 400 and image["height"] >= 150, image
        assert image["shown"] > 300, image
    assert all(url.startswith(("file:", "data:")) for url in page["requests"])
    assert "duplicate" in page["text"]
    assert f"testbed run {buggy_run / 'scenario.yaml'} --seed 3" in page["text"]


def test_a_chart_that_does_not_decode_is_caught(buggy_run: Path, chromium: str, tmp_path: Path):
    broken = tmp_path / "broken.html"
    text = (buggy_run / "report.html").read_text()
    broken.write_text(text.replace("data:image/png;base64,iVBOR", "data:image/png;base64,AAAA", 1))
    with Browser(chromium) as browser:
        page = browser.inspect(broken)
    widths = [i["width"] for i in page["images"]]
    assert widths[0] == 0
    assert all(w > 0 for w in widths[1:])


def test_report_command_rebuilds_and_refuses_a_directory_that_is_not_a_run(
    buggy_run: Path, tmp_path: Path
):
    (buggy_run / "report.html").unlink()
    ok = CliRunner().invoke(app, ["report", str(buggy_run)])
    assert ok.exit_code == 0, ok.output
    assert (buggy_run / "report.html").exists()
    bad = CliRunner().invoke(app, ["report", str(buggy_run), str(tmp_path)])
    assert bad.exit_code == 2
    assert bad.output.strip().splitlines() == [
        f"DIR: {tmp_path} is not a run, campaign or sweep directory (no meta.json, "
        "campaign.json or sweep.json)"
    ]


def test_a_campaign_gets_a_report_linking_its_failing_seeds(tmp_path: Path, chromium: str):
    scenario = tmp_path / "short.yaml"
    data = short_quickstart(duration="2s")
    data["workload"]["client"]["duplicate_probability"] = 0.05
    scenario.write_text(yaml.safe_dump(data))
    out = tmp_path / "campaign"
    args = ["seeds", str(scenario), "--count", "3", "--jobs", "1", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--bug", "skip-idempotency"])
    assert result.exit_code == 1, result.output
    assert (out / "seeds.csv").read_text().splitlines()[0] == (
        "seed,ok,payments,ack_p99,posted_p99,findings"
    )
    text = (out / "report.html").read_text()
    links = re.findall(r'<a href="(seed-\d+/report.html)">', text)
    assert links and all((out / link).exists() for link in links)
    with Browser(chromium) as browser:
        page = browser.inspect(out / "report.html")
    assert page["headings"] == ["Failures by kind", "Latency across seeds", "Failing seeds"]
    assert len(page["images"]) == 3 and all(i["width"] > 0 for i in page["images"])
    assert "--bug skip-idempotency" in page["text"]
    assert load_scenario(scenario).scenario.duration == 2.0
