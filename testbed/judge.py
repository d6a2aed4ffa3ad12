"""One seed, simulated and audited in memory: what a campaign, shrinking and the zoo tests share.

`testbed seeds` judges every seed of a campaign with `judge_seed`, wherever the executor runs
it (`run_seeds`), and `testbed shrink` re-runs a failing seed with `audit_seed` for every
trial. Both live here, below the two commands, so neither command imports the other to reach
them.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

from sim.campaign import CampaignJob, FirstViolation, SeedOutcome
from testbed.executors import run_jobs
from testbed.run import write_run

if TYPE_CHECKING:
    import pandas as pd

    from reports.audit import AuditResult
    from scenarios.schema import Scenario


def audit_seed(scenario: Scenario, name: str, seed: int) -> AuditResult:
    """Run one seed and audit it in memory, writing nothing."""
    return simulate_and_audit(scenario, name, seed)[2]


def simulate_and_audit(
    scenario: Scenario, name: str, seed: int
) -> tuple[dict[str, pd.DataFrame], dict[str, Any], AuditResult]:
    """One seed's tables, meta and audit, straight from memory (no parquet round trip)."""
    from reports.audit import audit
    from reports.record import RunRecord
    from sim import export
    from sim.run import simulate

    result = simulate(scenario, seed)
    tables, meta = export.tables(result), export.meta(result, name)
    return tables, meta, audit(RunRecord.from_tables(tables, meta))


def run_seeds(
    job: CampaignJob, seeds: range, jobs: int, scheduler: str | None = None
) -> Iterator[SeedOutcome]:
    """Every seed's outcome as it finishes (in no particular order): one job in this process,
    more on a local pool, or on the Dask cluster at `scheduler` (testbed/executors.py)."""
    for _, outcome in run_jobs(partial(judge_seed, job), seeds, jobs, scheduler):
        yield outcome


def judge_seed(job: CampaignJob, seed: int) -> SeedOutcome:
    """One seed of a campaign (runs in a worker process); only a failure touches the disk."""
    from reports.audit import KINDS
    from testbed.summary import metrics

    start = time.perf_counter()
    try:
        tables, meta, audited = simulate_and_audit(job.scenario, job.name, seed)
    except Exception as e:  # the system under test crashed: a finding, not a campaign error
        crash = FirstViolation("error", None, None, traceback.format_exception_only(e)[-1].strip())
        wall = time.perf_counter() - start
        return SeedOutcome(seed, False, {"error": 1}, crash, 0, None, None, None, wall)
    counts = {k: v for k, v in audited.counts.items() if v}
    # Liveness too: a campaign's drain outlasts every fault, so a payment still not terminal
    # after it is an effect lost for good (e.g. an offset committed before its effect).
    ok = not any(counts.get(k) for k in KINDS)
    m = metrics(tables, job.scenario.duration, audited.counts)
    run_dir = None
    if not ok and job.fail_dir is not None:
        run_dir = job.fail_dir / f"seed-{seed}"
        write_run(run_dir, job.scenario, job.name, seed, tables, meta)
    found = audited.violations[0] if audited.violations else None
    first = None
    if found is not None:
        first = FirstViolation(found.kind, found.payment_id, found.seq, found.detail)
    return SeedOutcome(
        seed=seed,
        ok=ok,
        counts=counts,
        first=first,
        payments=len(tables["payments"]),
        ack_p99=_number(m["ack.p99"]),
        posted_p99=_number(m["posted.p99"]),
        run_dir=None if run_dir is None else str(run_dir),
        wall=time.perf_counter() - start,
    )


def _number(value: float) -> float | None:
    return None if value != value else value  # NaN: no payment got that far
