"""The sim's gateway rate limit: per-tenant token buckets in simulated time, 429s as the load
runtime records them, shared or per replica, and the `redis` fault (fail closed, then empty)."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sim_harness import quickstart_with

from scenarios.schema import Scenario
from sim import export
from sim.run import simulate

NO_RETRIES = {"timeout": "1s", "retries": 0, "duplicate_probability": 0.0}


def _scenario(limit: dict[str, Any], *timed: dict[str, Any], **client: Any) -> Scenario:
    """One tenant offering 200/s for 4 s to two replicas, limited as `limit` says."""
    return quickstart_with(
        duration="4s",
        drain="20s",
        faults={"timed": list(timed)},
        workload={"tenants": 1, "rate": "200/s", "client": {**NO_RETRIES, **client}},
        topology={"gateway": {"replicas": 2, "workers": 4, "rate_limit": limit}},
    )


def _requests(scenario: Scenario, seed: int) -> pd.DataFrame:
    run = simulate(scenario, seed)
    return export.tables(run)["requests"]


def test_twice_the_shared_limit_sees_about_half_rate_limited_the_same_for_a_seed():
    scenario = _scenario({"rate": "100/s", "burst": 10, "shared": True})
    req = _requests(scenario, 5)
    limited = req[req["status"] == 429]
    # As the load runtime records a 429 (loadtest/attempts.py outcome()).
    assert set(limited["outcome"]) == {"rate_limited"}
    assert set(req["outcome"]) <= {"accepted", "rate_limited"}
    assert (limited["payment_id"] == "").all()
    share = len(limited) / len(req)
    assert 0.35 < share < 0.65, share
    # The bucket lets through the rate over the run plus the burst, no more.
    accepted = int((req["status"] == 202).sum())
    assert 300 < accepted <= 100 * 4 + 10 + 5, accepted
    again = _requests(scenario, 5)
    assert (again["status"] == 429).sum() == len(limited)
    assert again["key"][again["status"] == 429].tolist() == limited["key"].tolist()


def test_a_limit_per_replica_gives_each_replica_its_own_bucket():
    # Two replicas at 100/s each take the 200/s between them: few are refused.
    req = _requests(_scenario({"rate": "100/s", "burst": 10, "shared": False}), 5)
    assert (req["status"] == 429).sum() < 0.15 * len(req)


def test_rate_limited_requests_are_retried_with_the_same_key_and_made_once():
    req = _requests(_scenario({"rate": "150/s", "burst": 20, "shared": True}, retries=5), 2)
    retried = req[req["attempt"] > 1]
    assert len(retried) > 50
    first_refused = set(req["key"][(req["attempt"] == 1) & (req["status"] == 429)])
    assert first_refused <= set(retried["key"])
    accepted = req[req["status"] == 202]
    assert accepted["key"].is_unique


def test_while_redis_is_down_the_gateway_fails_closed_and_comes_back_with_full_buckets():
    redis = {"kind": "redis", "at": "2s", "duration": "500ms"}
    scenario = _scenario({"rate": "100/s", "burst": 10, "shared": True}, redis)
    run = simulate(scenario, 5)
    req = export.tables(run)["requests"]
    faults = export.tables(run)["faults"]
    (row,) = faults[faults["kind"] == "redis"].itertuples()
    assert row.target == "redis" and "fails closed" in row.detail
    down = req[(req["sent_at"] > 2.01) & (req["sent_at"] < 2.49)]
    assert len(down) > 50 and set(down["status"]) == {503}
    assert set(down["outcome"]) == {"error"}
    unavailable = int(row.detail.split(" requests answered 503")[0].split()[-1])
    assert unavailable == int((req["status"] == 503).sum())
    # Redis came back empty: the first requests after it are let through on a full bucket.
    after = req[req["sent_at"] >= 2.5].sort_values("sent_at").head(5)
    assert set(after["status"]) == {202}
