"""run_traffic against a real `testbed serve` (SQLite): set-up, the schedule, retries, and what
the server stored, for a few seconds of traffic."""

from __future__ import annotations

import random
import time
from pathlib import Path

import httpx
import pytest
from traffic_harness import check_rows, scenario

from loadtest.pacing import arrivals, arrivals_seed
from loadtest.traffic import run_traffic
from reference_impl.runtime.launcher import ServeProcess
from reports.record import to_arrow
from scenarios.workload import account_ids

KEYS = {"tenant-1": "key-one", "tenant-2": "key-two"}
ACCOUNTS = 12
BALANCE = 50_000
SEED = 7


@pytest.mark.timeout(240)
def test_a_short_run_against_testbed_serve(tmp_path: Path) -> None:
    sc = scenario(
        3.0, tenants=2, accounts=ACCOUNTS, initial_balance=BALANCE, rate="40/s",
        amount={"distribution": "uniform", "min": 1, "median": 100, "max": 5_000},
        client={"timeout": "2s", "retries": 3, "backoff": "50ms", "duplicate_probability": 0.15},
    )  # fmt: skip
    starts: list[float] = []
    with ServeProcess(f"sqlite:///{tmp_path / 'serve.db'}", KEYS) as server:
        t0 = time.time()
        result = run_traffic(
            sc, server.url, KEYS, t0=t0, seed=SEED, out_dir=tmp_path, on_start=starts.append
        )
        stored = {}
        funding = {}
        for tenant, key in KEYS.items():
            with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"},
                              timeout=30) as http:  # fmt: skip
                funding[tenant] = http.get("/v1/accounts/funding").json()
                ids = result.requests.query("tenant == @tenant and status == 202")["payment_id"]
                stored.update({pid: http.get(f"/v1/payments/{pid}").json() for pid in set(ids)})
        assert server.stop() == 0, server.output

    # The accounts were opened and funded, through the API, and only once.
    setup = result.setup
    assert setup is not None
    assert len(setup.accounts) == 2 * (ACCOUNTS + 1) and setup.accounts["created"].all()
    assert sorted(setup.funding["account"]) == sorted(account_ids(ACCOUNTS) * 2)
    assert set(setup.funding["status"]) <= {"posted", "settled"}
    assert (setup.funding["amount"] == BALANCE).all()
    to_arrow("requests", setup.rows)
    assert set(setup.rows["key"]) == {f"fund:{a}" for a in account_ids(ACCOUNTS)}
    for tenant in KEYS:
        assert funding[tenant]["overdraft"] is True
        assert funding[tenant]["balance"]["posted"] == -ACCOUNTS * BALANCE, funding[tenant]

    rows = check_rows(result)
    assert starts == [result.started_at]
    assert result.started_at > setup.rows["done_at"].max()  # the traffic follows the set-up
    # The first attempts are the schedule, key by key, at their intended times.
    schedule = list(arrivals(sc.workload, 3.0, random.Random(arrivals_seed(SEED, 0, 1))))
    first = rows[rows["attempt"] == 1].set_index("key")
    assert len(first) == len(schedule) > 80
    prefix = first.index[0].rsplit("k", 1)[0]
    for n, arrival in enumerate(schedule, start=1):
        row = first.loc[f"{prefix}k{n}"]
        assert row["tenant"] == arrival.tenant
        assert row["intended_at"] - result.started_at == pytest.approx(arrival.at, abs=1e-9)
    # What the server stored is what the schedule asked for, once per key.
    accepted = rows[rows["status"] == 202].drop_duplicates("key").set_index("key")
    for key, row in accepted.iterrows():
        n = int(str(key).rsplit("k", 1)[1])
        payment, arrival = stored[row["payment_id"]], schedule[n - 1]
        assert (payment["debtor_account"], payment["creditor_account"], payment["amount"]) == (
            arrival.debtor, arrival.creditor, arrival.amount,
        )  # fmt: skip
    assert len(stored) == rows.loc[rows["status"] == 202, "key"].nunique()
    # Double submits go out twice at the same moment; every other later attempt is a retry
    # that starts after the answer to the attempt before it.
    for key, group in rows.groupby("key"):
        n = int(str(key).rsplit("k", 1)[1])
        group = group.sort_values("attempt")
        tries = list(group.itertuples())
        start = 1
        if schedule[n - 1].duplicate:
            assert len(tries) >= 2 and tries[1].intended_at == tries[0].intended_at
            start = 2
        for before, retry in zip(tries[start - 1 :], tries[start:], strict=False):
            assert retry.intended_at >= before.done_at, key
    assert any(a.duplicate for a in schedule)
