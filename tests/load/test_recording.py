"""Rows and HDR histograms of a generator process; exact merging across processes."""

from __future__ import annotations

import math
import random

import pytest

from loadtest.attempts import Attempt, Request
from loadtest.histogram import HistogramSummary, encode, merge, new_histogram, record_seconds
from loadtest.pacing import Arrival
from loadtest.recorder import Recorder
from reports.record import to_arrow


def test_merged_histograms_equal_one_histogram_of_every_value() -> None:
    rng = random.Random(4)
    values = [rng.lognormvariate(-5, 1.5) for _ in range(30_000)]
    parts = [new_histogram() for _ in range(3)]
    whole = new_histogram()
    for i, v in enumerate(values):
        record_seconds(parts[i % 3], v)
        record_seconds(whole, v)
    merged = merge(encode(p) for p in parts)
    assert list(merged.counts) == list(whole.counts)
    assert HistogramSummary.of(merged) == HistogramSummary.of(whole)
    summary = HistogramSummary.of(merged)
    ordered = sorted(values)
    # HDR keeps 3 significant digits; percentiles agree up to that and the rank convention.
    assert summary.p99 == pytest.approx(ordered[int(0.99 * len(ordered))], rel=5e-3)
    assert summary.count == len(values) and summary.max == pytest.approx(max(values), rel=1e-3)


def test_an_empty_histogram_summarises_to_nan() -> None:
    summary = HistogramSummary.of(new_histogram())
    assert summary.count == 0 and math.isnan(summary.p99) and math.isnan(summary.max)


def attempt(key: str, n: int, intended: float, sent: float, done: float, status: int,
            outcome: str, waited: bool = False) -> Attempt:  # fmt: skip
    arrival = Arrival(intended, "tenant-1", "acc-000001", "acc-000002", 5, "EUR", False)
    a = Attempt(Request(key, arrival, b""), n, intended, sent, done, status, "", outcome, waited)
    if status == 202:
        a.payment_id = f"p-{key}"
    return a


def test_every_attempt_is_a_row_and_a_latency_from_its_intended_time() -> None:
    rec = Recorder(late_after=0.010)
    rec.record(attempt("k1", 1, 1.0, 1.001, 1.011, 202, "accepted"))
    rec.record(attempt("k2", 1, 2.0, 2.5, 2.6, 202, "accepted", waited=True))  # waited 0.5 s
    rec.record(attempt("k3", 1, 3.0, 3.02, 4.02, 0, "timeout"))  # late, a user was idle
    rec.record(attempt("k3", 2, 4.2, 4.2, 4.25, 503, "error"))
    rec.record(attempt("k4", 1, 9.0, math.nan, math.nan, 0, "timeout"))  # never sent
    out = rec.close(offset=100.0, end=10.0)
    rows = out.table.to_pandas()
    to_arrow("requests", rows)
    assert list(rows["key"]) == ["k1", "k2", "k3", "k3", "k4"]
    assert list(rows["intended_at"]) == [101.0, 102.0, 103.0, 104.2, 109.0]
    assert math.isnan(rows["sent_at"].iloc[4]) and math.isnan(rows["done_at"].iloc[4])
    assert rows["payment_id"].iloc[0] == "p-k1"
    assert (out.sent, out.unsent, out.late_idle, out.late_waited) == (4, 1, 1, 1)
    latency = HistogramSummary.of(out.histograms["latency"])
    service = HistogramSummary.of(out.histograms["service"])
    assert latency.count == 5 and service.count == 4
    # k2 waited: 0.6 s from its intended time, 0.1 s from its send; k4 counts until the end.
    assert sorted(_values(out.histograms["latency"])) == pytest.approx(
        [0.011, 0.05, 0.6, 1.0, 1.02], rel=1e-3
    )
    assert sorted(_values(out.histograms["service"])) == pytest.approx(
        [0.01, 0.05, 0.1, 1.0], rel=1e-3
    )


def _values(histogram: object) -> list[float]:
    it = histogram.get_recorded_iterator()  # type: ignore[attr-defined]
    return [
        item.value_iterated_to / 1e6 for item in it for _ in range(item.count_at_value_iterated_to)
    ]
