"""Each fault family leaves its mark on the run, is listed in the faults table, and the correct
implementation stays safe under it."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sim_harness import quickstart_with

from reports.audit import AuditResult, audit
from reports.record import RunRecord, load_run, write_run_record
from scenarios.loader import resolved_yaml
from scenarios.schema import Scenario
from sim import export
from sim.run import SimRun, simulate
from sim.swarm import swarm_faults

SHORT: dict[str, Any] = {"duration": "4s", "drain": "20s"}


def _scenario(*timed: dict[str, Any], **changes: Any) -> Scenario:
    return quickstart_with(**{**SHORT, "faults": {"timed": list(timed)}, **changes})


def _run(scenario: Scenario, seed: int, out: Path) -> tuple[SimRun, RunRecord, AuditResult]:
    result = simulate(scenario, seed)
    write_run_record(
        out,
        tables=export.tables(result),
        meta=export.meta(result, "test"),
        scenario_yaml=resolved_yaml(scenario),
    )
    record = load_run(out)
    return result, record, audit(record)


def _row(record: RunRecord, kind: str) -> pd.Series:
    rows = record.faults[record.faults["kind"] == kind]
    assert len(rows) >= 1, f"no {kind} row in {record.faults}"
    return rows.iloc[0]


def _count(detail: str, what: str) -> int:
    """The number before `what` in a fault row's detail, e.g. '12 messages dropped'."""
    head = detail.split(what)[0].split()
    return int(head[-1])


def _safe(result: AuditResult) -> None:
    assert result.ok, [v.to_json() for v in result.violations[:3]]


def test_loss_makes_clients_time_out_and_retry_with_the_same_key(tmp_path: Path):
    fault = {"kind": "loss", "at": "1s", "duration": "2s", "probability": 0.3}
    _, record, result = _run(_scenario(fault), 1, tmp_path)
    assert _count(_row(record, "loss")["detail"], "messages dropped") > 50
    req = record.requests
    in_window = req[(req["sent_at"] > 1) & (req["sent_at"] < 3)]
    assert (in_window["outcome"] == "timeout").sum() > 20
    retried = req[req["attempt"] > 1]
    assert len(retried) > 20
    # A retried key still made exactly one payment.
    assert record.payments["idempotency_key"].is_unique
    _safe(result)


def test_duplicated_requests_reach_the_gateway_twice_and_make_one_payment(tmp_path: Path):
    fault = {"kind": "duplicate", "at": "1s", "duration": "2s", "probability": 0.5}
    run, record, result = _run(_scenario(fault), 2, tmp_path)
    arrivals = sum(n.arrivals for n in run.system.gateways)
    assert arrivals > len(run.system.clients.attempts) + 100
    assert _count(_row(record, "duplicate")["detail"], "messages duplicated") > 100
    _safe(result)


def test_reordering_delays_some_messages_past_later_ones(tmp_path: Path):
    base = _scenario()
    held = _scenario({"kind": "reorder", "at": "0s", "duration": "4s", "probability": 0.5,
                      "extra": "200ms"})  # fmt: skip
    _, plain, _ = _run(base, 3, tmp_path / "plain")
    _, record, result = _run(held, 3, tmp_path / "held")
    assert _count(_row(record, "reorder")["detail"], "messages held back") > 200

    def ack_p90(r: RunRecord) -> float:
        ok = r.requests[r.requests["status"] == 202]
        return float((ok["done_at"] - ok["sent_at"]).quantile(0.9))

    assert ack_p90(record) > ack_p90(plain) + 0.05
    _safe(result)


def _window_arrivals(run: SimRun, node: str, start: float, end: float) -> int:
    samples = [s for s in run.samples if s.node == node and start <= s.at <= end]
    return samples[-1].arrivals - samples[0].arrivals


