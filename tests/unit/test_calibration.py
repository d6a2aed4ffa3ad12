"""Calibration: the fits recover known service times, and the file is checked field by field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sim.calibration import CalibrationError, load_calibration
from sim.fit import Fit, calibration_yaml, fit_batch, fit_lognormal
from sim.service_times import DEFAULTS, BatchCost, Constant, LogNormal


def test_a_lognormal_keeps_the_median_and_the_mean_of_the_measurements() -> None:
    rng = np.random.default_rng(1)
    values = rng.lognormal(np.log(0.002), 0.6, 20_000)
    fitted = fit_lognormal(values)
    assert fitted.median == pytest.approx(np.median(values))
    assert fitted.mean == pytest.approx(values.mean())
    assert fitted.sigma == pytest.approx(0.6, rel=0.05)


def test_a_batch_fit_recovers_its_per_item_cost_under_a_long_tail() -> None:
    rng = np.random.default_rng(2)
    items = rng.integers(1, 100, 3_000).astype(float)
    base = rng.lognormal(np.log(0.001), 0.5, 3_000)
    stalls = np.where(rng.random(3_000) < 0.05, rng.exponential(0.2, 3_000), 0.0)
    seconds = base + 2e-4 * items + stalls  # a busy host: a few steps wait for a core
    cost = fit_batch(seconds, items, np.zeros(3_000), DEFAULTS.payments_batch)
    assert cost.per_item == pytest.approx(2e-4, rel=0.1)
    assert isinstance(cost.base, LogNormal)
    assert cost.base.median == pytest.approx(0.001, rel=0.2)
    # Nothing was skipped: the per-skipped cost stays the default's, not a fit of noise.
    assert cost.per_skipped == DEFAULTS.payments_batch.per_skipped


def test_a_file_round_trips_to_the_same_service_times(tmp_path: Path) -> None:
    fitted = DEFAULTS.__class__(
        gateway_accept=LogNormal(0.0016, 0.5),
        payments_batch=BatchCost(LogNormal(0.0014, 1.2), 1.6e-4, 5e-6),
        fraud_batch=BatchCost(LogNormal(0.0009, 0.6), 2.4e-4, 0.0),
        same_zone=Constant(0.0),
        consumer_poll=0.05,
        ledger_writers=1,
        host_cores=2,
        client_cpu=0.0004,
    )
    path = tmp_path / "calibration.yaml"
    path.write_text(calibration_yaml(Fit(fitted, {"gateway_accept": 900}, ("statement",), {})))
    loaded = load_calibration(path)
    assert loaded.times.gateway_accept == LogNormal(0.0016, 0.5)
    assert loaded.times.payments_batch == BatchCost(LogNormal(0.0014, 1.2), 1.6e-4, 5e-6)
    assert loaded.times.fraud_batch == BatchCost(LogNormal(0.0009, 0.6), 2.4e-4, 0.0)
    assert loaded.times.consumer_poll == 0.05
    assert (loaded.times.ledger_writers, loaded.times.host_cores) == (1, 2)
    assert loaded.times.client_cpu == 0.0004
    assert loaded.times.statement == DEFAULTS.statement  # left out: the default
    assert len(loaded.sha256) == 64


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("service_times: {gateway_acept: {constant: {value: 1}}}",
         "service_times.gateway_acept: Extra inputs are not permitted"),
        ("service_times: {client: {lognormal: {median: -1, sigma: 0.3}}}",
         "service_times.client.lognormal.median: Input should be greater than 0"),
        ("service_times: {client: {constant: {value: 1}, exponential: {mean: 1}}}",
         "service_times.client: Value error, give exactly one of"),
        ("service_times: {ledger_commit: {per_item: 0.001}}",
         "service_times.ledger_commit.base: Field required"),
        ("service_times: {consumer_poll: .inf}",
         "service_times.consumer_poll: Input should be a finite number"),
        ("[1, 2", "is not YAML"),
    ],
)  # fmt: skip
def test_a_bad_file_is_refused_naming_the_field_and_the_rule(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(CalibrationError) as caught:
        load_calibration(path)
    assert str(caught.value).startswith(f"--calibration: {path}")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
