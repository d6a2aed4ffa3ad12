"""Latencies named for what they measure: each kind from the clock it says it starts at."""

from __future__ import annotations

import math

import numpy as np
import pytest
from record_harness import NAN, payment, request, tables

from reports.metrics import latencies, metrics, summarise
from scenarios.slo import METRICS, SloError, parse_slo

# k1 times out once, then is accepted on its retry; k2 is accepted then replayed and rejected by
# screening; tenant t2 uses the same key name k1 for a payment that posts but never settles.
RECORD = tables(
    requests=[
        request("k1", 1, 0.0, NAN, 0),
        request("k1", 2, 1.0, 1.2, 202, "p1"),
        request("k2", 1, 2.0, 2.1, 202, "p2"),
        request("k2", 2, 2.5, 2.6, 202, "p2"),
        request("k1", 1, 3.0, 3.3, 202, "p3", tenant="t2"),
    ],
    payments=[
        payment("p1", "k1", "settled", 1.1, 1.5, 5.0),
        payment("p2", "k2", "rejected", 2.05),
        payment("p3", "k1", "posted", 3.2, 3.4, tenant="t2"),
    ],
)


def test_each_latency_starts_at_its_own_clock():
    found = latencies(RECORD)
    seconds = {k: sorted(np.round(s.seconds, 9).tolist()) for k, s in found.items()}
    assert seconds == {
        "ack": [0.1, 0.3, 1.2],  # first send to first 202: k1's timed-out attempt counts
        "processing": [0.2, 0.4],  # received_at to posted_at
        "posted": [0.4, 1.5],  # first send to posted_at
        "settled": [5.0],  # first send to settled_at
    }
    assert sorted(found["processing"].at.tolist()) == [1.1, 3.2]
    assert sorted(found["settled"].at.tolist()) == [0.0]


def test_metrics_carry_every_statistic_of_every_kind():
    m = metrics(RECORD, duration=10.0, audit_counts={"lost": 0, "liveness": 1})
    for kind in ("ack", "processing", "posted", "settled"):
        assert {f"{kind}.{s}" for s in ("p50", "p95", "p99", "p999", "max", "mean")} <= set(m)
    assert m["ack.max"] == pytest.approx(1.2)
    assert m["processing.mean"] == pytest.approx(0.3)
    assert m["posted.p50"] == pytest.approx(0.95)
    assert m["settled.p99"] == pytest.approx(5.0)
    assert m["offered"] == pytest.approx(0.3)  # three keys in ten seconds
    assert m["liveness.stuck"] == 1
    assert set(m) == set(METRICS)


def test_summary_reports_unmeasured_kinds_as_null_and_fails_their_slos():
    no_settlement = dict(RECORD)
    no_settlement["payments"] = RECORD["payments"].assign(settled_at=NAN)
    summary = summarise(
        scenario="s",
        seed=1,
        mode="load",
        duration=10.0,
        slos=["settled.p99 < 30s", "processing.p99 < 1s", "ack.p99 < 2s"],
        tables=no_settlement,
        audit_json={"ok": True, "counts": {"lost": 0}},
    )
    assert summary["mode"] == "load"
    assert summary["metrics"]["settled.p99"] is None
    assert [s["passed"] for s in summary["slos"]] == [False, True, True]
    assert summary["passed"] is False


@pytest.mark.parametrize("name", ["ack", "processing", "posted", "settled"])
def test_slo_expressions_accept_every_latency_kind(name: str):
    slo = parse_slo(f"{name}.p99 < 250ms")
    assert slo.evaluate({f"{name}.p99": 0.2}).passed
    assert not slo.evaluate({f"{name}.p99": 0.3}).passed
    assert not slo.evaluate({f"{name}.p99": math.nan}).passed


def test_an_unknown_latency_names_the_kinds_there_are():
    with pytest.raises(SloError, match=r"unknown metric 'e2e.p99' \(known: \{ack,processing"):
        parse_slo("e2e.p99 < 1s")
