"""report.html for one run: what a person hands their team after a run, in one file.

Built from the run directory alone (reports/runs.py: the record, its audit.json and
scenario.yaml), so a sim run and a load run get the same report, and `testbed report RUN_DIR`
can rebuild it at any time. Metrics and SLOs are computed afresh from the record; the audit is
read from audit.json (the verdict the run was given) and computed only when a directory has
none.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reports import charts
from reports.detection import POSITIVES, DetectionRow, detection
from reports.html import Html, banner, code, esc, figure, mark, ms, num, page, table
from reports.metrics import generator_row, latency_stats, load_verdict, traffic_payments
from reports.record import RunRecord
from reports.runs import Run, SloOutcome, open_run
from reports.stages import note, stages
from scenarios.slo import LATENCY_KINDS

REPORT = "report.html"
MAX_ROWS = 100
"""Violations and faults listed in the page; the rest are in audit.json and faults.parquet."""
_NODE_BASE = ("at", "node")


def reproduce_command(run_dir: Path, record: RunRecord) -> str:
    """The command that runs this scenario with this seed again (the resolved scenario.yaml
    carries the bugs that were switched on)."""
    mode = " --mode load" if record.meta.get("mode") == "load" else ""
    seed = f" --seed {record.seed}" if record.seed is not None else ""
    return f"testbed run {run_dir / 'scenario.yaml'}{seed}{mode}"


def build_run_report(run_dir: str | os.PathLike[str], record: RunRecord | None = None,
                     audit_json: dict[str, Any] | None = None) -> Path:  # fmt: skip
    """Write RUN_DIR/report.html (atomically) and return its path; NotARun if the directory
    is not a readable run."""
    run = open_run(Path(run_dir), "DIR", record, audit_json)
    out = run.path / REPORT
    tmp = out.with_name(REPORT + ".tmp")
    tmp.write_text(render(run), encoding="utf-8")
    os.replace(tmp, out)
    return out


def render(run: Run) -> str:
    record, run_dir = run.record, run.path
    mode = run.mode
    t0 = run.start
    span = _span(record, t0, run.duration)
    samples = run.samples
    audit_json = run.audit
    body = [
        f"<h1>{esc(run.name)}: seed {esc(record.seed)} ({esc(mode)} run)</h1>",
        f"<p>{esc(run.scenario.get('description', ''))}</p>",
        f"<p>{banner(run.passed, 'PASS' if run.passed else 'FAIL')} "
        f"<span class='note'>run directory {code(str(run_dir))}</span></p>",
        _facts(record, run.scenario, run.duration),
        "<h2>Verdict</h2>",
        _verdict(run),
        *_load_limits(run),
        *_detection(run),
        "<h2>Latency</h2>",
        _latency_table(samples),
        figure(
            charts.latency_over_time(samples, record.faults, t0, span),
            "p50, p95 and p99 per time bucket, by when each latency's clock started; shaded: "
            "fault windows",
        ),
        "<h2>Throughput: offered and achieved</h2>",
        _throughput(run, t0, span),
        "<h2>Nodes: utilization and queues</h2>",
        *_nodes(record, t0),
        "<h2>Where the time goes: stages</h2>",
        *_stages(run),
        "<h2>Audit</h2>",
        *_audit(run_dir, record, audit_json),
        "<h2>SLOs</h2>",
        _slo_table(run.slos),
        "<h2>Faults</h2>",
        _faults(record.faults, t0),
        f"<p class='note'>Rebuild this page with {code(f'testbed report {run_dir}')}.</p>",
    ]
    return page(f"{run.name} seed {record.seed}: run report", body)


def _span(record: RunRecord, t0: float, duration: float) -> float:
    ends = [duration]
    for frame, col in ((record.requests, "done_at"), (record.payments, "settled_at"),
                       (record.payments, "posted_at"), (record.nodes, "at")):  # fmt: skip
        if len(frame) and frame[col].notna().any():
            ends.append(float(frame[col].max()) - t0)
    return max(ends)


def _is_latency(slo: str) -> bool:
    return slo.startswith(tuple(f"{k}." for k in LATENCY_KINDS))


def _facts(record: RunRecord, scenario: Mapping[str, Any], duration: float) -> str:
    meta = record.meta
    bugs = ", ".join(scenario.get("bugs") or []) or "none"
    rows = [
        ("mode", meta.get("mode")),
        ("seed", record.seed),
        ("traffic", f"{duration:g} s"),
        ("drained", f"at {meta['drained_at']:.1f} s" if "drained_at" in meta else "-"),
        ("requests (attempts)", f"{len(record.requests):,}"),
        ("payments", f"{len(record.payments):,}"),
        ("journal entries", f"{len(record.journal):,}"),
        ("fault windows", f"{len(record.faults):,}"),
        ("bug-zoo variants", bugs),
    ]
    return table(["", ""], rows, left=2)


def _verdict(run: Run) -> str:
    m, record, audit_json, slos = run.metrics, run.record, run.audit, run.slos
    rows: list[tuple[object, ...]] = [
        ("offered", f"{m['offered']:.1f}/s", ""),
        ("throughput (acknowledged)", f"{m['throughput']:.1f}/s", ""),
    ]
    made = traffic_payments(run.times, run.start)  # not a load run's set-up
    for status, n in sorted(record.payments["status"][made].value_counts().items()):
        rows.append((f"payments {status}", f"{n:,}", ""))
    counts = audit_json["counts"]
    found = ", ".join(f"{k} {v}" for k, v in counts.items() if v) or "no violations"
    rows.append(("audit", found, mark(bool(audit_json["ok"]))))
    for s in slos:
        value = ms(s.left) if _is_latency(s.slo) else num(s.left)
        rows.append((f"SLO {s.slo}", value, mark(s.passed)))
    if record.meta.get("mode") == "load":
        label, value, bound = generator_row(load_verdict(record.meta)["generator"])
        rows.append((label, value, Html('<span class="fail">bound</span>') if bound else ""))
    return table(["check", "value", ""], rows)


def _load_limits(run: Run) -> list[str]:
    """A load run's: why the generator was the bottleneck, the faults it could not apply and
    the topology settings it runs without; nothing for a sim run."""
    if run.record.meta.get("mode") != "load":
        return []
    found = load_verdict(run.record.meta)
    out: list[str] = []
    if found["generator"]["bound"]:
        why = found["generator"]["reason"]
        out.append(f"<p class='note'>The load generator was the bottleneck: {esc(why)}</p>")
    faults = found["faults_not_applied"]
    if faults:
        out.append(f"<h3>Faults not applied in load mode ({len(faults)})</h3>")
        rows = [(f["kind"], f["target"] or "-", f["reason"]) for f in faults[:MAX_ROWS]]
        out.append(table(["kind", "target", "reason"], rows, left=3))
        out.append("<p class='note'>The verdict above did not face these faults.</p>")
    settings = found["not_modelled"]
    if settings:
        out.append("<h3>Not modelled in load mode</h3>")
        rows = [(n["setting"], n["value"], n["reason"]) for n in settings]
        out.append(table(["setting", "value", "why"], rows, left=3))
    return out


def _detection(run: Run) -> list[str]:
    """The checks against the labelled fraud; nothing for a run without the checks' decisions."""
    rows = detection(run.record, traffic_payments(run.times, run.start))
    if not rows:
        return []
    heads = ["check", "payments", "labelled positives", "flagged", "true positives",
             "precision", "recall", "false-positive rate", "fraud caught", "fraud missed",
             "held"]  # fmt: skip
    body = [
        (r.check, f"{r.payments:,}", f"{r.positives:,}", f"{r.flagged:,}",
         f"{r.true_positives:,}", *(_share(v) for v in _rates(r)), f"{r.caught_amount:,}",
         f"{r.missed_amount:,}", f"{r.held:,}")
        for r in rows
    ]  # fmt: skip
    positives = "; ".join(f"{c}: {', '.join(sorted(p))}" for c, p in POSITIVES.items())
    note = (
        "Flagged: the check's first decision on the payment was review or reject; all checks: "
        "the payment ended held, or rejected by a check or an operator. Positives per check: "
        f"{positives}; all checks: any label. Amounts in minor units."
    )
    return ["<h2>Detection</h2>", table(heads, body), f"<p class='note'>{esc(note)}</p>"]


