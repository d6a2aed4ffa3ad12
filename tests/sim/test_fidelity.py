"""The sim charges the work the code does, and its node columns say what they mean.

A consumer-bound topology (one payments consumer, one partition, batch 1, default service
times) has the capacity its handled work allows: two events per payment, each a fetch's round
trip, the handling and a commit; nothing for events it never reads. Settlement's cut-offs stay
away from the payments consumers (their events are on another topic). A consumer's headroom
counts the events it fetched, handled or skipped, against those that arrived in its topics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sim_harness import quickstart_with

from reports.metrics import key_times
from scenarios.loader import load_scenario
from scenarios.schema import Scenario
from sim import export
from sim.run import SimRun, simulate
from sim.service_times import DEFAULTS

CATALOG = Path(__file__).resolve().parents[2] / "scenarios" / "catalog"

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


def test_steady_state_posts_as_fast_after_a_cutoff_as_before_it() -> None:
    # steady-state itself (three zones, 16 partitions, four consumers, the 15 s cut-off) at 400/s
    # for 31 s and a short drain: the cut-off at 15 s closes and sends the day's batches; at the
    # day's end, 30 s, the next one does, and the partners' statements settle the first day's
    # payments, whose PaymentSettled events are appended while payments still arrive.
    scenario = load_scenario(CATALOG / "steady-state.yaml").scenario
    workload = scenario.workload.model_copy(update={"rate": 400.0})
    update = {"duration": 31.0, "drain": 2.0, "workload": workload}
    run = simulate(scenario.model_copy(update=update), scenario.seed)
    tables = {"requests": export.requests(run), "payments": export.payments(run)}
    pay = tables["payments"]
    assert (pay["status"] == "settled").sum() > 5000  # settled in the run: the 30 s statements
    times = key_times(tables)
    posted = pd.Series(pay["posted_at"].to_numpy(dtype=float) - times.first_sent[times.payment_key])
    received = pd.Series(pay["received_at"].to_numpy(dtype=float))
    steady = (received > 5.0) & posted.notna()  # after the members' start-up
    after_cutoff = steady & (received % 15.0 < 1.0)
    rest = steady & ~after_cutoff
    assert after_cutoff.sum() > 600 and rest.sum() > 8000
    # Payments received in the second after a cut-off are posted (first send to posted_at) as
    # fast as the others: settlement's events are on topics the payments consumers never fetch.
    p99_after = float(np.quantile(posted[after_cutoff], 0.99))
    p99_rest = float(np.quantile(posted[rest], 0.99))
    assert p99_after < 1.5 * p99_rest
    assert run.system.payments.stats("skipped") == 0


def test_with_checks_in_parallel_headroom_counts_the_events_a_consumer_skips() -> None:
    # fraud-mix, shortened: the check groups fetch the payments topic and skip all but
    # PaymentReceived, about half their events; the payments group also reads their decisions.
    scenario = load_scenario(CATALOG / "fraud-mix.yaml").scenario
    run = simulate(scenario.model_copy(update={"duration": 8.0, "drain": 10.0}), 1)
    checks = [g for g in run.system.groups if g.name in ("sanctions", "aml", "fraud")]
    assert len(checks) == 3
    assert all(g.stats("skipped") > 0.5 * g.stats("events") for g in checks)
    nodes = export.nodes(run)
    steady = nodes[(nodes["at"] > 2.0) & (nodes["at"] <= 8.0)]
    names = [n.name for n in run.system.check_nodes] + ["payments-1", "payments-2"]
    for name in names:
        node = steady[steady["node"] == name]
        assert len(node) > 50, name
        # Each keeps up, so in each sample it passed over the events that arrived in its
        # partitions: the rate it sustains over the rate it receives is 1 / its busy fraction.
        assert (node["headroom"] * node["utilization"]).median() == pytest.approx(1.0, abs=0.1)


def test_a_gateway_is_busy_longer_than_it_computes() -> None:
    run = simulate(consumer_bound("130/s"), 3)
    nodes = export.nodes(run)
    gateway = nodes[(nodes["node"] == "gateway-1") & (nodes["at"] > 5) & (nodes["at"] < 40)]
    ledger = nodes[(nodes["node"] == "ledger") & (nodes["at"] > 5) & (nodes["at"] < 40)]
    # A gateway thread holds the request while the ledger commits: CPU is a third or less.
    assert gateway["cpu"].sum() < 0.5 * gateway["utilization"].sum()
    # The ledger's busy time is all its own work (a sample books a commit's CPU when it starts).
    assert ledger["cpu"].sum() == pytest.approx(ledger["utilization"].sum(), rel=0.02)
