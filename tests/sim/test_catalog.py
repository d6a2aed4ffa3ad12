"""The fault catalog: every scenario runs; all are safe except async-replication failover,
which must show the acknowledged payments it loses while its sync twin loses none; and a
faulty run replays byte for byte from its seed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from rich.console import Console

from scenarios.loader import CATALOG_DIRS, load_scenario
from testbed.run import execute

SAFE = [
    "zone-outage",
    "network-partition",
    "consumer-churn",
    "sync-replication-failover",
    "bank-partner-chaos",
    "retry-storm",
    "swarm",
]
LOSSY = "async-replication-failover"


def _path(name: str) -> Path:
    found = [d / f"{name}.yaml" for d in CATALOG_DIRS if (d / f"{name}.yaml").exists()]
    assert found, name
    return found[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict[str, Any]]]:
    """Each catalog scenario run once at its own seed (shared by the tests below)."""
    out: dict[str, tuple[Path, dict[str, Any]]] = {}
    for name in [*SAFE, LOSSY]:
        loaded = load_scenario(_path(name))
        run_dir = tmp_path_factory.mktemp(name)
        summary = execute(loaded, loaded.scenario.seed, run_dir, Console(quiet=True))
        out[name] = (run_dir, summary)
    return out


def _faults(run_dir: Path) -> set[str]:
    return set(pd.read_parquet(run_dir / "faults.parquet")["kind"])


@pytest.mark.parametrize("name", SAFE)
def test_a_catalog_fault_scenario_is_safe_and_records_its_faults(
    runs: dict[str, tuple[Path, dict[str, Any]]], name: str
):
    run_dir, summary = runs[name]
    audit = json.loads((run_dir / "audit.json").read_text())
    assert audit["ok"] is True, audit["violations"][:3]
    assert summary["payments"]["settled"] > 500  # type: ignore[index]
    assert _faults(run_dir), "a fault scenario with an empty faults table"
    assert load_scenario(_path(name)).scenario.description.strip()


def test_async_failover_loses_acknowledged_payments_and_sync_loses_none(
    runs: dict[str, tuple[Path, dict[str, Any]]],
):
    lossy_dir, _ = runs[LOSSY]
    clean_dir, _ = runs["sync-replication-failover"]
    lossy = json.loads((lossy_dir / "audit.json").read_text())
    clean = json.loads((clean_dir / "audit.json").read_text())
    assert lossy["counts"]["lost"] > 0
    assert {v["kind"] for v in lossy["violations"]} == {"lost"}
    assert clean["counts"]["lost"] == 0 and clean["ok"] is True
    # The two differ only in the replication mode.
    a = load_scenario(_path(LOSSY)).scenario
    b = load_scenario(_path("sync-replication-failover")).scenario
    assert a.model_dump(exclude={"description", "topology", "slos"}) == b.model_dump(
        exclude={"description", "topology", "slos"}
    )
    assert a.topology.ledger.replication == "async" and b.topology.ledger.replication == "sync"
    detail = pd.read_parquet(lossy_dir / "faults.parquet")["detail"].iloc[0]
    assert int(detail.split("; ")[1].split()[0]) > 0  # "N acknowledged commits lost"


def test_the_swarm_turns_on_several_families_and_replays_byte_for_byte(
    runs: dict[str, tuple[Path, dict[str, Any]]], tmp_path: Path
):
    run_dir, _ = runs["swarm"]
    assert len(_faults(run_dir) - {"swarm"}) >= 3
    loaded = load_scenario(_path("swarm"))
    execute(loaded, loaded.scenario.seed, tmp_path, Console(quiet=True))
    for name in ("summary.json", "faults.parquet", "journal.parquet", "requests.parquet"):
        assert (tmp_path / name).read_bytes() == (run_dir / name).read_bytes(), name
