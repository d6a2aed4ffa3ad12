"""The `workload.fraud` section and its schedule: errors name the field, each pattern has its
shape, the same seed draws the same fraud, and the legitimate schedule does not move."""

from __future__ import annotations

import itertools
import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from loadtest.pacing import arrivals, arrivals_seed, fraud_arrivals, schedule
from loadtest.pacing import request_body as _body
from reference_impl.api.models import NewPayment, parse_body
from reference_impl.compliance.sanctions import load_watchlist
from reports.record import SCHEMAS, RunRecordError, empty_table, load_run, write_run_record
from scenarios.fraud import (
    PATTERNS,
    FraudPayment,
    counterparty_name,
    fraud_schedule,
    request_names,
)
from scenarios.loader import ScenarioError, load_scenario
from scenarios.schema import Workload
from scenarios.workload import account_ids

MINIMAL = "description: d\nduration: 1s\nworkload:\n  rate: 10/s\n"
EVERY = {
    "account_takeover": {"rate": "30/min", "payments": 6, "within": "20s", "factor": 10},
    "mule_chain": {"rate": "30/min", "hops": 4, "gap": "10s", "skim": 0.1},
    "structuring": {"rate": "10/min", "payments": 12, "margin": 0.02, "within": "40s"},
    "card_testing": {"rate": "30/min", "payments": 40, "within": "3s", "min": 5, "max": 99},
    "sanctioned_payee": {"rate": "30/min", "payments": 2, "within": "10s"},
}
ACCOUNTS = 500


def _workload(**fraud: Any) -> Workload:
    return Workload.model_validate(
        {"rate": 50, "accounts": ACCOUNTS, "tenants": 3, "initial_balance": 50_000_000,
         "fraud": fraud}
    )  # fmt: skip


@pytest.fixture(scope="module")
def drawn() -> list[FraudPayment]:
    return fraud_schedule(_workload(**EVERY), 600.0, random.Random(11))


def _cases(drawn: list[FraudPayment], pattern: str) -> dict[str, list[FraudPayment]]:
    cases: dict[str, list[FraudPayment]] = defaultdict(list)
    for p in drawn:
        if p.pattern == pattern:
            cases[p.case].append(p)
    assert len(cases) >= 3, f"too few {pattern} incidents to judge"
    return cases


def _errors(tmp_path: Path, fraud_yaml: str) -> list[str]:
    path = tmp_path / "s.yaml"
    path.write_text(MINIMAL + "  fraud:\n" + fraud_yaml)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    return [line.removeprefix(f"{path}: ") for line in info.value.lines]


# -- the section ------------------------------------------------------------------------------
def test_an_unknown_pattern_is_named_with_the_patterns_there_are(tmp_path: Path):
    [line] = _errors(tmp_path, "    phishing: {rate: 1/s}\n")
    assert line.startswith("workload.fraud.phishing: unknown fraud pattern; known: ")
    assert all(p in line for p in PATTERNS)


@pytest.mark.parametrize(
    ("fraud_yaml", "start"),
    [
        ("    card_testing: {rate: 1/s, min: 300, max: 200}\n",
         "workload.fraud.card_testing: min: must not exceed max"),
        ("    structuring: {rate: fast}\n",
         "workload.fraud.structuring.rate: must be a rate like"),
        ("    structuring: {rate: 1/h, margin: 1.5}\n",
         "workload.fraud.structuring.margin: input should be less than 1"),
        ("    structuring: {rate: 1/h, threshold: 10, margin: 0.01}\n",
         "workload.fraud.structuring: margin: [threshold * (1 - margin), threshold) holds no"),
        ("    structuring: {rate: 1/h, payments: 20}\n",
         "workload: fraud.structuring: 20 payments just under 1000000 need up to 19999980"),
        ("    mule_chain: {rate: 1/min, hops: 0}\n",
         "workload.fraud.mule_chain.hops: input should be greater than or equal to 1"),
        ("    account_takeover: {rate: 1/min, within: 0s}\n",
         "workload.fraud.account_takeover.within: input should be greater than 0"),
        ("    account_takeover: {rate: 1/min, burst: 3}\n",
         "workload.fraud.account_takeover.burst: unknown field"),
        ("    names: maybe\n", "workload.fraud.names: must be true or false"),
    ],
)  # fmt: skip
def test_a_bad_knob_names_the_field_and_the_rule(tmp_path: Path, fraud_yaml: str, start: str):
    [line] = _errors(tmp_path, fraud_yaml)
    assert line.startswith(start), line


