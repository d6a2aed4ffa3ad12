"""`testbed run --mode load` with a shared rate limit: the run's own redis-server behind the
gateway's token buckets, 429s in the record, and a `redis` fault that kills and restarts it."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import psutil
import pytest
from test_load_runtime import check_clean_run, record, run, run_processes, scenario


def _redis_servers(run_dir: Path) -> list[psutil.Process]:
    """redis-server processes of this run (they carry its run directory in their environment,
    kept readable by `--set-proc-title no`)."""
    found = []
    for p in run_processes(run_dir):
        try:
            if "redis-server" in p.name():
                found.append(p)
        except psutil.Error:
            continue
    return found


@pytest.mark.timeout(300)
def test_a_shared_limit_answers_429s_and_survives_a_redis_restart(tmp_path: Path) -> None:
    limit = {
        "replicas": 2,
        "workers": 4,
        "rate_limit": {"rate": "70/s", "burst": 10, "shared": True},
    }
    faults = {"timed": [{"kind": "redis", "at": "2s", "duration": "1s"}]}
    path = scenario(tmp_path, topology={"gateway": limit}, faults=faults)
    run_dir = tmp_path / "run"
    done = run("--mode", "load", str(path), "--out", str(run_dir))
    check_clean_run(done, run_dir, ours=False)
    tables = record(run_dir)
    req = tables["requests"]
    limited = req[req["status"] == 429]
    assert len(limited) > 20, req.groupby(["status", "outcome"]).size()
    assert set(limited["outcome"]) == {"rate_limited"}
    # While Redis was down the limiter failed closed: 503s, retried with the same key.
    assert (req["status"] == 503).sum() > 0, req.groupby(["status", "outcome"]).size()
    faults_table = tables["faults"]
    assert list(faults_table[["kind", "target", "detail"]].itertuples(index=False)) == [
        ("redis", "redis", "SIGKILL; started again")
    ]
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["restarts"].get("redis", 0) >= 1, meta["restarts"]
    assert "redis" in set(pd.read_parquet(run_dir / "nodes.parquet")["node"])
    assert _redis_servers(run_dir) == []
