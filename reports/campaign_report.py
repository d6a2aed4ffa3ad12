"""report.html for a seed campaign: which seeds failed, how, and the latency across seeds.

Reads the campaign directory alone: campaign.json (the summary `testbed seeds` writes),
seeds.csv (one row per seed) and the run directories of the failing seeds, whose own reports
the page links to.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from reports import charts
from reports.html import Html, banner, code, esc, figure, ms, page, table

REPORT = "report.html"
SEEDS_CSV = "seeds.csv"


def build_campaign_report(campaign_dir: str | os.PathLike[str]) -> Path:
    base = Path(campaign_dir)
    summary = json.loads((base / "campaign.json").read_text())
    per_seed = pd.read_csv(base / SEEDS_CSV) if (base / SEEDS_CSV).exists() else None
    out = base / REPORT
    tmp = out.with_name(REPORT + ".tmp")
    tmp.write_text(render(base, summary, per_seed), encoding="utf-8")
    os.replace(tmp, out)
    return out


def _where(c: Mapping[str, Any]) -> str:
    scheduler = c.get("scheduler")  # absent from the campaigns written before Dask
    return f"the Dask cluster at {scheduler}" if scheduler else f"{c['jobs']} jobs"


def render(base: Path, c: Mapping[str, Any], per_seed: pd.DataFrame | None) -> str:
    ok = c["failed"] == 0
    seeds = c["seeds"]
    verdict = "every seed safe" if ok else f"{c['failed']} seeds FAILED"
    cut = c.get("interrupted")
    if cut:
        verdict += f"; cut short, {cut['seeds_not_run']} seeds did not run"
    body = [
        f"<h1>Campaign: {esc(c['scenario'])}, seeds {esc(seeds['first'])}..{esc(seeds['last'])}"
        "</h1>",
        f"<p>{banner(ok, verdict)}</p>",
        table(
            ["", ""],
            [
                ("seeds run", c["run"]),
                ("passed", c["passed"]),
                ("failed", c["failed"]),
                ("payments", f"{c['payments']:,}"),
                ("bug-zoo variants", ", ".join(c["bugs"]) or "none"),
                ("wall", f"{c['wall_seconds']} s on {_where(c)}"),
                *([("cut short", cut["reason"])] if cut else []),
            ],
            left=2,
        ),
        "<h2>Failures by kind</h2>",
        *_by_kind(c),
        "<h2>Latency across seeds</h2>",
        *_latency(c, per_seed),
        "<h2>Failing seeds</h2>",
        _failures(base, c),
    ]
    return page(f"campaign {c['scenario']}", body)


def _by_kind(c: Mapping[str, Any]) -> list[str]:
    seeds, findings = c["failures_by_kind"], c["findings_by_kind"]
    if not seeds:
        return ["<p>No findings in any seed.</p>"]
    kinds = sorted(seeds)
    rows = [(k, seeds[k], f"{findings.get(k, 0):,}") for k in kinds]
    fig = charts.figure(height=max(2.0, 0.45 * len(kinds) + 1.0))
    ax = fig.axes[0]
    ax.barh(kinds, [seeds[k] for k in kinds], color=charts.PALETTE[1])
    ax.invert_yaxis()
    ax.set_xlabel("seeds with at least one finding of the kind")
    ax.grid(alpha=0.3, axis="x")
    return [
        table(["kind", "seeds", "findings"], rows),
        figure(charts.png(fig), "seeds per kind of finding (liveness does not fail a seed)"),
    ]


def _latency(c: Mapping[str, Any], per_seed: pd.DataFrame | None) -> list[str]:
    spread = c["latency_across_seeds"]
    rows = [
        (f"{name} of a seed", ms(s["p50"]), ms(s["p99"]), ms(s["max"]))
        for name, s in (("ack p99", spread["ack_p99"]), ("posted p99", spread["posted_p99"]))
    ]
    out: list[str] = [table(["", "p50 across seeds", "p99 across seeds", "max"], rows)]
    if per_seed is None or per_seed.empty:
        return out
    fig = charts.figure(cols=2, height=3.0)
    for ax, col, title in zip(fig.axes, ("ack_p99", "posted_p99"), ("ack p99", "posted p99"),
                              strict=True):  # fmt: skip
        values = per_seed[col].dropna().to_numpy(dtype=float) * 1000
        ax.set_title(f"{title} per seed", fontsize=11)
        ax.set_xlabel("ms")
        ax.set_ylabel("seeds")
        if len(values):
            ax.hist(values, bins=min(40, max(5, len(values) // 3)), color=charts.PALETTE[0])
        ax.grid(alpha=0.3)
    out.append(figure(charts.png(fig), "distribution across seeds of each seed's p99"))
    if len(per_seed) > 1:
        fig = charts.figure(height=3.0)
        ax = fig.axes[0]
        order = per_seed.sort_values("seed")
        failed = ~order["ok"].astype(bool)
        ax.plot(order["seed"], order["posted_p99"] * 1000, ".", color=charts.PALETTE[0],
                markersize=3, label="posted p99")  # fmt: skip
        ax.plot(order["seed"][failed], order["posted_p99"][failed] * 1000, "x",
                color=charts.PALETTE[1], label="failed seed")  # fmt: skip
        ax.set_xlabel("seed")
        ax.set_ylabel("ms")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        out.append(figure(charts.png(fig), "posted p99 by seed; crosses mark failed seeds"))
    return out


def _failures(base: Path, c: Mapping[str, Any]) -> str:
    failures = c["failures"]
    if not failures:
        return "<p>None.</p>"
    rows = []
    for f in failures:
        counts = ", ".join(f"{k} {n}" for k, n in sorted(f["counts"].items()))
        first = f["first"]
        where = "" if first is None else (
            f"{first['kind']}: payment {first['payment_id'] or '-'}, seq {first['seq']}: "
            f"{first['detail']}"
        )  # fmt: skip
        run = f["run_dir"]
        link: object = "-"
        if run:
            rel = os.path.relpath(Path(run) / REPORT, base)
            link = Html(f'<a href="{esc(rel)}">{esc(Path(run).name)}</a>')
        rows.append((f["seed"], counts, where, link, code(f["reproduce"])))
    return table(["seed", "findings", "first violation", "run", "reproduce"], rows, left=5)


def write_seeds_csv(campaign_dir: str | os.PathLike[str], rows: list[Mapping[str, Any]]) -> None:
    """seeds.csv: one row per seed (seed, ok, payments, ack_p99, posted_p99 in seconds, findings
    as `kind n; ...`), sorted by seed, so the same campaign gives the same file."""
    frame = pd.DataFrame(rows, columns=["seed", "ok", "payments", "ack_p99", "posted_p99",
                                        "findings"])  # fmt: skip
    frame = frame.astype({"ack_p99": float, "posted_p99": float})
    frame.sort_values("seed", kind="stable").to_csv(Path(campaign_dir, SEEDS_CSV), index=False)