def test_a_partition_lets_no_request_cross_during_the_window(tmp_path: Path):
    fault = {"kind": "partition", "between": ["clients", "b"], "at": "1s", "duration": "2s"}
    run, record, result = _run(_scenario(fault), 4, tmp_path)
    # gateway-2 lives in zone b: nothing reaches it while cut off (after messages already on
    # the wire land), while gateway-1 keeps taking requests.
    assert _window_arrivals(run, "gateway-2", 1.1, 3.0) == 0
    assert _window_arrivals(run, "gateway-1", 1.1, 3.0) > 100
    assert _window_arrivals(run, "gateway-2", 3.1, 4.0) > 20
    assert _count(_row(record, "partition")["detail"], "messages and store calls") > 0
    _safe(result)


def test_a_one_way_cut_loses_store_replies_and_retries_are_replayed(tmp_path: Path):
    fault = {"kind": "partition", "between": ["ledger", "gateway-2"], "one_way": True,
             "at": "1s", "duration": "2s"}  # fmt: skip
    run, record, result = _run(_scenario(fault), 5, tmp_path)
    # Each lost reply holds a gateway worker for the store timeout, so few get through.
    assert run.system.ledger.timeouts >= 8
    # The commit happened but the gateway never heard: the client's retry is a replay.
    assert (record.requests["outcome"] == "replayed").sum() >= 3
    assert _row(record, "partition")["target"] == "ledger->gateway-2"
    _safe(result)


def test_swizzle_clogging_reshuffles_cut_links_and_stays_safe(tmp_path: Path):
    fault = {"kind": "clog", "at": "1s", "duration": "2s", "period": "200ms", "fraction": 0.4}
    _, record, result = _run(_scenario(fault), 6, tmp_path)
    detail = _row(record, "clog")["detail"]
    assert _count(detail, "rounds") >= 9
    assert _count(detail, "messages and store calls") > 0
    _safe(result)


def test_zone_outage_takes_every_node_of_the_zone_down_together(tmp_path: Path):
    fault = {"kind": "zone-outage", "zone": "b", "at": "1s", "duration": "1s"}
    run, record, result = _run(_scenario(fault), 7, tmp_path)
    down = {s.node for s in run.samples if 1.1 < s.at < 1.9 and not s.up}
    assert down == {"gateway-2", "payments-2", "settlement", "projector"}
    assert set(_row(record, "zone-outage")["detail"].split(", ")) == down
    # payments-2's lease (500 ms) runs out and its partitions move to payments-1: what came in
    # before the outage is posted before the zone is back, whichever partition it is on.
    pay = record.payments
    early = pay[pay["received_at"].between(1.0, 1.4)]
    assert len(early) > 50
    assert (early["posted_at"] < 2.0).all()
    assert [len(d.incarnations) for d in run.system.payments.drivers] == [1, 2]
    _safe(result)


def test_a_paused_gateway_queues_requests_then_drains_them(tmp_path: Path):
    fault = {"kind": "pause", "node": "gateway-1", "at": "1s", "duration": "1s"}
    run, record, result = _run(_scenario(fault), 8, tmp_path)
    queue = {round(s.at, 1): s.queue for s in run.samples if s.node == "gateway-1"}
    assert queue[1.9] > 50
    assert queue[3.0] == 0
    assert _count(_row(record, "pause")["detail"], "while paused") > 50
    _safe(result)


def test_a_failed_fsync_crash_recovers_the_ledger_and_blames_no_event(tmp_path: Path):
    fault = {"kind": "disk", "at": "1s", "duration": "2s", "slow": "5ms", "fail_probability": 0.3}
    run, record, result = _run(_scenario(fault), 9, tmp_path)
    assert _count(_row(record, "disk")["detail"], "fsyncs failed") >= 2
    assert any(s.node == "ledger" and not s.up for s in run.samples if 1 < s.at < 3.5)
    assert (record.requests["status"] == 503).sum() > 20
    # The store was down, as PostgreSQL is after a PANIC: consumers back off and retry; no
    # event is blamed, so no payment fails because of the disk.
    assert run.system.payments.stats("failures") == 0
    assert (record.payments["status"] == "failed").sum() == 0
    _safe(result)
    assert result.counts["liveness"] == 0