def test_a_chain_longer_than_the_accounts_is_refused(tmp_path: Path):
    path = tmp_path / "s.yaml"
    path.write_text(MINIMAL + "  accounts: 3\n  fraud:\n    mule_chain: {rate: 1/min, hops: 3}\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert info.value.lines == [
        f"{path}: workload: fraud.mule_chain.hops: a chain of 3 hops needs 4 accounts, "
        "the workload has 3"
    ]


def test_without_a_fraud_section_the_resolved_workload_has_no_fraud_key():
    workload = Workload(rate=10.0)
    assert "fraud" not in workload.model_dump()
    assert fraud_schedule(workload, 60.0, random.Random(1)) == []
    assert _workload().model_dump(mode="json")["fraud"]["names"] is True


# -- the schedule -----------------------------------------------------------------------------
def test_the_same_seed_draws_the_same_fraud_and_another_seed_other_fraud(
    drawn: list[FraudPayment],
):
    workload = _workload(**EVERY)
    assert fraud_schedule(workload, 600.0, random.Random(11)) == drawn
    assert fraud_schedule(workload, 600.0, random.Random(12)) != drawn
    assert [p.at for p in drawn] == sorted(p.at for p in drawn)
    assert all(0 <= p.at < 600.0 for p in drawn)
    assert {p.pattern for p in drawn} == set(PATTERNS)
    ids = set(account_ids(ACCOUNTS))
    assert all(p.debtor in ids and p.creditor in ids and p.debtor != p.creditor for p in drawn)
    assert all(p.amount >= 1 for p in drawn)


def test_a_pattern_keeps_its_payments_when_another_pattern_changes(drawn: list[FraudPayment]):
    changed = _workload(**{**EVERY, "structuring": {**EVERY["structuring"], "rate": "1/s"}})
    again = fraud_schedule(changed, 600.0, random.Random(11))
    for pattern in ("account_takeover", "card_testing", "sanctioned_payee"):
        assert [p for p in again if p.pattern == pattern] == [
            p for p in drawn if p.pattern == pattern
        ]


