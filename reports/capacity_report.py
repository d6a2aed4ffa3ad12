"""The capacity report of a sweep (report.html in the sweep directory): the page a team reads
to learn how much load a topology takes, where it breaks, and what to run it at."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reports import charts
from reports.capacity import SUSTAINED, Capacity, analyse, role_columns
from reports.html import code, esc, figure, mark, ms, num, page, table


def render(base: Path, settings: dict[str, Any], points: pd.DataFrame, cap: Capacity) -> str:
    varied = [v["path"] for v in settings["vary"]]
    flags = " ".join(f"--vary {v['flag']}" for v in settings["vary"])
    command = f"testbed sweep {settings['scenario_path']} {flags}"
    throughput_caption = (
        "achieved against offered load per curve; the dashed line is achieved = offered, "
        "circles mark each curve's knee"
    )
    body = [
        f"<h1>Capacity: {esc(settings['scenario'])} ({esc(settings['mode'])} mode, seed "
        f"{esc(settings['seed'])})</h1>",
        f"<p>{len(points)} points: {code(command)}</p>",
        "<h2>Recommendation</h2>",
        _recommendation(cap, settings),
        "<h2>Offered and achieved throughput</h2>",
        figure(_throughput_chart(cap, points), throughput_caption),
        "<h2>Latency against load</h2>",
        figure(_latency_chart(cap, points), "p50, p95 and p99 against offered load (log scale)"),
        "<h2>Utilization per node role</h2>",
        *_utilization(cap, points),
        "<h2>Scalability (Universal Scalability Law)</h2>",
        *_usl(cap),
        "<h2>Every point</h2>",
        _points_table(points, varied),
        f"<p class='note'>Every point's run directory (with its own report.html) is under "
        f"{code(str(base / 'points'))}; the rows are in points.csv and points.parquet. Rebuild "
        f"this page with {code(f'testbed report {base}')}.</p>",
    ]
    return page(f"capacity {settings['scenario']}", body)


def _rate(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:,.1f}/s"


def _recommendation(cap: Capacity, settings: dict[str, Any]) -> str:
    slos = settings.get("slos") or []
    rows = []
    for c in cap.curves:
        bottleneck = "-" if c.bottleneck is None else (
            f"{c.bottleneck} ({c.bottleneck_utilization:.0%} busy)"
        )  # fmt: skip
        knee = _rate(c.knee) + ("" if c.saturated else " (never overloaded)")
        rows.append((c.label, knee, _rate(c.capacity), bottleneck, _rate(c.max_load_at_slos),
                     _rate(c.recommended)))  # fmt: skip
    head = ["curve", "knee (offered)", "capacity (achieved)", "bottleneck", "max load at SLOs",
            f"recommended ({cap.headroom:.0%} headroom)"]  # fmt: skip
    text = (
        f"<p>The knee is the highest offered load a curve sustained (achieved at least "
        f"{SUSTAINED:.0%} of offered) before the first point that was not; the bottleneck is the "
        f"busiest node role at that first overloaded point. The recommended maximum is the "
        f"highest load at which every SLO held and the audit passed, less "
        f"{cap.headroom:.0%} headroom. SLOs: {esc('; '.join(slos) or 'none')}.</p>"
    )
    return text + table(head, rows)


def _curve_frames(cap: Capacity, points: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    by_point = points.set_index("point")
    return [(c.label, by_point.loc[c.points]) for c in cap.curves]


def _throughput_chart(cap: Capacity, points: pd.DataFrame) -> str:
    fig = charts.figure(height=4.0)
    ax = fig.axes[0]
    top = float(points["offered"].max()) if len(points) else 1.0
    ax.plot([0, top], [0, top], "--", color="#999999", linewidth=1, label="achieved = offered")
    for i, ((label, frame), curve) in enumerate(zip(_curve_frames(cap, points), cap.curves,
                                                    strict=True)):  # fmt: skip
        colour = charts.PALETTE[i % len(charts.PALETTE)]
        ax.plot(frame["offered"], frame["throughput"], "-o", color=colour, markersize=3,
                linewidth=1.2, label=label)  # fmt: skip
        if curve.knee is not None:
            knee_x = frame.loc[frame["offered"] == curve.knee, "throughput"]
            ax.plot([curve.knee], [float(knee_x.iloc[0])], "o", markersize=11,
                    markerfacecolor="none", color=colour)  # fmt: skip
    ax.set_xlabel("offered load (per second)")
    ax.set_ylabel("achieved throughput (per second)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return charts.png(fig)


def _latency_chart(cap: Capacity, points: pd.DataFrame) -> str:
    fig = charts.figure(cols=2, height=3.6)
    frames = _curve_frames(cap, points)
    for ax, kind in zip(fig.axes, ("ack", "posted"), strict=True):
        for i, (label, frame) in enumerate(frames):
            stats = ("p50", "p95", "p99") if len(frames) == 1 else ("p99",)
            for j, stat in enumerate(stats):
                colour = charts.PALETTE[(i + j) % len(charts.PALETTE)]
                name = stat if len(frames) == 1 else f"{label} {stat}"
                ax.plot(frame["offered"], frame[f"{kind}.{stat}"] * 1000, "-o", markersize=3,
                        color=colour, linewidth=1.1, label=name)  # fmt: skip
        for i, c in enumerate(cap.curves):
            if c.knee is not None:
                ax.axvline(c.knee, color=charts.PALETTE[i % len(charts.PALETTE)], alpha=0.35,
                           linestyle=":")  # fmt: skip
        ax.set_title(f"{kind} latency", fontsize=11)
        ax.set_yscale("log")
        ax.set_xlabel("offered load (per second)")
        ax.set_ylabel("ms")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    return charts.png(fig)


def _utilization(cap: Capacity, points: pd.DataFrame) -> list[str]:
    utils = role_columns(points, "util:")
    if not utils:
        return ["<p class='note'>The points' run records have no node utilization.</p>"]
    frames = _curve_frames(cap, points)[:4]
    fig = charts.figure(rows=len(frames), height=3.0)
    for ax, (label, frame) in zip(fig.axes, frames, strict=True):
        for i, column in enumerate(utils):
            ax.plot(frame["offered"], frame[column], "-o", markersize=3, linewidth=1.1,
                    color=charts.PALETTE[i % len(charts.PALETTE)],
                    label=column.removeprefix("util:"))  # fmt: skip
        ax.set_title(label, fontsize=10)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("offered load (per second)")
        ax.set_ylabel("mean utilization")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", ncol=3)
    note = "" if len(cap.curves) <= 4 else " (the first four curves)"
    caption = f"mean utilization per node role over the traffic window{note}"
    return [figure(charts.png(fig), caption)]


def _usl(cap: Capacity) -> list[str]:
    if cap.usl is None:
        return [f"<p>{esc(cap.usl_note)}.</p>"]
    f = cap.usl
    pct = f"{f.confidence:.0%}"

    def interval(i: Any, digits: int = 4) -> str:
        if math.isnan(i.low):
            return "-"
        return f"{num(i.low, digits)} .. {num(i.high, digits)}"

    rows = [
        ("lambda (throughput of one, per second)", num(f.lam.value), interval(f.lam)),
        ("sigma (contention)", num(f.sigma.value), interval(f.sigma)),
        ("kappa (coherency)", num(f.kappa.value), interval(f.kappa)),
    ]
    if f.peak_n is not None:
        rows.append(("peak N*", num(f.peak_n.value), interval(f.peak_n)))
        rows.append(("throughput at N*", _rate(f.peak_throughput), ""))
    else:
        rows.append(("peak N*", "none (kappa is nil: throughput levels off)", ""))
    fig = charts.figure(height=3.6)
    ax = fig.axes[0]
    sizes = np.array([c.size for c in cap.curves if c.size is not None], dtype=float)
    caps = np.array([c.capacity for c in cap.curves if c.size is not None], dtype=float)
    ax.plot(sizes, caps, "o", color=charts.PALETTE[0], label="measured capacity")
    top = max(sizes.max(), f.peak_n.value if f.peak_n is not None else 0) * 1.3
    grid = np.linspace(1, max(top, 2), 200)
    ax.plot(grid, f.predict(grid), "-", color=charts.PALETTE[1], label="USL fit")
    if f.peak_n is not None:
        ax.axvline(f.peak_n.value, color=charts.PALETTE[1], linestyle=":", label="N*")
    ax.set_xlabel("N")
    ax.set_ylabel("capacity (per second)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return [
        table(["parameter", "estimate", f"{pct} interval"], rows),
        f"<p class='note'>{esc(cap.usl_note)}; fitted on {f.points} sizes"
        + ("" if f.points > 3 else " (intervals need four or more)")
        + ".</p>",
        figure(charts.png(fig), "capacity against N and the fitted curve"),
    ]


def _points_table(points: pd.DataFrame, varied: list[str]) -> str:
    rows = []
    for _, p in points.iterrows():
        rows.append((
            p["point"], *(p[v] for v in varied), _rate(p["offered"]), _rate(p["throughput"]),
            ms(p["ack.p99"]), ms(p["posted.p50"]), ms(p["posted.p99"]),
            mark(bool(p["slos_passed"])), mark(bool(p["audit_ok"])), p.get("error", "") or "",
        ))  # fmt: skip
    head = ["point", *varied, "offered", "achieved", "ack p99", "posted p50", "posted p99",
            "SLOs", "audit", "error"]  # fmt: skip
    return table(head, rows, left=1)


# -- the sweep directory -----------------------------------------------------------------------
def load_sweep(sweep_dir: Path) -> tuple[dict[str, Any], pd.DataFrame]:
    settings: dict[str, Any] = json.loads((sweep_dir / "sweep.json").read_text())
    return settings, pd.read_parquet(sweep_dir / "points.parquet")


def build_capacity_report(sweep_dir: str | os.PathLike[str]) -> Path:
    """Analyse the sweep in `sweep_dir`, write capacity.json and report.html; the report's path."""
    base = Path(sweep_dir)
    settings, points = load_sweep(base)
    varied = [v["path"] for v in settings["vary"]]
    result = analyse(points, varied, settings.get("size_path"), float(settings["headroom"]))
    (base / "capacity.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
    out = base / "report.html"
    tmp = out.with_name("report.html.tmp")
    tmp.write_text(render(base, settings, points, result), encoding="utf-8")
    os.replace(tmp, out)
    return out