def test_a_sync_primary_cut_off_from_its_replica_commits_locally_and_callers_time_out(
    tmp_path: Path,
):
    fault = {"kind": "partition", "between": ["a", "b"], "at": "1s", "duration": "1s"}
    run, record, result = _run(_scenario(fault), 15, tmp_path)
    store = run.system.ledger.store
    assert run.system.ledger.timeouts > 20
    # Commits landed on the primary while no caller heard of them; the replica caught up after.
    assert (record.requests["outcome"] == "replayed").sum() > 0
    assert store.replica_connected and store.replica_seq == store.committed_seq
    _safe(result)


def test_a_forced_rebalance_fences_in_flight_work_which_is_redelivered(tmp_path: Path):
    faults = {
        "timed": [{"kind": "rebalance", "group": "payments", "at": "1s"}],
        "background": {"poisson": [{"kind": "rebalance", "group": "payments", "rate": "3/s"}]},
    }
    scenario = quickstart_with(**SHORT, workload={"rate": "500/s"}, faults=faults)
    run, record, result = _run(scenario, 10, tmp_path)
    rows = record.faults[record.faults["kind"] == "rebalance"]
    assert len(rows) >= 3
    assert {_count(d, "claims revoked") for d in rows["detail"]} == {8}
    assert run.system.payments.stats("fenced") > 0
    assert record.meta["sim"]["redeliveries"]["payments"] > 0
    _safe(result)


def test_a_consumer_paused_past_its_lease_loses_its_partitions_and_is_fenced(tmp_path: Path):
    # With this seed, 1.298 s stops payments-1 after it fetched and worked a batch, before it
    # sends the commit (an instant that finds it waiting on the ledger lets the commit land, as
    # SIGSTOP would; one that finds it idle makes it heartbeat first when it wakes).
    fault = {"kind": "pause", "node": "payments-1", "at": "1.298s", "duration": "2s"}
    run, record, result = _run(_scenario(fault, workload={"rate": "800/s"}), 16, tmp_path)
    pay = record.payments
    during = pay[pay["received_at"].between(1.3, 2.7)]
    # payments-2 takes every partition over once the lease (500 ms) runs out ...
    assert len(during) > 600 and (during["posted_at"] < 3.3).all()
    # ... and payments-1, waking with the batch it had fetched, commits none of it: payments-2
    # has committed past it by then, so the offset check refuses it (stale) before the fence
    # would, once; its next heartbeat tells it what it holds, so nothing else is refused.
    zombie = run.system.payments.drivers[0].incarnations[0]
    assert (zombie.stats.stale, zombie.stats.fenced) == (1, 0)
    assert len(run.system.payments.drivers[0].incarnations) == 1  # paused, never restarted
    _safe(result)


def test_poisoned_events_are_retried_then_compensated_once_each(tmp_path: Path):
    fault = {"kind": "poison", "group": "payments", "at": "1s", "duration": "2s",
             "probability": 0.05}  # fmt: skip
    run, record, result = _run(_scenario(fault), 17, tmp_path)
    poisoned = _count(_row(record, "poison")["detail"], "events poisoned")
    compensated = run.system.payments.stats("compensated")
    assert poisoned > 5 and 0 < compensated <= poisoned
    assert (record.payments["status"] == "failed").sum() == compensated
    assert set(record.payments[record.payments["status"] == "failed"]["reason"]) == {
        "retries_exhausted: PoisonedEvent"
    }
    _safe(result)


def test_a_group_without_a_give_up_action_retries_until_the_poison_is_gone(tmp_path: Path):
    fault = {"kind": "poison", "group": "settlement", "at": "1s", "duration": "1s",
             "probability": 0.5}  # fmt: skip
    run, record, result = _run(_scenario(fault), 18, tmp_path)
    assert run.system.settlement_group.stats("failures") > 0
    assert run.system.settlement_group.stats("compensated") == 0
    assert (record.payments["status"] == "settled").all()  # nothing skipped, all settled later
    _safe(result)


