"""Fraud scoring: the online profile, the features, the rules, the model on disk, training."""

from __future__ import annotations

import json
import math
import random
import re
import statistics
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference_impl.adapters.fraud_model import META_FILE, MODEL_FILE, FraudModel, FraudModelError
from reference_impl.core.checks import APPROVE, Decision
from reference_impl.core.errors import InvalidInput
from reference_impl.core.fraud import (
    FEATURES,
    IDLE_CAP,
    MAX_APPLIED,
    MAX_PAYEES,
    MAX_RECENT,
    AccountProfile,
    FeatureParams,
    FraudRules,
    features,
)
from testbed.fraud_train import (
    LabelledPayment,
    TrainingError,
    feature_table,
    rates,
    threshold_for_recall,
    train,
)

EMPTY = AccountProfile()


pytestmark = pytest.mark.usefixtures("one_thread")


def history(*payments: tuple[float, str, int]) -> AccountProfile:
    """A profile after (at, creditor, amount) payments, ids p0, p1, ..."""
    profile = EMPTY
    for i, (at, creditor, amount) in enumerate(payments):
        profile = profile.with_payment(f"p{i}", at, creditor, amount)
    return profile


# -- the profile ---------------------------------------------------------------------------

payment = st.tuples(
    st.sampled_from([f"id-{i}" for i in range(40)]),
    st.floats(min_value=0, max_value=20_000, allow_nan=False),
    st.sampled_from([f"acc-{i}" for i in range(60)]),
    st.integers(min_value=1, max_value=10**9),
)


@given(st.lists(payment, max_size=60), payment)
@settings(max_examples=200, deadline=None)
def test_applying_a_payment_twice_equals_applying_it_once(before, repeated):
    profile = EMPTY
    for pid, at, creditor, amount in before:
        profile = profile.with_payment(pid, at, creditor, amount)
    pid, at, creditor, amount = repeated
    once = profile.with_payment(pid, at, creditor, amount)
    assert once.with_payment(pid, at, creditor, amount) == once


@given(st.lists(payment, max_size=MAX_APPLIED, unique_by=lambda p: p[0]), st.data())
@settings(max_examples=200, deadline=None)
def test_redelivered_payments_within_the_id_window_count_once(payments, data):
    """At-least-once delivery: any redelivery of the last MAX_APPLIED payments is a no-op."""
    exactly_once = EMPTY
    redelivered = EMPTY
    for i, (pid, at, creditor, amount) in enumerate(payments):
        exactly_once = exactly_once.with_payment(pid, at, creditor, amount)
        redelivered = redelivered.with_payment(pid, at, creditor, amount)
        for j in data.draw(st.lists(st.integers(0, i), max_size=3)):
            redelivered = redelivered.with_payment(*payments[j])
    assert redelivered == exactly_once
    assert redelivered.count == len(payments)


@given(st.lists(payment, max_size=80))
@settings(max_examples=100, deadline=None)
def test_a_profile_survives_its_json_and_stays_bounded(payments):
    profile = EMPTY
    for pid, at, creditor, amount in payments:
        profile = profile.with_payment(pid, at, creditor, amount)
    assert AccountProfile.from_json(profile.to_json()) == profile
    assert len(profile.payees) <= MAX_PAYEES
    assert len(set(profile.payees)) == len(profile.payees)
    assert len(profile.recent) <= MAX_RECENT
    assert len(profile.applied) <= MAX_APPLIED
    assert [r.at for r in profile.recent] == sorted(r.at for r in profile.recent)


def test_the_running_mean_and_variance_are_those_of_the_log_amounts():
    amounts = [120, 2500, 990, 40_000, 7, 2500]
    profile = history(*((float(i), "acc-1", a) for i, a in enumerate(amounts)))
    logs = [math.log(a) for a in amounts]
    assert profile.count == 6
    assert profile.mean_log == pytest.approx(statistics.mean(logs))
    assert profile.log_std == pytest.approx(statistics.stdev(logs))


