"""The per-stage breakdown: screening timed apart by the checks' decisions when the record has
them (stage values exactly what the timestamps give), one `screening + reserve` stage without."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from record_harness import payment, request, tables
from rich.console import Console

from reports.record import OPTIONAL_SCHEMAS, SCHEMAS, RunRecord, load_run
from reports.stages import CHECKED_STAGES, FROM_DECISIONS, NOT_RECORDED, STAGES, note, stages
from scenarios.loader import HERE, LoadedScenario, parse_scenario
from testbed.run import execute


def _entry(pid: str, kind: str, at: float, tenant: str = "t1") -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(SCHEMAS["journal"].names, "")
    return {**row, "tenant": tenant, "seq": 0, "payment_id": pid, "kind": kind, "amount": 100,
            "at": at}  # fmt: skip


def _decision(pid: str, check: str, verdict: str, at: float, tenant: str = "t1") -> tuple[Any, ...]:
    return (pid, tenant, check, verdict, "" if verdict == "approve" else f"{check}:x", 0.5, at)


DECISIONS = [
    # p1: the checks decide at 1.125, 1.375, 1.25 (listed out of order): screened at 1.375
    _decision("p1", "sanctions", "approve", 1.125),
    _decision("p1", "fraud", "approve", 1.25),
    _decision("p1", "aml", "approve", 1.375),
    # p2: rejected by sanctions; never reserved, so screened at its last decision
    _decision("p2", "sanctions", "reject", 2.0625),
    _decision("p2", "aml", "approve", 2.125),
    # p3: held by AML, approved by an operator a second later: the review ends screening
    _decision("p3", "aml", "review", 3.0625),
    _decision("p3", "sanctions", "approve", 3.125),
    _decision("p3", "operator", "approve", 4.0),
    # p4: decided at 5.25, then fraud announced again after the reservation: held nothing up
    _decision("p4", "sanctions", "approve", 5.25),
    _decision("p4", "fraud", "approve", 5.125),
    _decision("p4", "fraud", "approve", 6.0),
]


def _tables(decisions: list[tuple[Any, ...]]) -> dict[str, pd.DataFrame]:
    t = tables(
        requests=[
            request("k1", 1, 0.75, 1.0625, 202, "p1"),
            request("k2", 1, 1.5, 2.0, 202, "p2"),
            request("k3", 1, 2.5, 3.0, 202, "p3"),
            request("k4", 1, 4.5, 5.0, 202, "p4"),
            request("k1", 1, 5.5, 6.0, 202, "p1", tenant="t2"),
        ],
        payments=[
            payment("p1", "k1", "settled", 1.0, posted=2.0, settled=3.0),
            payment("p2", "k2", "rejected", 2.0),
            payment("p3", "k3", "reserved", 3.0),
            payment("p4", "k4", "posted", 5.0, posted=5.75),
            # the same id in another tenant, no decisions of its own: screening not timed
            payment("p1", "k1", "posted", 6.0, posted=6.5, tenant="t2"),
        ],
        journal=[
            _entry("p1", "pending", 1.5),
            _entry("p1", "post_pending", 2.0),
            _entry("p3", "pending", 4.25),
            _entry("p4", "pending", 5.5),
            _entry("p4", "post_pending", 5.75),
            _entry("p1", "pending", 6.25, tenant="t2"),
            _entry("p1", "post_pending", 6.5, tenant="t2"),
        ],
    )
    t["decisions"] = pd.DataFrame(decisions, columns=OPTIONAL_SCHEMAS["decisions"].names)
    return t


def _values(t: dict[str, pd.DataFrame]) -> dict[str, list[float]]:
    return {s.name: sorted(s.seconds.tolist()) for s in stages(t)}


def test_with_decisions_screening_and_the_reservation_are_stages_of_their_own() -> None:
    t = _tables(DECISIONS)
    assert [(s.name, s.meaning) for s in stages(t)] == list(CHECKED_STAGES)
    assert _values(t) == {
        "gateway": [0.25, 0.5, 0.5, 0.5, 0.5],
        "screening": [0.125, 0.25, 0.375, 1.0],  # p2, p4, p1, p3 (t2's p1 has no decisions)
        "reserve": [0.125, 0.25, 0.25],  # p1, p3, p4
        "post": [0.25, 0.25, 0.5],  # p4, t2's p1, p1
        "settlement": [1.0],
    }
    assert note(t) == FROM_DECISIONS


def test_without_decisions_screening_and_the_reservation_stay_one_stage() -> None:
    t = _tables([])
    assert [(s.name, s.meaning) for s in stages(t)] == list(STAGES)
    values = _values(t)
    assert values == {
        "gateway": [0.25, 0.5, 0.5, 0.5, 0.5],
        "screening + reserve": [0.25, 0.5, 0.5, 1.25],  # t2's p1, p1, p4, p3
        "post": [0.25, 0.25, 0.5],
        "settlement": [1.0],
    }
    assert note(t) == NOT_RECORDED
    no_table = {k: v for k, v in t.items() if k != "decisions"}
    assert _values(no_table) == values and note(no_table) == NOT_RECORDED


def _report(tmp_path: Path, **changes: Any) -> str:
    path = HERE / "quickstart.yaml"
    data = yaml.safe_load(path.read_text())
    data.update(duration="2s", **changes)
    loaded = LoadedScenario("q", path, parse_scenario(data, "q"))
    execute(loaded, 1, tmp_path, Console(quiet=True))
    return html.unescape((tmp_path / "report.html").read_text())


def _record_tables(record: RunRecord) -> dict[str, pd.DataFrame]:
    return {"requests": record.requests, "payments": record.payments, "journal": record.journal,
            "decisions": record.decisions}  # fmt: skip


def _section(text: str) -> str:
    return text.split("<h2>Where the time goes: stages</h2>")[1].split("<h2>")[0]


def test_the_report_of_a_run_with_checks_shows_screening_apart(tmp_path: Path) -> None:
    text = _report(tmp_path, checks={"mode": "parallel"})
    section = _section(text)
    for name, meaning in CHECKED_STAGES:
        assert f">{name}<" in section and meaning in section
    assert "screening + reserve" not in section
    assert FROM_DECISIONS in section
    record = load_run(tmp_path)
    found = {s.name: s.seconds for s in stages({**_record_tables(record)})}
    posted = (record.payments["status"].isin(["posted", "settled"])).sum()
    assert len(found["screening"]) >= posted > 0 and len(found["reserve"]) >= posted
    assert (found["screening"] > 0).all() and (found["reserve"] >= 0).all()


def test_the_report_of_a_run_without_checks_says_screening_is_not_timed(tmp_path: Path) -> None:
    text = _report(tmp_path)
    section = _section(text)
    for name, meaning in STAGES:
        assert f">{name}<" in section and meaning in section
    assert NOT_RECORDED in section
