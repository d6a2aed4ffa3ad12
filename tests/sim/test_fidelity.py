"""The sim charges the work the code does, and its node columns say what they mean.

A consumer-bound topology (one payments consumer, one partition, batch 1, default service
times) has the capacity its handled work allows: two events per payment, each a fetch's round
trip, the handling and a commit; nothing for events it never reads. Settlement's cut-offs stay
away from the payments consumers (their events are on another topic).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from sim_harness import quickstart_with

from scenarios.schema import Scenario
from sim import export
from sim.run import SimRun, simulate
from sim.service_times import DEFAULTS

CONSUMER_BOUND: dict[str, Any] = {
    "duration": "40s",
    "drain": "30s",
    "faults": {"timed": []},
    "slos": [],
    "topology": {
        "zones": ["a"],
        "gateway": {"replicas": 2, "workers": 8},
        "payments": {"workers": 1, "batch": 1, "session_timeout": "1s"},
        "event_log": {"partitions": 1},
    },
}


def consumer_bound(rate: str) -> Scenario:
    client = {"timeout": "5s", "retries": 3, "duplicate_probability": 0.0}
    return quickstart_with(**CONSUMER_BOUND, workload={"rate": rate, "client": client})


def predicted_capacity() -> float:
    """Payments per second one consumer sustains at batch 1, from the service-time means: per
    event a fetch round trip, the handling of one event and a commit that waits for the replica
    in its zone; two events per payment (received, reserved)."""
    t = DEFAULTS
    rtt = 2 * t.same_zone.mean  # type: ignore[union-attr]
    work = t.payments_batch.base.mean + t.payments_batch.per_item  # type: ignore[union-attr]
    commit = t.ledger_commit.base.mean + t.ledger_commit.per_item + rtt  # type: ignore[union-attr]
    return 1.0 / (2 * (work + rtt + commit))


def payments_rate(run: SimRun, start: float, end: float) -> float:
    """Payments' worth of consumer work per second: each handled event writes one journal entry
    (a reservation, or its posting), and a payment is two of them."""
    at = export.journal(run)["at"]
    return float(((at >= start) & (at < end)).sum()) / 2 / (end - start)


def consumer(run: SimRun) -> pd.DataFrame:
    nodes = export.nodes(run)
    return nodes[nodes["node"] == "payments-1"]


def test_under_overload_a_consumer_posts_at_the_capacity_its_work_allows() -> None:
    run = simulate(consumer_bound("300/s"), 1)
    assert payments_rate(run, 10.0, 40.0) == pytest.approx(predicted_capacity(), rel=0.1)
    assert consumer(run)["lag"].iloc[-1] > 1000  # overloaded: the backlog only grows
    # It never fetched an event it does not handle: settlement's are on another topic.
    assert run.system.payments.stats("skipped") == 0


def test_at_130_per_second_the_consumer_keeps_up_with_the_headroom_it_has() -> None:
    run = simulate(consumer_bound("130/s"), 1)
    pay = export.payments(run)
    processing = (pay["posted_at"] - pay["received_at"]).dropna()
    assert len(processing) > 5000
    assert processing.quantile(0.99) < 1.0
    node = consumer(run)
    steady = node[(node["at"] > 5) & (node["at"] < 40)]
    assert steady["headroom"].median() == pytest.approx(predicted_capacity() / 130, rel=0.15)
    assert steady["lag"].median() < 20
    # Busy includes the wait on each commit; the consumer's own CPU is a part of it.
    assert (steady["cpu"] < steady["utilization"]).all()


def test_cutoffs_do_not_flood_the_payments_consumers() -> None:
    scenario = quickstart_with(
        duration="30s",
        drain="20s",
        faults={"timed": []},
        topology={"settlement": {"cutoff": "5s"}, "payments": {"workers": 2, "batch": 64}},
        workload={"rate": "400/s"},
    )
    run = simulate(scenario, 2)
    pay = export.payments(run)
    assert pay["settled_at"].notna().sum() > 8000  # the cut-offs settled most of them
    pay = pay[pay["received_at"] > 5.0]  # after the members' start-up
    processing = pay["posted_at"] - pay["received_at"]
    after_cutoff = (pay["received_at"] % 5.0) < 1.0
    # Payments received in the second after a cut-off are posted as fast as the others.
    assert processing[after_cutoff].quantile(0.99) < 2 * processing[~after_cutoff].quantile(0.99)
    assert run.system.payments.stats("skipped") == 0


def test_a_gateway_is_busy_longer_than_it_computes() -> None:
    run = simulate(consumer_bound("130/s"), 3)
    nodes = export.nodes(run)
    gateway = nodes[(nodes["node"] == "gateway-1") & (nodes["at"] > 5) & (nodes["at"] < 40)]
    ledger = nodes[(nodes["node"] == "ledger") & (nodes["at"] > 5) & (nodes["at"] < 40)]
    # A gateway thread holds the request while the ledger commits: CPU is a third or less.
    assert gateway["cpu"].sum() < 0.5 * gateway["utilization"].sum()
    # The ledger's busy time is all its own work (a sample books a commit's CPU when it starts).
    assert ledger["cpu"].sum() == pytest.approx(ledger["utilization"].sum(), rel=0.02)
