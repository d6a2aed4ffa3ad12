"""The Universal Scalability Law fit recovers known coefficients, with honest intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reports.usl import UslError, fit_usl, usl


def test_the_fit_recovers_sigma_kappa_and_the_peak_within_its_intervals():
    n = np.array([1, 2, 4, 8, 16, 24, 32, 48], dtype=float)
    truth = usl(n, 1000.0, 0.05, 0.002)
    noise = np.random.default_rng(3).normal(1.0, 0.01, len(n))
    fit = fit_usl(n, truth * noise)
    assert fit.sigma.low <= 0.05 <= fit.sigma.high
    assert fit.kappa.low <= 0.002 <= fit.kappa.high
    n_star = math.sqrt(0.95 / 0.002)  # 21.8
    assert fit.peak_n is not None
    assert fit.peak_n.low <= n_star <= fit.peak_n.high
    assert fit.peak_n.high - fit.peak_n.low < 10
    assert fit.lam.value == pytest.approx(1000, rel=0.05)


def test_linear_scaling_has_no_peak():
    n = np.array([1, 2, 3, 4, 6], dtype=float)
    fit = fit_usl(n, 500.0 * n)
    assert fit.kappa.value == pytest.approx(0.0, abs=1e-6)
    assert fit.sigma.value == pytest.approx(0.0, abs=1e-6)
    assert fit.peak_n is None
    assert fit.to_json()["peak_n"] is None


def test_three_sizes_fit_without_intervals_and_two_are_refused():
    fit = fit_usl(np.array([1.0, 2, 4]), np.array([100.0, 180, 300]))
    assert math.isnan(fit.sigma.low)
    assert fit.to_json()["sigma"]["low"] is None
    with pytest.raises(UslError, match="three or more distinct sizes"):
        fit_usl(np.array([1.0, 2, 2]), np.array([100.0, 180, 181]))