def test_the_profile_keeps_the_last_hour_and_the_last_distinct_payees():
    payments = [(float(t), f"acc-{t}", 100) for t in range(0, 7200, 60)]  # 120, one a minute
    profile = history(*payments)
    assert [r.at for r in profile.recent] == [float(t) for t in range(3600, 7200, 60)]
    assert profile.payees == tuple(f"acc-{t}" for t in range(0, 7200, 60))[-MAX_PAYEES:]
    assert profile.applied == tuple(f"p{i}" for i in range(120))[-MAX_APPLIED:]
    assert profile.last_at == 7140.0


def test_paying_a_known_payee_again_moves_it_to_the_end():
    profile = history((0.0, "acc-1", 100), (1.0, "acc-2", 100), (2.0, "acc-1", 100))
    assert profile.payees == ("acc-2", "acc-1")
    assert [r.new_payee for r in profile.recent] == [True, True, False]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{", "Expecting"),
        ("[]", ""),
        ('{"count": "1"}', "count"),
        (EMPTY.to_json().replace('"payees":[]', '"payees":[1]'), "payees"),
    ],
)
def test_a_profile_that_is_not_a_profile_is_refused(text, problem):
    with pytest.raises(InvalidInput, match=f"^account profile: not a profile's JSON: .*{problem}"):
        AccountProfile.from_json(text)


@pytest.mark.parametrize("amount", [0, -5, 2.5, True])
def test_an_amount_must_be_positive_minor_units(amount):
    with pytest.raises(InvalidInput, match=r"^amount: must be a positive integer of minor units"):
        EMPTY.with_payment("p", 0.0, "acc-1", amount)
    with pytest.raises(InvalidInput, match=r"^amount: "):
        features(EMPTY, 0.0, "acc-1", amount)


# -- the features --------------------------------------------------------------------------


def test_an_account_without_history_has_neutral_features():
    f = features(EMPTY, 10.0, "acc-1", 2500)
    assert list(f) == list(FEATURES)
    assert f["log_amount"] == pytest.approx(math.log(2500))
    assert (f["amount_z"], f["amount_ratio"], f["history_count"]) == (0.0, 1.0, 0.0)
    assert f["new_payee"] == 1.0
    assert f["seconds_since_last"] == IDLE_CAP
    assert f["usual_payments_60s"] == 0.0
    assert f["payments_1h"] == f["amount_1h"] == f["payees_1h"] == 0.0


def test_features_describe_the_history_before_the_payment():
    profile = history(
        (0.0, "acc-1", 1000),  # more than an hour before: out of every window
        (3000.0, "acc-2", 1000),
        (3590.0, "acc-3", 100),
        (3650.0, "acc-2", 1000),
        (3660.0, "acc-4", 950_000),
    )
    f = features(profile, 3700.0, "acc-2", 1000)
    assert f["new_payee"] == 0.0
    assert f["payments_60s"] == 2.0  # 3650 and 3660
    assert f["amount_60s"] == 951_000.0
    assert f["payments_1h"] == 4.0  # not the one at 0
    assert f["amount_1h"] == 1000 + 100 + 1000 + 950_000
    assert f["payees_1h"] == 3.0  # acc-2, acc-3, acc-4
    assert f["new_payees_1h"] == 3.0  # the second payment to acc-2 was not new
    assert f["near_threshold_1h"] == 1.0
    assert f["seconds_since_last"] == 40.0
    assert f["history_count"] == 5.0
    assert f["usual_payments_60s"] == pytest.approx(60 * 5 / 3700)
    assert features(profile, 3700.0, "acc-9", 1000)["new_payee"] == 1.0


def test_the_amount_is_measured_against_the_accounts_usual_amounts():
    amounts = [500, 1000, 2000, 4000, 800, 3000]
    profile = history(*((float(i), "acc-1", a) for i, a in enumerate(amounts)))
    mean, std = profile.mean_log, profile.log_std
    f = features(profile, 10.0, "acc-1", 50_000)
    assert f["amount_z"] == pytest.approx((math.log(50_000) - mean) / std)
    assert f["amount_ratio"] == pytest.approx(50_000 / math.exp(mean))
    assert features(profile, 10.0, "acc-1", 1000)["amount_z"] == pytest.approx(
        (math.log(1000) - mean) / std
    )


