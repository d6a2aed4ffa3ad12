"""What of a scenario's topology the load runtime refuses, and what it lists as not modelled."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from loadtest.topology import check_topology, not_modelled
from scenarios.loader import load_scenario, parse_scenario
from scenarios.schema import Scenario

ROOT = Path(__file__).resolve().parents[2]
RULE = "load mode runs a perfect bank partner (partner behaviours are sim mode only)"


def quickstart(**topology: Any) -> Scenario:
    data = yaml.safe_load((ROOT / "scenarios" / "quickstart.yaml").read_text())
    data["topology"].update(topology)
    return parse_scenario(data, "test")


def test_the_scenarios_load_runs_use_are_accepted() -> None:
    # The quickstart (tests/load, the README's load commands) and fraud-mix (the README).
    check_topology(quickstart())
    check_topology(load_scenario(ROOT / "scenarios" / "catalog" / "fraud-mix.yaml").scenario)
    check_topology(quickstart(ledger={"replicas": 0}, zones=["a"]))  # the load sweep's test
    # Other partners' names are harmless: listed as not modelled (steady-state has two).
    check_topology(load_scenario(ROOT / "scenarios" / "catalog" / "steady-state.yaml").scenario)


@pytest.mark.parametrize(
    ("partners", "message"),
    [
        ([{"name": "bank-a", "late_probability": 0.1}],
         f"topology.bank_partners[0].late_probability: {RULE}; got 0.1"),
        ([{"name": "bank-a", "statement_delay": "2s"}],
         f"topology.bank_partners[0].statement_delay: {RULE}; got 2.0"),
        ([{"name": "bank-a"}, {"name": "bank-b", "fee_probability": 0.5, "fee_amount": 3}],
         f"topology.bank_partners[1].fee_probability: {RULE}; got 0.5"),
    ],
)  # fmt: skip
def test_a_bank_partner_that_is_not_perfect_is_refused(
    partners: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        check_topology(quickstart(bank_partners=partners))
    assert str(caught.value) == message


def test_what_load_mode_runs_without_is_listed_with_its_value() -> None:
    rows = {r["setting"]: r["value"] for r in not_modelled(quickstart())}
    assert rows == {
        "topology.zones": "a, b",
        "topology.gateway.workers": "4",
        "topology.ledger.connections": "8",
        "topology.ledger.replicas": "1 (sync)",
    }
    two = quickstart(bank_partners=[{"name": "bank-a"}, {"name": "bank-b"}])
    assert {r["setting"]: r["value"] for r in not_modelled(two)}["topology.bank_partners"] == (
        "bank-a, bank-b"
    )
    one_zone = quickstart(zones=["a"], ledger={"replicas": 0})
    assert [r["setting"] for r in not_modelled(one_zone)] == [
        "topology.gateway.workers",
        "topology.ledger.connections",
    ]
    assert all(r["reason"] for r in not_modelled(quickstart()))


def test_a_store_crash_kills_the_processes_that_open_the_store_and_no_other(tmp_path: Path) -> None:
    # A SQLite store crash kills every writer; the run's redis-server (a shared rate limit's)
    # and the stub screening provider hold no store and stay up.
    from loadtest.system import Process, ReferenceSystem

    scenario = quickstart(gateway={"rate_limit": {"rate": "100/s", "shared": True}})
    system = ReferenceSystem(scenario, tmp_path, "sqlite:///x.db")
    names = ["redis", "gateway", "payments-1", "payments-2", "settlement", "projector", "provider"]
    system.processes = {n: Process(n, [], tmp_path / f"{n}.log") for n in names}
    assert system.store_writers() == [
        "gateway", "payments-1", "payments-2", "settlement", "projector"
    ]  # fmt: skip