def _rates(row: DetectionRow) -> tuple[float, float, float]:
    return row.precision, row.recall, row.false_positive_rate


def _share(value: float) -> str:
    return "-" if np.isnan(value) else f"{value:.1%}"


def _latency_table(samples: Mapping[str, Any]) -> str:
    rows = []
    for kind, s in samples.items():
        st = latency_stats(s.seconds)
        keys = ("p50", "p95", "p99", "p999", "max", "mean")
        rows.append((kind, f"{len(s.seconds):,}", *(ms(st[k]) for k in keys)))
    heads = ["latency", "samples", "p50", "p95", "p99", "p99.9", "max", "mean"]
    meaning = (
        "ack: first send to first 202; processing: accepted (received_at) to posted; "
        "posted: first send to posted; settled: first send to settled."
    )
    return table(heads, rows) + f"<p class='note'>{esc(meaning)}</p>"


def _throughput(run: Run, t0: float, span: float) -> str:
    record, m = run.record, run.metrics
    req, pay = record.requests, record.payments
    first = req[req["attempt"] == 1]["intended_at"].to_numpy(dtype=float)
    acked = run.acked_at
    series = {
        "offered (first sends)": first,
        "sent (with retries)": req["sent_at"].to_numpy(dtype=float),
        "acknowledged (first 202)": acked,
        "posted": pay["posted_at"].dropna().to_numpy(dtype=float),
    }
    retries = int((req["attempt"] > 1).sum())
    rows = [
        ("offered", f"{m['offered']:.1f}/s"),
        ("acknowledged within the traffic window", f"{m['throughput']:.1f}/s"),
        ("retries", f"{retries:,}"),
        ("timeouts", f"{int(m['requests.timeouts']):,}"),
        ("errors (5xx, transport)", f"{int(m['requests.errors']):,}"),
    ]
    chart = charts.rate_over_time(series, record.faults, t0, span, "offered and achieved")
    return table(["", ""], rows) + figure(chart, "events per second per time bucket")


