"""Two runs side by side: latency percentiles, throughput, statuses, outcomes, audit and SLOs.

`testbed compare RUN_A RUN_B` prints these rows and writes them, with charts (latency
distributions overlaid, throughput over time), to one self-contained HTML page. The change
column reads B against A, so put the older run (the baseline) first.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reports import charts
from reports.html import code, esc, figure, mark, ms, page, table
from reports.metrics import latency_stats
from reports.runs import Run
from scenarios.slo import LATENCY_KINDS

STATS = ("p50", "p95", "p99", "p999", "max", "mean")


@dataclass(frozen=True)
class Row:
    section: str
    name: str
    a: float
    b: float
    unit: str  # "s" for latencies (shown in ms), "/s" for rates, "" for counts

    @property
    def change(self) -> float:
        if math.isnan(self.a) or math.isnan(self.b) or self.a == 0:
            return math.nan
        return self.b / self.a - 1


def rows(a: Run, b: Run) -> list[Row]:
    out = []
    for kind in LATENCY_KINDS:
        sa, sb = latency_stats(a.samples[kind].seconds), latency_stats(b.samples[kind].seconds)
        out += [Row("latency", f"{kind}.{s}", sa[s], sb[s], "s") for s in STATS]
    out += [Row("throughput", m, a.metrics[m], b.metrics[m], "/s")
            for m in ("offered", "throughput")]  # fmt: skip
    statuses = sorted(set(a.record.payments["status"]) | set(b.record.payments["status"]))
    ca, cb = a.record.payments["status"].value_counts(), b.record.payments["status"].value_counts()
    out += [Row("payments", s, float(ca.get(s, 0)), float(cb.get(s, 0)), "") for s in statuses]
    outcomes = sorted(set(a.record.requests["outcome"]) | set(b.record.requests["outcome"]))
    oa, ob = (
        a.record.requests["outcome"].value_counts(),
        b.record.requests["outcome"].value_counts(),
    )
    out += [Row("requests", o, float(oa.get(o, 0)), float(ob.get(o, 0)), "") for o in outcomes]
    kinds = sorted(set(a.audit["counts"]) | set(b.audit["counts"]))
    out += [Row("audit", k, float(a.audit["counts"].get(k, 0)), float(b.audit["counts"].get(k, 0)),
                "") for k in kinds]  # fmt: skip
    return out


def cell(value: float, unit: str) -> str:
    if math.isnan(value):
        return "-"
    if unit == "s":
        return ms(value)
    if unit == "/s":
        return f"{value:.1f}/s"
    return f"{int(value):,}"


def change_text(row: Row) -> str:
    c = row.change
    return "" if math.isnan(c) else f"{c:+.1%}"


def slo_rows(a: Run, b: Run) -> list[tuple[str, str, str]]:
    """Each SLO of either scenario with its pass/fail in A and in B ('-': not in that run's)."""
    found_a = {s.slo: s.passed for s in a.slos}
    found_b = {s.slo: s.passed for s in b.slos}
    names = [*found_a, *(n for n in found_b if n not in found_a)]

    def word(found: dict[str, bool], name: str) -> str:
        return "-" if name not in found else ("pass" if found[name] else "FAIL")

    return [(n, word(found_a, n), word(found_b, n)) for n in names]


def build_compare_report(a: Run, b: Run, out: Path) -> Path:
    body = [
        f"<h1>{esc(a.name)} seed {esc(a.record.seed)} vs {esc(b.name)} seed "
        f"{esc(b.record.seed)}</h1>",
        f"<p>A: {code(str(a.path))} ({esc(a.mode)}) &nbsp; B: {code(str(b.path))} "
        f"({esc(b.mode)}). Change is B against A.</p>",
    ]
    all_rows = rows(a, b)
    for section, title in (("latency", "Latency"), ("throughput", "Throughput"),
                           ("payments", "Payments by status"), ("requests", "Requests by outcome"),
                           ("audit", "Audit")):  # fmt: skip
        body.append(f"<h2>{title}</h2>")
        picked = [r for r in all_rows if r.section == section]
        body.append(table(["", "A", "B", "change"],
                          [(r.name, cell(r.a, r.unit), cell(r.b, r.unit), change_text(r))
                           for r in picked]))  # fmt: skip
        if section == "latency":
            body.append(figure(_cdf_chart(a, b), "latency distributions: share of samples "
                               "at or below each latency (log scale)"))  # fmt: skip
        if section == "throughput":
            body.append(figure(_throughput_chart(a, b), "acknowledgements per second"))
    body.append("<h2>SLOs</h2>")
    slos = slo_rows(a, b)
    body.append(
        table(["SLO", "A", "B"], [(n, mark(x == "pass") if x != "-" else "-",
                                  mark(y == "pass") if y != "-" else "-") for n, x, y in slos])
        if slos else "<p>Neither scenario sets SLOs.</p>"
    )  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page(f"compare {a.path.name} vs {b.path.name}", body), encoding="utf-8")
    os.replace(tmp, out)
    return out


def _cdf_chart(a: Run, b: Run) -> str:
    fig = charts.figure(rows=2, cols=2, height=3.0)
    for ax, kind in zip(fig.axes, LATENCY_KINDS, strict=True):
        for colour, (label, run) in zip(charts.PALETTE, (("A", a), ("B", b)), strict=False):
            values = np.sort(run.samples[kind].seconds) * 1000
            if len(values):
                share = np.arange(1, len(values) + 1) / len(values)
                ax.plot(
                    values, share, color=colour, linewidth=1.2, label=f"{label} ({run.path.name})"
                )
        ax.set_title(f"{kind} latency", fontsize=11)
        ax.set_xscale("log")
        ax.set_xlabel("ms")
        ax.set_ylabel("share")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    return charts.png(fig)


def _throughput_chart(a: Run, b: Run) -> str:
    fig = charts.figure()
    ax = fig.axes[0]
    for colour, (label, run) in zip(charts.PALETTE, (("A", a), ("B", b)), strict=False):
        acked = run.acked_at
        start = 0.0 if run.mode == "sim" else float(run.record.requests["intended_at"].min())
        width = charts.bucket_width(run.duration, 60)
        edges = np.arange(0.0, run.duration + width, width)
        counts, _ = np.histogram(acked - start, bins=edges)
        ax.step(edges[:-1], counts / width, where="post", color=colour,
                label=f"{label} ({run.path.name})")  # fmt: skip
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("per second")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return charts.png(fig)
