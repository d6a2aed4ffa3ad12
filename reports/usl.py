"""Gunther's Universal Scalability Law fitted to capacity measured at several topology sizes.

    X(N) = lambda * N / (1 + sigma * (N - 1) + kappa * N * (N - 1))

`sigma` is contention (the serial fraction), `kappa` coherency (the cost of keeping N copies in
step); with kappa > 0, throughput peaks at N* = sqrt((1 - sigma) / kappa) and falls beyond it.
Fitted by non-linear least squares (scipy.optimize.curve_fit) with sigma and kappa bounded to
[0, 1]; intervals are the usual t intervals from the fit's covariance, and N*'s comes from the
delta method. Three parameters need four sizes before any interval exists.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

KAPPA_ZERO = 1e-7
"""Below this, coherency is nil for any topology this testbed models (N* would exceed 3,000)."""


class UslError(ValueError):
    """Too few or unusable points; the message says what a fit needs."""


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float


@dataclass(frozen=True)
class UslFit:
    lam: Interval
    """Throughput of one unit (N = 1) without contention, per second."""
    sigma: Interval
    kappa: Interval
    peak_n: Interval | None
    """N* and its interval; None when kappa is nil (no peak: throughput levels off)."""
    peak_throughput: float | None
    confidence: float
    points: int

    def predict(self, n: np.ndarray) -> np.ndarray:
        return usl(n, self.lam.value, self.sigma.value, self.kappa.value)

    def to_json(self) -> dict[str, Any]:
        return {k: _finite(v) for k, v in asdict(self).items()}


def _finite(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def usl(n: np.ndarray, lam: float, sigma: float, kappa: float) -> np.ndarray:
    result: np.ndarray = lam * n / (1 + sigma * (n - 1) + kappa * n * (n - 1))
    return result


def fit_usl(n: np.ndarray, x: np.ndarray, confidence: float = 0.95) -> UslFit:
    """Fit X(N); UslError with fewer than three distinct sizes or a non-positive throughput."""
    from scipy.optimize import OptimizeWarning, curve_fit
    from scipy.stats import t

    n, x = np.asarray(n, dtype=float), np.asarray(x, dtype=float)
    if len(np.unique(n)) < 3:
        raise UslError("a USL fit needs capacity at three or more distinct sizes")
    if (x <= 0).any() or (n < 1).any():
        raise UslError("a USL fit needs sizes of at least 1 and positive throughput")
    smallest = int(np.argmin(n))
    p0 = [x[smallest] / n[smallest], 0.01, 0.0001]
    bounds = ([0.0, 0.0, 0.0], [np.inf, 1.0, 1.0])
    with warnings.catch_warnings():
        # an exact fit has no residual variance: its intervals come out infinite, not an error
        warnings.simplefilter("ignore", OptimizeWarning)
        params, cov = curve_fit(usl, n, x, p0=p0, bounds=bounds, maxfev=20_000)
    dof = len(n) - 3
    scale = float(t.ppf(0.5 + confidence / 2, dof)) if dof > 0 else math.nan
    errors = np.sqrt(np.clip(np.diag(cov), 0, None)) if dof > 0 else np.full(3, math.nan)
    intervals = [
        Interval(float(p), float(p - scale * e), float(p + scale * e))
        for p, e in zip(params, errors, strict=True)
    ]
    lam, sigma, kappa = (float(p) for p in params)
    peak = None
    peak_x = None
    if kappa > KAPPA_ZERO:
        n_star = math.sqrt((1 - sigma) / kappa)
        # delta method: gradient of sqrt((1 - s) / k) with respect to (lambda, sigma, kappa)
        grad = np.array([0.0, -0.5 / math.sqrt((1 - sigma) * kappa) if sigma < 1 else 0.0,
                         -0.5 * math.sqrt(1 - sigma) * kappa**-1.5])  # fmt: skip
        spread = scale * math.sqrt(float(grad @ cov @ grad)) if dof > 0 else math.nan
        low = max(1.0, n_star - spread) if dof > 0 else math.nan  # max() would drop a NaN
        peak = Interval(n_star, low, n_star + spread)
        peak_x = float(usl(np.array([n_star]), lam, sigma, kappa)[0])
    return UslFit(intervals[0], intervals[1], intervals[2], peak, peak_x, confidence, len(n))
