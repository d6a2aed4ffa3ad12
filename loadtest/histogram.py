"""Latency histograms that merge exactly across generator processes (HdrHistogram).

Each generator process records into its own HDR histograms and ships them encoded (HdrHistogram's
compressed, base64 wire form); the master adds the bucket counts, so the merged histogram is the
one a single process would have recorded: percentiles are read from it, never averaged.
Values are integer microseconds from 1 us to one hour at 3 significant digits (0.1% precision).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3_600_000_000
SIGNIFICANT_DIGITS = 3
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def record_seconds(histogram: HdrHistogram, seconds: float) -> None:
    """Record a duration, clamped into the trackable range (a clock step can make it < 0)."""
    histogram.record_value(min(HIGHEST_US, max(LOWEST_US, round(seconds * 1e6))))


def encode(histogram: HdrHistogram) -> str:
    encoded: bytes = histogram.encode()
    return encoded.decode("ascii")


def merge(encoded: Iterable[str]) -> HdrHistogram:
    """One histogram holding every count of the encoded ones."""
    merged = new_histogram()
    for text in encoded:
        merged.decode_and_add(text.encode("ascii"))
    return merged


@dataclass(frozen=True)
class HistogramSummary:
    """A histogram's figures in seconds (NaN when it is empty), and its encoded form."""

    count: int
    mean: float
    p50: float
    p90: float
    p99: float
    p999: float
    max: float
    encoded: str

    @classmethod
    def of(cls, histogram: HdrHistogram) -> HistogramSummary:
        count: int = histogram.get_total_count()
        if not count:
            return cls(0, *(math.nan,) * 6, encode(histogram))
        p50, p90, p99, p999 = (histogram.get_value_at_percentile(p) / 1e6 for p in PERCENTILES)
        return cls(
            count, histogram.get_mean_value() / 1e6, p50, p90, p99, p999,
            histogram.get_max_value() / 1e6, encode(histogram),
        )  # fmt: skip