def test_leader_failover_is_refused_with_what_replaced_it():
    with pytest.raises(ValueError, match=r"leader-failover was removed.*use kind failover"):
        _scenario({"kind": "leader-failover", "at": "1s", "duration": "300ms"})


def test_partner_chaos_ends_in_classified_breaks(tmp_path: Path):
    fault = {"kind": "partner", "partner": "bank-a", "at": "0s", "duration": "4s",
             "duplicate_line_probability": 0.05, "missing_line_probability": 0.05,
             "fee_probability": 0.05, "fee_amount": 10, "late_probability": 0.3}  # fmt: skip
    _, record, result = _run(_scenario(fault, topology={"settlement": {"cutoff": "1s"}}), 11,
                             tmp_path)  # fmt: skip
    kinds = set(record.breaks["kind"])
    assert len(kinds) >= 3, kinds
    # Each break is classified as the chaos that made it: a line left out (missing), sent twice
    # (duplicate), charged a fee (amount) or booked late (timing); none names no payment.
    assert kinds <= {"missing", "duplicate", "amount", "timing"}, kinds
    assert _row(record, "partner")["target"] == "bank-a"
    _safe(result)


def test_a_partner_outage_delays_settlement_until_it_is_back(tmp_path: Path):
    fault = {"kind": "partner", "partner": "bank-a", "outage": True, "at": "0s", "duration": "3s"}
    _, record, result = _run(_scenario(fault, topology={"settlement": {"cutoff": "1s"}}), 12,
                             tmp_path)  # fmt: skip
    assert record.settlements["sent_at"].min() >= 3.0
    _safe(result)


def test_clock_skew_moves_the_cutoff_and_so_the_batches(tmp_path: Path):
    cutoff = {"topology": {"settlement": {"cutoff": "2s"}}}
    skew = {"kind": "clock-skew", "offset": "700ms", "at": "0s", "duration": "4s"}
    _, plain, _ = _run(_scenario(**cutoff), 13, tmp_path / "plain")
    _, skewed, result = _run(_scenario(skew, **cutoff), 13, tmp_path / "skewed")

    def first_batch(r: RunRecord) -> int:
        s = r.settlements
        return int((s["cutoff_at"] == s["cutoff_at"].min()).sum())

    # Ahead by 0.7 s, the node's first cut-off comes at 1.3 s of true time: fewer payments.
    assert first_batch(skewed) < first_batch(plain) * 0.8
    assert _row(skewed, "clock-skew")["detail"] == "clock +0.7s"
    _safe(result)


def test_background_faults_arrive_as_a_poisson_process(tmp_path: Path):
    scenario = quickstart_with(
        **SHORT,
        faults={"background": {"poisson": [{"kind": "loss", "rate": "2/s", "duration": "200ms",
                                            "probability": 0.5}]}},
    )  # fmt: skip
    _, record, result = _run(scenario, 14, tmp_path)
    starts = record.faults[record.faults["kind"] == "loss"]["start"]
    assert 2 <= len(starts) <= 20
    assert starts.max() < 4.0
    _safe(result)


def test_swarm_draws_the_fault_mix_from_the_seed():
    sync = quickstart_with(**SHORT, faults={"swarm": True})
    mixes = set()
    for seed in range(8):
        drawn = swarm_faults(sync, random.Random(seed))
        assert drawn == swarm_faults(sync, random.Random(seed))
        mixes.add(tuple(sorted(f.kind for f in drawn)))
    assert len(mixes) >= 6
    assert any("failover" in mix for mix in mixes)
    # Async failover loses acknowledged commits by design: the swarm never draws it.
    lossy = quickstart_with(**SHORT, topology={"ledger": {"replication": "async"}})
    for seed in range(20):
        assert "failover" not in {f.kind for f in swarm_faults(lossy, random.Random(seed))}
