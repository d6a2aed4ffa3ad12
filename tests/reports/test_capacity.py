"""The capacity analysis on points whose answers are known: knees, bottlenecks, limits, USL."""

from __future__ import annotations

import pandas as pd
import pytest

from reports.capacity import analyse, node_roles
from reports.usl import usl


def point(i: int, rate: float, workers: int, achieved: float, slos: bool = True,
          gateway: float = 0.5, ledger: float = 0.3) -> dict[str, object]:  # fmt: skip
    return {"point": i, "workload.rate": rate, "topology.gateway.workers": workers,
            "offered": rate, "throughput": achieved, "slos_passed": slos, "audit_ok": True,
            "error": "", "util:gateway": gateway, "util:ledger": ledger}  # fmt: skip


def test_knee_bottleneck_and_recommendation_per_curve():
    capacity = {1: 300.0, 2: 520.0, 4: 800.0}
    rows = []
    for w, cap in capacity.items():
        for rate in (100.0, 250.0, 400.0, 600.0, 900.0):
            achieved = min(rate, cap)
            busy = min(1.0, rate / cap)
            rows.append(point(len(rows), rate, w, achieved, slos=rate <= 0.8 * cap,
                              gateway=busy, ledger=busy * 0.4))  # fmt: skip
    found = analyse(pd.DataFrame(rows), ["workload.rate", "topology.gateway.workers"],
                    "topology.gateway.workers", 0.2)  # fmt: skip
    by_size = {c.size: c for c in found.curves}
    assert [c.label for c in found.curves] == [
        "topology.gateway.workers=1",
        "topology.gateway.workers=2",
        "topology.gateway.workers=4",
    ]
    assert (by_size[1].knee, by_size[2].knee, by_size[4].knee) == (250.0, 400.0, 600.0)
    assert (by_size[1].capacity, by_size[4].capacity) == (300.0, 800.0)
    assert by_size[1].bottleneck == "gateway" and by_size[1].bottleneck_utilization == 1.0
    assert by_size[1].max_load_at_slos == 100.0
    assert by_size[4].recommended == pytest.approx(0.8 * 600.0)
    assert all(c.saturated for c in found.curves)
    assert found.usl is not None and found.usl.points == 3
    assert "lower bounds" not in found.usl_note


def test_an_unsaturated_size_is_named_as_a_lower_bound_and_errors_are_left_out():
    rows = []
    for n in (1, 2, 3, 4, 6):
        cap = float(usl(pd.Series([n]).to_numpy(float), 200.0, 0.1, 0.01)[0])
        for rate in (0.5 * cap, 1.5 * cap):
            rows.append(point(len(rows), rate, n, min(rate, cap)))
    rows.append(point(len(rows), 400.0, 8, 400.0))  # size 8 never overloaded: a lower bound
    rows.append({**point(len(rows), 900.0, 8, 0.0), "error": "RuntimeError: boom"})
    found = analyse(pd.DataFrame(rows), ["workload.rate", "topology.gateway.workers"],
                    "topology.gateway.workers", 0.2)  # fmt: skip
    assert found.curves[-1].label == "topology.gateway.workers=8"
    assert found.curves[-1].points == [10]  # the crashed point is not analysed
    assert "topology.gateway.workers=8 no point was overloaded" in found.usl_note
    assert found.usl is not None and found.usl.peak_n is not None


def test_node_roles_average_over_the_traffic_window_and_tolerate_missing_columns():
    nodes = pd.DataFrame({
        "at": [1.0, 1.0, 2.0, 2.0, 9.0],
        "node": ["gateway-1", "gateway-2", "gateway-1", "gateway-2", "gateway-1"],
        "utilization": [0.2, 0.4, 0.6, 0.8, 0.0],
        "queue_length": [1, 3, 5, 7, 100],
    })  # fmt: skip
    assert node_roles(nodes, duration=5.0) == {"util:gateway": 0.5, "queue:gateway": 4.0}
    assert node_roles(nodes.drop(columns=["queue_length"]), 5.0) == {"util:gateway": 0.5}
    assert node_roles(nodes.iloc[:0], 5.0) == {}
