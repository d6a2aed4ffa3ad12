"""Benchmark: summary and report of a big run. `python -m reports.bench_report`.

Synthesises a clean run record of about a million client requests (reports/bench_audit.py's
generator: tenants, currencies, retries, two-phase postings, settlement, node samples), writes
it, then times in the same process what a finished run costs after its record is on disk: the
baseline (reading every table with pandas), loading and auditing it, summary.json, and
report.html with all its charts. Prints each figure and PASS or MISS against the budget of 60 s
for the summary and the report; exits 1 on a miss.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from reports.audit import audit
from reports.bench_audit import synthesise
from reports.metrics import dumps, summarise
from reports.record import SCHEMAS, load_run, write_run_record
from reports.run_report import build_run_report

BUDGET_SECONDS = 60.0
SLOS = ["ack.p99 < 500ms", "posted.p99 < 2s", "audit.violations == 0"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reports.bench_report", description=__doc__)
    parser.add_argument("--requests", type=int, default=1_000_000, help="about this many")
    parser.add_argument("--out", type=Path, help="keep the run directory here (default: temp)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        tables, meta = synthesise(args.requests * 25 // 26)  # ~1.04 requests per payment
        duration = float(tables["requests"]["intended_at"].max())
        meta = {**meta, "duration": duration, "scenario": "synthetic"}
        scenario = f"description: synthetic\nduration: {duration}\nslos: {SLOS}\n"
        write_run_record(out, tables=tables, meta=meta, scenario_yaml=scenario)
        requests = len(tables["requests"])
        print(f"synthesised {requests:,} requests, {len(tables['payments']):,} payments, "
              f"{len(tables['journal']):,} journal entries")  # fmt: skip
        del tables
        t0 = time.perf_counter()
        for name in SCHEMAS:
            pd.read_parquet(out / f"{name}.parquet")
        baseline = time.perf_counter() - t0
        t1 = time.perf_counter()
        record = load_run(out)
        audited = audit(record).to_json()
        t2 = time.perf_counter()
        summary = summarise(scenario="synthetic", seed=1, mode="sim", duration=duration,
                            slos=SLOS, tables={"requests": record.requests,
                                               "payments": record.payments},
                            audit_json=audited)  # fmt: skip
        (out / "summary.json").write_text(dumps(summary))
        t3 = time.perf_counter()
        report = build_run_report(out, record, audited)
        t4 = time.perf_counter()
        size = report.stat().st_size
    total = t4 - t1
    verdict = "PASS" if total < BUDGET_SECONDS else "MISS"
    print(f"baseline (pd.read_parquet of every table): {baseline:6.2f} s")
    print(f"load_run + audit:                          {t2 - t1:6.2f} s")
    print(f"summary.json:                              {t3 - t2:6.2f} s")
    print(f"report.html ({size / 1e6:.1f} MB):{t4 - t3:29.2f} s")
    ratio = f"({total / baseline:.1f}x baseline)"
    print(f"summary and report, from the record:       {total:6.2f} s  {ratio}  {verdict} "
          f"(budget {BUDGET_SECONDS:.0f} s)")  # fmt: skip
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
