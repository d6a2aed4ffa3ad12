"""Seeded sim runs with injected fraud: labelled requests that were really sent and accepted,
names that reach the payments, legitimate arrivals that do not move, and replay byte for byte."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from rich.console import Console
from sim_harness import QUICKSTART, quickstart_with

from reference_impl.core.payments import Payment
from reference_impl.service.payments import PAYMENT
from reports.record import load_run
from scenarios.fraud import PATTERNS, counterparty_name
from scenarios.loader import LoadedScenario
from scenarios.schema import Scenario
from sim import export
from sim.run import SimRun, simulate
from testbed.run import execute

FRAUD = {
    "account_takeover": {"rate": "1/s", "payments": 4, "within": "2s"},
    "mule_chain": {"rate": "1/s", "hops": 3, "gap": "500ms"},
    "structuring": {"rate": "1/s", "payments": 5, "within": "2s"},
    "card_testing": {"rate": "1/s", "payments": 15, "within": "1s"},
    "sanctioned_payee": {"rate": "1/s", "payments": 2, "within": "1s"},
}


def _scenario(fraud: dict[str, Any] | None) -> Scenario:
    workload: dict[str, Any] = {"initial_balance": 50_000_000}
    if fraud is not None:
        workload["fraud"] = fraud
    return quickstart_with(duration="4s", workload=workload)


def _run(scenario: Scenario, seed: int, out: Path) -> None:
    execute(LoadedScenario("test", QUICKSTART, scenario), seed, out, Console(quiet=True))


@pytest.fixture(scope="module")
def fraud_run() -> SimRun:
    return simulate(_scenario(FRAUD), 5)


def _stored_payments(run: SimRun) -> list[Payment]:
    return [Payment.from_json(t) for _, _, t in run.system.ledger.store.records(PAYMENT)]


def test_every_label_names_a_sent_request_and_most_were_accepted(fraud_run: SimRun):
    tables = export.tables(fraud_run)
    labels, requests = tables["labels"], tables["requests"]
    assert set(labels["pattern"]) == set(PATTERNS)
    assert labels["key"].is_unique
    sent = requests.merge(labels, on=["tenant", "key"])
    assert set(sent["key"]) == set(labels["key"])
    accepted = sent[sent["outcome"] == "accepted"]["key"].nunique()
    assert accepted >= 0.9 * len(labels)
    # Labelled payments are stored under their keys with the pattern's amounts.
    payments = tables["payments"].merge(
        labels, left_on=["tenant", "idempotency_key"], right_on=["tenant", "key"]
    )
    assert len(payments) == accepted
    structuring = payments[payments["pattern"] == "structuring"]["amount"]
    assert structuring.between(950_000, 999_999).all()
    assert (payments[payments["pattern"] == "card_testing"]["amount"] <= 200).all()


def test_names_sent_by_the_clients_reach_the_stored_payments(fraud_run: SimRun):
    labels = export.labels(fraud_run)
    pattern_of = {(r.tenant, r.key): r.pattern for r in labels.itertuples()}
    payments = _stored_payments(fraud_run)
    sanctioned = [p for p in payments if pattern_of.get((p.tenant, p.idempotency_key))
                  == "sanctioned_payee"]  # fmt: skip
    assert sanctioned
    assert all(p.creditor_name != counterparty_name(p.tenant, p.creditor_account)
               for p in sanctioned)  # fmt: skip
    legit = [p for p in payments if (p.tenant, p.idempotency_key) not in pattern_of]
    assert legit
    for p in legit:  # `names: true` (the default): the holders' stable names
        assert p.debtor_name == counterparty_name(p.tenant, p.debtor_account)
        assert p.creditor_name == counterparty_name(p.tenant, p.creditor_account)


def test_fraud_leaves_the_legitimate_arrivals_where_they_were(fraud_run: SimRun):
    plain = simulate(_scenario(None), 5)
    labelled = {r.key for r in export.labels(fraud_run).itertuples()}

    def legit(run: SimRun, skip: set[str]) -> list[tuple[Any, ...]]:
        return [
            (r.intended_at, r.tenant, r.body.debtor_account, r.body.creditor_account, r.body.amount)
            for r in run.system.clients.requests
            if r.key not in skip
        ]

    assert legit(fraud_run, labelled) == legit(plain, set())
    assert all(not r.body.creditor_name for r in plain.system.clients.requests)


def test_a_fraud_run_replays_byte_for_byte_and_a_run_without_fraud_has_no_labels(
    tmp_path: Path,
):
    scenario = _scenario(FRAUD)
    _run(scenario, 9, tmp_path / "a")
    _run(scenario, 9, tmp_path / "b")
    _run(_scenario(None), 9, tmp_path / "plain")
    names = sorted(p.name for p in (tmp_path / "a").iterdir() if p.suffix == ".parquet")
    assert "labels.parquet" in names
    for name in [*names, "summary.json", "meta.json"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert not (tmp_path / "plain" / "labels.parquet").exists()
    assert load_run(tmp_path / "plain").labels.empty
    resolved = yaml.safe_load((tmp_path / "plain" / "scenario.yaml").read_text())
    assert "fraud" not in resolved["workload"]
    record = load_run(tmp_path / "a")
    assert isinstance(record.labels, pd.DataFrame) and len(record.labels) > 0