def test_a_constant_history_does_not_make_a_cent_an_outlier():
    profile = history(*((float(i), "acc-1", 1000) for i in range(10)))
    assert features(profile, 20.0, "acc-1", 1001)["amount_z"] < 0.01


def test_tiny_and_near_threshold_flags_follow_the_parameters():
    params = FeatureParams(tiny_amount=50, reporting_threshold=10_000, near_fraction=0.9)
    flags = {
        a: (f["tiny_amount"], f["near_threshold"])
        for a in (50, 51, 8_999, 9_000, 9_999, 10_000)
        for f in [features(EMPTY, 0.0, "acc-1", a, params)]
    }
    assert flags == {
        50: (1.0, 0.0),
        51: (0.0, 0.0),
        8_999: (0.0, 0.0),
        9_000: (0.0, 1.0),
        9_999: (0.0, 1.0),
        10_000: (0.0, 0.0),
    }


@pytest.mark.parametrize(
    ("field", "value"), [("tiny_amount", 0), ("reporting_threshold", 1), ("near_fraction", 1.0)]
)
def test_feature_parameters_are_checked(field, value):
    with pytest.raises(InvalidInput, match=f"^{field}: must "):
        FeatureParams(**{field: value})


# -- the rules -----------------------------------------------------------------------------

USUAL = history(*((60.0 * i, f"acc-{i % 3}", 2000 + 10 * i) for i in range(20)))
"""Twenty payments of about 20.00, a minute apart, to three payees."""


def test_a_usual_payment_is_approved():
    assert FraudRules().decide(features(USUAL, 1300.0, "acc-1", 2100)) == APPROVE


def test_velocity_fires_on_a_burst_well_above_the_accounts_usual_rate():
    quiet = [(1000.0 * i, "acc-1", 2000) for i in range(5)]
    burst = history(*quiet, *((5000.0 + i, "acc-1", 2000) for i in range(10)))
    assert FraudRules().decide(features(burst, 5010.0, "acc-1", 2000)) == Decision(
        "review", "fraud:rules:velocity", 1.0
    )
    assert FraudRules().decide(features(burst, 5070.0, "acc-1", 2000)) == APPROVE
    fewer = history(*quiet, *((5000.0 + i, "acc-1", 2000) for i in range(9)))
    assert FraudRules().decide(features(fewer, 5010.0, "acc-1", 2000)) == APPROVE


def test_a_busy_account_at_its_usual_rate_is_no_burst():
    busy = history(*((2.0 * i, "acc-1", 2000) for i in range(1800)))  # 30 a minute for an hour
    f = features(busy, 3600.0, "acc-1", 2000)
    assert f["payments_60s"] == 29.0  # 3542 to 3598: the window is (at - 60, at]
    assert f["usual_payments_60s"] == pytest.approx(30.0)
    assert FraudRules().decide(f) == APPROVE


def test_a_large_payment_to_a_new_payee_fires():
    rules = FraudRules()
    decision = rules.decide(features(USUAL, 1300.0, "acc-new", 200_000))
    assert decision == Decision("review", "fraud:rules:new_payee_large", 1.0)
    assert rules.decide(features(USUAL, 1300.0, "acc-1", 200_000)) == APPROVE  # a known payee
    few = history((0.0, "acc-1", 2000), (60.0, "acc-1", 2000))
    assert rules.decide(features(few, 120.0, "acc-new", 200_000)) == APPROVE  # too little history


def test_tiny_amounts_to_many_new_payees_fire():
    profile = history(*((100.0 + 5 * i, f"acc-{i}", 50) for i in range(4)))
    assert FraudRules().decide(features(profile, 130.0, "acc-new", 50)) == Decision(
        "review", "fraud:rules:tiny_fanout", 1.0
    )
    assert FraudRules().decide(features(profile, 130.0, "acc-0", 50)) == APPROVE


def test_a_second_payment_just_under_the_reporting_threshold_fires():
    profile = history((0.0, "acc-1", 950_000))
    assert FraudRules().decide(features(profile, 600.0, "acc-1", 960_000)) == Decision(
        "review", "fraud:rules:structuring", 1.0
    )
    assert FraudRules().decide(features(EMPTY, 600.0, "acc-1", 960_000)) == APPROVE