def test_takeover_bursts_pay_new_payees_more_than_usual_within_the_span(
    drawn: list[FraudPayment],
):
    tail = set(account_ids(ACCOUNTS)[-ACCOUNTS // 10 :])
    for payments in _cases(drawn, "account_takeover").values():
        assert len({p.debtor for p in payments}) == 1
        payees = [p.creditor for p in payments]
        assert len(set(payees)) == len(payees), "each payment of a burst goes to another payee"
        assert set(payees) <= tail
        assert payments[-1].at - payments[0].at < 20.0
    amounts = [p.amount for p in drawn if p.pattern == "account_takeover"]
    assert pd.Series(amounts).median() > 5 * 2_500  # the workload's median amount is 2,500


def test_mule_chains_hop_on_within_the_gap_each_a_little_less(drawn: list[FraudPayment]):
    for payments in _cases(drawn, "mule_chain").values():
        hops = sorted(payments, key=lambda p: p.at)
        if len(hops) < 4:
            continue  # cut short by the end of the schedule
        accounts = [hops[0].debtor, *(p.creditor for p in hops)]
        assert len(set(accounts)) == 5
        for sent, passed_on in itertools.pairwise(hops):
            assert passed_on.debtor == sent.creditor
            assert 0 < passed_on.at - sent.at <= 10.0
            assert sent.amount * 0.9 <= passed_on.amount < sent.amount


def test_structuring_stays_just_under_the_threshold(drawn: list[FraudPayment]):
    for payments in _cases(drawn, "structuring").values():
        assert len({p.debtor for p in payments}) == 1
        assert all(980_000 <= p.amount < 1_000_000 for p in payments)
        assert payments[-1].at - payments[0].at < 40.0


def test_card_testing_floods_tiny_amounts_to_many_payees(drawn: list[FraudPayment]):
    for payments in _cases(drawn, "card_testing").values():
        assert len({p.debtor for p in payments}) == 1
        assert all(5 <= p.amount <= 99 for p in payments)
        assert payments[-1].at - payments[0].at < 3.0
        if len(payments) == 40:
            assert len({p.creditor for p in payments}) == 40


def test_sanctioned_payees_are_named_as_variants_of_listed_parties(drawn: list[FraudPayment]):
    listed = {n for e in load_watchlist().entries for n in (e.name, *e.aliases)}
    folded = {n.casefold() for n in listed}
    names = [p.creditor_name for p in drawn if p.pattern == "sanctioned_payee"]
    assert names and all(names)
    exact = sum(n in listed for n in names)
    assert exact <= len(names) // 4, "a variant should rarely be the listed spelling"
    # A variant stays close to a listed name: it shares a word with one (case aside).
    words = {w for n in folded for w in n.split()}
    assert sum(bool(set(n.casefold().split()) & words) for n in names) >= len(names) * 0.8
    for payments in _cases(drawn, "sanctioned_payee").values():
        assert len({(p.creditor, p.creditor_name) for p in payments}) == 1


def test_names_are_stable_per_account_and_follow_the_switch(drawn: list[FraudPayment]):
    assert counterparty_name("tenant-1", "acc-000007") == counterparty_name(
        "tenant-1", "acc-000007"
    )
    assert len({counterparty_name("tenant-1", a) for a in account_ids(50)}) > 25
    legit = [p for p in drawn if p.pattern == "card_testing"]
    assert all(p.creditor_name == counterparty_name(p.tenant, p.creditor) for p in legit)
    quiet = _workload(**{**EVERY, "names": False})
    assert request_names(quiet, "tenant-1", "acc-000001", "acc-000002") == ("", "")
    unnamed = fraud_schedule(quiet, 600.0, random.Random(11))
    assert all(p.creditor_name == "" for p in unnamed if p.pattern != "sanctioned_payee")
    assert all(p.creditor_name for p in unnamed if p.pattern == "sanctioned_payee")


# -- the load runtime's schedule --------------------------------------------------------------
def test_the_load_schedule_adds_the_sims_fraud_to_the_same_legit_arrivals():
    workload = _workload(**EVERY)
    plain = workload.model_copy(update={"fraud": None})
    legit = list(arrivals(plain, 60.0, random.Random(arrivals_seed(3, 0, 1))))
    mixed = list(schedule(workload, 60.0, 3))
    fraud = fraud_schedule(workload, 60.0, random.Random("3/fraud"))
    assert [a.at for a in mixed] == sorted(a.at for a in mixed)
    assert [(a.at, a.debtor, a.amount) for a in mixed if not a.pattern] == [
        (a.at, a.debtor, a.amount) for a in legit
    ]
    assert [(a.at, a.debtor, a.creditor, a.amount, a.creditor_name, a.case)
            for a in mixed if a.pattern] == [
        (p.at, p.debtor, p.creditor, p.amount, p.creditor_name, p.case) for p in fraud
    ]  # fmt: skip
    # With several generator processes each sends whole incidents, together all of them.
    shares = [fraud_arrivals(workload, 60.0, 3, i, 3) for i in range(3)]
    assert sorted(a.case for s in shares for a in s) == sorted(p.case for p in fraud)
    assert all(len({a.case for a in s} & {a.case for a in t}) == 0
               for s, t in itertools.combinations(shares, 2))  # fmt: skip


def test_a_load_body_with_names_hashes_as_the_api_parses_it():
    workload = _workload(**EVERY)
    [a, *_] = [a for a in schedule(workload, 60.0, 3) if a.pattern == "sanctioned_payee"]
    body = _body(a)
    parsed, _digest = parse_body(body, NewPayment)
    assert parsed.creditor_name == a.creditor_name
    assert parsed.debtor_name == a.debtor_name == counterparty_name(a.tenant, a.debtor)
    assert json.loads(body)["amount"] == a.amount


# -- the labels table -------------------------------------------------------------------------
def test_labels_are_written_only_with_rows_and_read_back_empty_when_absent(tmp_path: Path):
    tables = {name: empty_table(name) for name in SCHEMAS}

    def write(**optional: pd.DataFrame) -> None:
        meta = {"mode": "sim", "seed": 1}
        write_run_record(tmp_path, tables={**tables, **optional}, meta=meta, scenario_yaml="")

    write()
    record = load_run(tmp_path)
    assert list(record.labels.columns) == ["key", "tenant", "pattern", "case"]
    assert list(record.decisions.columns) == [
        "payment_id", "tenant", "check", "verdict", "reason", "score", "at",
    ]  # fmt: skip
    assert record.labels.empty and record.decisions.empty
    labels = pd.DataFrame(
        {"key": ["k3"], "tenant": ["tenant-1"], "pattern": ["mule_chain"], "case": ["m-1"]}
    )
    write(labels=labels)
    assert load_run(tmp_path).labels.to_dict("records") == labels.to_dict("records")
    write(labels=empty_table("labels"))
    assert not (tmp_path / "labels.parquet").exists()
    with pytest.raises(RunRecordError, match="'labels' column 'pattern': value 'phishing'"):
        write(labels=labels.assign(pattern="phishing"))
    decision = {"payment_id": "p1", "tenant": "t", "check": "fraud", "verdict": "maybe",
                "reason": "", "score": 0.5, "at": 1.0}  # fmt: skip
    with pytest.raises(RunRecordError, match="'decisions' column 'verdict'"):
        write(decisions=pd.DataFrame([decision]))
    write(decisions=pd.DataFrame([{**decision, "verdict": "review"}]))
    assert load_run(tmp_path).decisions["verdict"].tolist() == ["review"]