def _nodes(record: RunRecord, t0: float) -> list[str]:
    nodes = record.nodes
    if nodes.empty or "node" not in nodes.columns:
        return ["<p class='note'>The run record has no node samples.</p>"]
    numeric = [
        c for c in nodes.columns
        if c not in _NODE_BASE and pd.api.types.is_numeric_dtype(nodes[c])
    ]  # fmt: skip
    grouped = nodes.groupby("node", sort=True)
    rows = []
    for node, frame in grouped:
        cells: list[object] = [node]
        for c in numeric:
            cells += [num(float(frame[c].mean()), 3), num(float(frame[c].max()), 3)]
        rows.append(cells)
    heads = ["node", *(f"{c} {s}" for c in numeric for s in ("mean", "max"))]
    out: list[str] = [table(heads, rows)]
    for column in numeric:
        chart = charts.node_series(nodes, column, record.faults, t0, column.replace("_", " "))
        out.append(figure(chart, f"{column} per sample; shaded: fault windows"))
    return out


def _stages(run: Run) -> list[str]:
    tables = {**run.tables, "decisions": run.record.decisions}
    found = stages(tables, run.times)
    stats = [latency_stats(s.seconds) for s in found]
    rows = [
        (s.name, s.meaning, f"{len(s.seconds):,}", *(ms(st[k]) for k in ("p50", "p95", "p99")),
         ms(st["mean"]))
        for s, st in zip(found, stats, strict=True)
    ]  # fmt: skip
    out: list[str] = [
        table(["stage", "from, to", "payments", "p50", "p95", "p99", "mean"], rows, left=2)
    ]
    measured = [(s.name, st) for s, st in zip(found, stats, strict=True) if len(s.seconds)]
    if measured:
        chart = charts.stage_bars([n for n, _ in measured], [st for _, st in measured])
        out.append(figure(chart, "p50, p95 and p99 per stage"))
    out.append(f"<p class='note'>{esc(note(tables))}</p>")
    return out


def _audit(run_dir: Path, record: RunRecord, audit_json: Mapping[str, Any]) -> list[str]:
    counts = audit_json["counts"]
    out: list[str] = [table(["finding", "count"], sorted(counts.items()))]
    findings = [*audit_json.get("violations", []), *audit_json.get("liveness", [])]
    if not findings:
        out.append("<p>No violations: every check of the audit passed.</p>")
        return out
    command = reproduce_command(run_dir, record)
    rows = [
        (v["kind"], v["tenant"], v["payment_id"] or "", "" if v["seq"] is None else v["seq"],
         v["detail"], code(command))
        for v in findings[:MAX_ROWS]
    ]  # fmt: skip
    out.append(table(["kind", "tenant", "payment", "seq", "detail", "reproduce"], rows, left=6))
    shown = min(len(findings), MAX_ROWS)
    total = sum(counts.values())
    if total > shown:
        out.append(f"<p class='note'>{shown} of {total:,} findings shown; audit.json lists "
                   "up to 1,000 of each kind.</p>")  # fmt: skip
    return out


def _slo_table(slos: list[SloOutcome]) -> str:
    if not slos:
        return "<p>The scenario sets no SLOs.</p>"
    rows = []
    for s in slos:
        fmt = ms if _is_latency(s.slo) else num
        rows.append((s.slo, fmt(s.left), num(s.right), mark(s.passed), s.error))
    return table(["SLO", "measured", "threshold", "", "note"], rows)


def _faults(faults: pd.DataFrame, t0: float) -> str:
    if faults.empty:
        return "<p>No faults were injected.</p>"
    rows = [
        (kind, target, f"{start - t0:.3f}", "-" if np.isnan(end) else f"{end - t0:.3f}", detail)
        for start, end, kind, target, detail in faults[
            ["start", "end", "kind", "target", "detail"]
        ].itertuples(index=False)
    ][:MAX_ROWS]
    note = "" if len(faults) <= MAX_ROWS else f"<p class='note'>{MAX_ROWS} of {len(faults)}.</p>"
    return table(["kind", "target", "start s", "end s", "detail"], rows, left=2) + note