# -- training on a hand-made data set ------------------------------------------------------


def synthetic_payments(seed: int, accounts: int = 60, hours: float = 4.0) -> list[LabelledPayment]:
    """Accounts paying their few usual payees ~20.00 every few minutes, plus labelled bursts of
    tiny amounts to many payees and takeovers: large amounts to new payees."""
    rng = random.Random(seed)
    out: list[LabelledPayment] = []
    end = hours * 3600
    for a in range(accounts):
        usual = [f"acc-{rng.randrange(accounts)}" for _ in range(3)]
        t = rng.uniform(0, 300)
        while t < end:
            amount = max(1, round(rng.lognormvariate(math.log(2000), 0.5)))
            out.append(LabelledPayment(f"l{len(out)}", t, "t1", f"acc-{a}", rng.choice(usual),
                                       amount))  # fmt: skip
            t += rng.expovariate(1 / 240)
    for case in range(40):
        start, victim = rng.uniform(0, end), f"acc-{rng.randrange(accounts)}"
        for i in range(rng.randrange(3, 8)):
            if case % 2:
                amount, at, pattern = rng.randint(1, 150), start + i * 2, "card_testing"
            else:
                amount, at, pattern = rng.randint(50_000, 200_000), start + i * 40, "takeover"
            out.append(LabelledPayment(f"f{len(out)}", at, "t1", victim, f"new-{case}-{i}",
                                       amount, pattern))  # fmt: skip
    return out


@pytest.fixture(scope="module")
def trained():
    table = feature_table(synthetic_payments(3))
    return table, train(table, seed=3, recall=0.8)


def test_training_reaches_the_recall_asked_for_on_the_validation_part(trained):
    table, result = trained
    assert len(result.model.training) and result.model.training["rows"] == len(table)
    assert result.validation.rows + result.fitted.rows == len(table)
    assert result.validation.recall >= 0.8
    assert result.validation.precision > 0.5
    assert set(result.recall_by_pattern) == {"card_testing", "takeover"}
    assert 0 <= result.model.threshold <= 1
    assert 0 < result.score_seconds[0] <= result.score_seconds[1]


def test_sanctioned_payees_are_applied_to_profiles_but_not_rows():
    payments = [
        LabelledPayment("a", 0.0, "t1", "acc-1", "acc-2", 100, "sanctioned_payee"),
        LabelledPayment("b", 1.0, "t1", "acc-1", "acc-2", 100),
    ]
    table = feature_table(payments)
    assert table.patterns == [""]
    assert dict(zip(FEATURES, table.rows[0], strict=True))["new_payee"] == 0.0


def test_training_without_fraud_in_a_part_says_what_to_change():
    legit = [p for p in synthetic_payments(4, accounts=10, hours=0.5) if not p.pattern]
    with pytest.raises(TrainingError, match=r"has 0 fraud payments.*--duration"):
        train(feature_table(legit), seed=1, recall=0.8)


def test_the_threshold_is_the_highest_that_reaches_the_recall():
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.1]
    labels = [True, False, True, True, False, True]
    assert threshold_for_recall(scores, labels, 0.5) == 0.7
    assert threshold_for_recall(scores, labels, 0.75) == 0.6
    assert threshold_for_recall(scores, labels, 1.0) == 0.1
    r = rates([s >= 0.6 for s in scores], labels)
    assert (r.precision, r.recall, r.fpr) == (0.75, 0.75, 0.5)


# -- the model on disk ---------------------------------------------------------------------


def test_a_saved_model_loads_and_scores_the_same(trained, tmp_path: Path):
    table, result = trained
    result.model.save(tmp_path / "m")
    loaded = FraudModel.load(tmp_path / "m")
    assert loaded.threshold == result.model.threshold
    assert loaded.params == result.model.params
    assert loaded.training["validation"] == result.validation.as_dict()
    for row in table.rows[:20]:
        values = dict(zip(FEATURES, row, strict=True))
        assert loaded.score(values) == result.model.score(values)
        assert loaded.decide(values) == result.model.decide(values)
    meta = json.loads((tmp_path / "m" / META_FILE).read_text())
    assert meta["features"] == list(FEATURES)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == sorted([MODEL_FILE, META_FILE])


