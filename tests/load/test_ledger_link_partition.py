"""A load run on PostgreSQL cuts one payments worker from the database, and only that one.

Each service process has its own proxied link to the database, so a `partition` between
`payments-1` and `ledger` holds that process's traffic to and from PostgreSQL and leaves the
others': past the group's session timeout its lease expires, the other payments worker takes
its partitions. Every accepted payment is still posted exactly once.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from test_load_runtime import check_clean_run, record, run, scenario


@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_a_worker_cut_from_the_ledger_loses_its_partitions_and_the_audit_is_clean(
    tmp_path: Path, postgres_url: str
) -> None:
    # Longer than the session timeout, and than the server's idle-in-transaction timeout (5 s,
    # reference_impl/adapters/postgres.py) by more than a sample: a cut that lands mid-transaction
    # leaves the cut worker's locks (the tenant's journal head, its claims) held on the server
    # until the server ends that session, and every writer of that tenant, the other worker
    # included, waits for them. The window closes with the traffic (11 s).
    cut = {"kind": "partition", "between": ["payments-1", "ledger"], "at": "1s",
           "duration": "9s"}  # fmt: skip
    topology = {"payments": {"session_timeout": "1s"}}
    path = scenario(tmp_path, duration="11s", faults={"timed": [cut]}, topology=topology)
    run_dir = tmp_path / "run"
    done = run("--mode", "load", str(path), "--out", str(run_dir), "--store", postgres_url)
    check_clean_run(done, run_dir)
    faults = record(run_dir)["faults"]
    assert len(faults) == 1
    row = faults.iloc[0]
    assert (row["kind"], row["target"]) == ("partition", "payments-1<->ledger")
    assert row["detail"].startswith("symmetric; ")
    assert int(row["detail"].split()[1]) > 0, row["detail"]  # chunks held until it healed
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["faults_not_applied"] == [] and meta["restarts"] == {}
    # Before the cut the two workers shared the payments partitions; past the session timeout
    # the one left holds them all (the sampler reads the claims over a link of its own). The
    # samples are kept as seconds since t0, the faults on the wall clock.
    start, end = row["start"] - meta["t0"], row["end"] - meta["t0"]
    parts = pd.read_parquet(run_dir / "partitions.parquet")
    payments = parts[(parts["group"] == "payments") & (parts["member"] != "")]
    before = payments[payments["at"] < start]
    during = payments[(payments["at"] > start + 1.0) & (payments["at"] < end)]
    members = before.groupby("at")["member"].nunique()
    assert (members == 2).any(), before
    owners = during.groupby("at")["member"].agg(set)
    took_over = [next(iter(m)) for m in owners if len(m) == 1]
    assert took_over, during
    assert set(took_over) <= set(before["member"])  # the worker that was not cut, not a newcomer
