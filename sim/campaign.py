"""Seed campaigns: one scenario across many seeds, and what the campaign sums up.

One seed explores one interleaving of arrivals and faults; a safety claim needs thousands. Every
seed is independent and deterministic, so a campaign is embarrassingly parallel: each worker
runs a seed and sends back a small `SeedOutcome` (never the run's tables), and the parent only
counts. Outcomes are sorted by seed, so the campaign summary is the same whatever the number of
jobs, the machines they ran on, or the order in which seeds finish.

Where seeds run (this process, a local pool, a Dask cluster) is the executor's business
(`testbed/executors.py`), and what judging one seed means (simulate, audit, write the record of
a failure) is the caller's (`testbed/judge.py`); this module holds only what they exchange.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scenarios.schema import Scenario


@dataclass(frozen=True, slots=True)
class CampaignJob:
    """What every seed of a campaign shares: the scenario (bugs applied) and where failures go."""

    scenario: Scenario
    name: str
    fail_dir: Path | None
    """A failing seed writes its full run record to `fail_dir/seed-N`; None writes nothing."""


@dataclass(frozen=True, slots=True)
class FirstViolation:
    kind: str
    payment_id: str | None
    seq: int | None
    detail: str


@dataclass(frozen=True, slots=True)
class SeedOutcome:
    seed: int
    ok: bool
    """No safety violation (liveness findings are counted but do not fail a seed)."""
    counts: Mapping[str, int]
    """Findings by kind, only the kinds found."""
    first: FirstViolation | None
    payments: int
    ack_p99: float | None
    posted_p99: float | None
    run_dir: str | None
    wall: float = field(compare=False)


def _spread(values: list[float]) -> dict[str, float | None]:
    """p50, p99 and max of per-seed values (None when no seed had one)."""
    if not values:
        return {"p50": None, "p99": None, "max": None}
    arr = np.asarray(values, dtype=float)
    return {
        "p50": float(np.quantile(arr, 0.5)),
        "p99": float(np.quantile(arr, 0.99)),
        "max": float(arr.max()),
    }


def campaign_summary(
    outcomes: list[SeedOutcome],
    *,
    scenario: str,
    bugs: list[str],
    jobs: int | None,
    scheduler: str | None,
    wall: float,
    reproduce: Callable[[int], str],
) -> dict[str, Any]:
    """campaign.json: counts, failures by kind, the latency spread across seeds, wall time.

    Everything but the machine's side (`WALL_FIELDS`: local jobs, or the Dask scheduler the seeds
    ran on, and wall time) depends only on the scenario and the seeds.
    """
    ordered = sorted(outcomes, key=lambda o: o.seed)
    failed = [o for o in ordered if not o.ok]
    seeds_by_kind: dict[str, int] = {}
    findings_by_kind: dict[str, int] = {}
    for o in ordered:
        for kind, n in o.counts.items():
            seeds_by_kind[kind] = seeds_by_kind.get(kind, 0) + 1
            findings_by_kind[kind] = findings_by_kind.get(kind, 0) + n
    return {
        "scenario": scenario,
        "bugs": bugs,
        "seeds": {
            "first": ordered[0].seed if ordered else None,
            "last": ordered[-1].seed if ordered else None,
        },
        "run": len(ordered),
        "passed": len(ordered) - len(failed),
        "failed": len(failed),
        "failures_by_kind": dict(sorted(seeds_by_kind.items())),
        "findings_by_kind": dict(sorted(findings_by_kind.items())),
        "payments": sum(o.payments for o in ordered),
        "latency_across_seeds": {
            "ack_p99": _spread([o.ack_p99 for o in ordered if o.ack_p99 is not None]),
            "posted_p99": _spread([o.posted_p99 for o in ordered if o.posted_p99 is not None]),
        },
        "failures": [
            {
                "seed": o.seed,
                "counts": dict(sorted(o.counts.items())),
                "first": None
                if o.first is None
                else {
                    "kind": o.first.kind,
                    "payment_id": o.first.payment_id,
                    "seq": o.first.seq,
                    "detail": o.first.detail,
                },
                "run_dir": o.run_dir,
                "reproduce": reproduce(o.seed),
            }
            for o in failed
        ],
        "jobs": jobs,
        "scheduler": scheduler,
        "wall_seconds": round(wall, 3),
        "seeds_per_minute": round(60 * len(ordered) / wall, 2) if wall > 0 else None,
    }


WALL_FIELDS = ("jobs", "scheduler", "wall_seconds", "seeds_per_minute")
"""The fields of campaign.json that depend on the machine, not on the seeds."""
