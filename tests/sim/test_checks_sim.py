"""The compliance checks in the sim: every payment decided once by each check, held payments
moved no money, a provider fault makes screening fail closed, and a seed replays exactly."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from reports.record import load_run
from scenarios.loader import load_scenario
from testbed.run import execute

ROOT = Path(__file__).resolve().parents[2]
OUTAGE = ROOT / "scenarios/catalog/screening-provider-outage.yaml"


def run(tmp_path: Path, name: str) -> Path:
    loaded = load_scenario(OUTAGE)
    execute(loaded, loaded.scenario.seed, tmp_path / name, Console(quiet=True))
    return tmp_path / name


@pytest.fixture(scope="module")
def outage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run(tmp_path_factory.mktemp("outage"), "a")


def test_a_provider_outage_holds_payments_and_breaks_no_money_rule(outage: Path) -> None:
    record = load_run(outage)
    payments, decisions = record.payments, record.decisions
    assert set(record.faults["kind"]) == {"provider"}
    per_check = decisions.groupby(["payment_id", "check"]).size()
    assert (per_check == 1).all()
    assert set(decisions["check"]) == {"sanctions", "aml", "fraud"}
    assert len(per_check) == 3 * len(payments)  # every accepted payment, by every check
    unavailable = decisions[decisions["reason"].str.startswith("sanctions:unavailable")]
    assert not unavailable.empty  # the failing provider's calls: review, not a failed batch
    window = unavailable["at"].between(3.0, 5.0 + 2.0)  # in the window, or while catching up
    assert window.all()
    held = payments[payments["status"] == "held"]
    assert set(held["payment_id"]) >= set(unavailable["payment_id"])
    moved = record.journal[record.journal["payment_id"].isin(held["payment_id"])]
    assert moved.empty
    assert (payments["status"].isin(["settled", "posted", "rejected", "held"])).all()
    assert record.meta["checks"]["on_timeout"] == "hold"
    audit = pd.read_json(outage / "audit.json", typ="series")
    assert audit["ok"]


def test_the_same_seed_replays_the_decisions_byte_for_byte(outage: Path, tmp_path: Path) -> None:
    a, b = outage, run(tmp_path, "b")
    for name in ("decisions.parquet", "payments.parquet", "labels.parquet", "meta.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_a_decision_wakes_the_payments_group_instead_of_waiting_for_its_idle_poll() -> None:
    # At 5 payments a second the payments members are mostly idle between payments. The last
    # check's decision must wake them (a commit does, in the real runtime), not leave the
    # payment in screening until their next idle poll (0.25 s) or the next payment.
    from sim import export
    from sim.run import simulate

    scenario = load_scenario(ROOT / "scenarios/catalog/fraud-mix.yaml").scenario
    workload = scenario.workload.model_copy(update={"rate": 5.0, "fraud": None})
    quiet = scenario.model_copy(update={"workload": workload, "duration": 10.0})
    payments = export.payments(simulate(quiet, 1))
    posted = payments.dropna(subset=["posted_at"])
    assert len(posted) > 30
    decided = posted["posted_at"] - posted["received_at"]
    assert decided.max() < 0.1, decided.describe()
