"""A crash of the store (`crash` of `ledger`) in a real load run, on both stores.

PostgreSQL: every connection of the run ended (pg_terminate_backend) for the window. SQLite, which
has no server: every process that writes the store SIGKILLed together, mid-transaction, and
started again after the window. Either way the audit is clean: every payment acknowledged is
posted exactly once.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_load_runtime import check_clean_run, record, run, scenario

WRITERS = ["gateway", "payments-1", "payments-2", "settlement", "projector"]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_store_crash_mid_run_loses_and_duplicates_nothing(
    tmp_path: Path, request: pytest.FixtureRequest, store: str
) -> None:
    flags = ["--store", request.getfixturevalue("postgres_url")] if store == "postgres" else []
    faults = {"timed": [{"kind": "crash", "node": "ledger", "at": "2s", "duration": "1s"}]}
    path = scenario(tmp_path, faults=faults)
    run_dir = tmp_path / "run"
    done = run("--mode", "load", str(path), "--out", str(run_dir), *flags)
    check_clean_run(done, run_dir)  # exit 0, audit clean, requests complete, nothing left
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["faults_not_applied"] == []
    rows = list(record(run_dir)["faults"].itertuples(index=False))
    assert [(r.kind, r.target) for r in rows] == [("crash", "ledger")]
    detail = rows[0].detail
    if store == "sqlite":
        assert detail.startswith(f"SIGKILL of every store writer ({', '.join(WRITERS)}: ")
        assert detail.endswith("; started again"), detail
        # The gateway's manager and its two workers, the four consumers.
        assert int(detail.split(": ")[1].split()[0]) == 7, detail
        assert meta["restarts"] == dict.fromkeys(WRITERS, 1)
    else:
        assert detail.startswith("the run's database connections ended; "), detail
        assert int(detail.split("; ")[1].split()[0]) > 0, detail
        # Each consumer polls at least every 0.25 s, and a pooled connection is not checked
        # before use: the first call after its backend was ended fails, and the consumer says so.
        for name in WRITERS[1:]:
            log = (run_dir / "logs" / f"{name}.log").read_text()
            assert ": store unavailable, backing off" in log, (name, log[-2000:])