def test_the_model_reviews_at_its_threshold(trained):
    table, result = trained
    model = result.model
    scored = [(model.score(dict(zip(FEATURES, r, strict=True))), r) for r in table.rows[-100:]]
    for score, row in scored:
        decision = model.decide(dict(zip(FEATURES, row, strict=True)))
        expected = "review" if score >= model.threshold else "approve"
        assert decision == Decision(expected, "fraud:model" if expected == "review" else "", score)
    assert {d for d, _ in scored} != {0.0}


@pytest.fixture
def saved(trained, tmp_path: Path) -> Path:
    trained[1].model.save(tmp_path / "m")
    return tmp_path / "m"


def at(path: Path) -> str:
    """A pattern for a message that starts with `path`."""
    return "^" + re.escape(str(path))


def edit_meta(directory: Path, **changes: object) -> Path:
    path = directory / META_FILE
    meta = json.loads(path.read_text())
    meta.update(changes)
    path.write_text(json.dumps(meta))
    return path


def test_loading_a_missing_directory_names_it(tmp_path: Path):
    with pytest.raises(
        FraudModelError, match=at(tmp_path / "nope") + r": no such model directory$"
    ):
        FraudModel.load(tmp_path / "nope")


def test_loading_without_model_json_names_the_file(saved: Path):
    (saved / META_FILE).unlink()
    with pytest.raises(FraudModelError, match=at(saved / META_FILE) + r": missing"):
        FraudModel.load(saved)


def test_loading_without_the_classifier_names_the_file(saved: Path):
    (saved / MODEL_FILE).unlink()
    with pytest.raises(FraudModelError, match=at(saved / MODEL_FILE) + r": missing"):
        FraudModel.load(saved)


def test_loading_malformed_json_names_the_file(saved: Path):
    (saved / META_FILE).write_text('{"format": 1,')
    with pytest.raises(FraudModelError, match=at(saved / META_FILE) + r": malformed JSON: "):
        FraudModel.load(saved)


def test_loading_a_corrupt_classifier_names_the_file(saved: Path):
    (saved / MODEL_FILE).write_bytes(b"not a pickle")
    with pytest.raises(FraudModelError, match=at(saved / MODEL_FILE) + r": cannot be loaded: "):
        FraudModel.load(saved)


@pytest.mark.parametrize(
    ("features_in_file", "problem"),
    [
        ([*FEATURES[:-1], "velocity_5m"], f"missing {FEATURES[-1]}; unknown velocity_5m"),
        (list(FEATURES[:-1]), f"missing {FEATURES[-1]}"),
        (list(reversed(FEATURES)), "this version's features, but not in its order"),
        ("log_amount", "must be a list of feature names"),
    ],
)
def test_a_model_over_other_features_is_refused(saved: Path, features_in_file, problem):
    path = edit_meta(saved, features=features_in_file)
    with pytest.raises(
        FraudModelError, match=at(path) + rf": features: .*{problem}.*; retrain it$"
    ):
        FraudModel.load(saved)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"format": 2}, "format: must be 1, not 2"),
        ({"threshold": 1.5}, "threshold: must be a number from 0 to 1, not 1.5"),
        ({"threshold": "0.5"}, "threshold: must be a number from 0 to 1"),
        ({"feature_params": {"tiny_amount": 0}}, "feature_params.tiny_amount: must be at least"),
        ({"feature_params": {"tiny": 5}}, "feature_params: .*unexpected keyword argument"),
        ({"training": {"sklearn_version": "0.1"}}, "training.sklearn_version: trained with"),
    ],
)
def test_a_model_json_that_breaks_a_rule_is_refused(saved: Path, changes, problem):
    path = edit_meta(saved, **changes)
    with pytest.raises(FraudModelError, match=at(path) + rf": {problem}"):
        FraudModel.load(saved)
