"""Charts for the HTML reports, drawn with matplotlib and embedded as PNG data URIs.

Figures are built with the object API (`Figure`, no pyplot), so there is no global state and
charts can be drawn from any thread or worker. The PNGs carry no metadata, so the same run gives
the same bytes. Every chart of a run that changes over time shades the fault windows, so a
latency spike can be read against the crash or partition that caused it.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from reports.metrics import Samples

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
_FAULT_COLOURS = ("#f4a261", "#e76f51", "#8ab17d", "#b5838d", "#6d6875", "#2a9d8f", "#e9c46a")


def figure(width: float = 10.0, height: float = 3.6, rows: int = 1, cols: int = 1) -> Figure:
    fig = Figure(figsize=(width, height * rows), dpi=100, layout="constrained")
    fig.subplots(rows, cols, squeeze=False)
    return fig


def png(fig: Figure) -> str:
    """The figure as a `data:image/png;base64,...` URI."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def bucket_width(span: float, buckets: int = 120) -> float:
    """A round bucket width (1, 2 or 5 times a power of ten) giving about `buckets` buckets."""
    raw = max(span, 1e-3) / buckets
    power = 10 ** math.floor(math.log10(raw))
    return float(next(m * power for m in (1, 2, 5, 10) if m * power >= raw))


def shade_faults(ax: Axes, faults: pd.DataFrame, t0: float) -> None:
    """Each fault window as a shaded span (an instant fault as a line), one legend entry a kind."""
    colours: dict[str, str] = {}
    for start, end, kind in faults[["start", "end", "kind"]].itertuples(index=False):
        new = kind not in colours
        colour = colours.setdefault(kind, _FAULT_COLOURS[len(colours) % len(_FAULT_COLOURS)])
        label = f"fault: {kind}" if new else None
        if math.isnan(end):
            ax.axvline(start - t0, color=colour, linewidth=1.2, label=label)
        else:
            ax.axvspan(start - t0, end - t0, color=colour, alpha=0.22, linewidth=0, label=label)


def latency_over_time(
    samples: Mapping[str, Samples], faults: pd.DataFrame, t0: float, span: float
) -> str:
    """p50, p95 and p99 of each latency kind per time bucket (by when its clock started)."""
    width = bucket_width(span)
    kinds = list(samples)
    fig = figure(rows=math.ceil(len(kinds) / 2), cols=2, height=3.0)
    axes = fig.axes
    for ax, kind in zip(axes, kinds, strict=False):
        at, seconds = samples[kind]
        ax.set_title(f"{kind} latency", fontsize=11)
        ax.set_xlabel("seconds since start")
        ax.set_ylabel("ms")
        shade_faults(ax, faults, t0)
        if len(seconds):
            bucket = np.floor((at - t0) / width).astype(np.int64)
            levels = np.array([0.5, 0.95, 0.99])
            q = pd.Series(seconds * 1000).groupby(bucket).quantile(levels).unstack()
            x = q.index.to_numpy() * width
            for colour, (col, name) in zip(PALETTE, [(0.5, "p50"), (0.95, "p95"), (0.99, "p99")],
                                           strict=False):  # fmt: skip
                ax.plot(x, q[col].to_numpy(), color=colour, linewidth=1.1, label=name)
            positive = seconds[seconds > 0]
            if len(positive) and positive.max() / max(np.median(positive), 1e-9) > 50:
                ax.set_yscale("log")
        else:
            ax.text(0.5, 0.5, "no samples", transform=ax.transAxes, ha="center")
        ax.legend(fontsize=8, loc="upper right")
        ax.grid(alpha=0.3)
    for ax in axes[len(kinds) :]:
        ax.set_visible(False)
    return png(fig)


def rate_over_time(
    series: Mapping[str, np.ndarray], faults: pd.DataFrame, t0: float, span: float, title: str
) -> str:
    """Events per second per time bucket, one line per named series of event times."""
    width = bucket_width(span)
    fig = figure()
    ax = fig.axes[0]
    shade_faults(ax, faults, t0)
    edges = np.arange(0.0, span + width, width)
    for colour, (name, times) in zip(PALETTE, series.items(), strict=False):
        counts, _ = np.histogram(times - t0, bins=edges)
        ax.step(edges[:-1], counts / width, where="post", color=colour, linewidth=1.1, label=name)
    ax.set_title(title, fontsize=11)
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("per second")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    return png(fig)


def node_series(
    nodes: pd.DataFrame, column: str, faults: pd.DataFrame, t0: float, title: str
) -> str:
    """One column of the nodes table over time: a line per node, or per role when there are
    many nodes (the role is the name without its number: gateway-3 -> gateway)."""
    fig = figure(height=3.2)
    ax = fig.axes[0]
    shade_faults(ax, faults, t0)
    frame = nodes[["at", "node", column]]
    names = sorted(frame["node"].unique())
    if len(names) > 8:
        frame = frame.assign(node=frame["node"].str.replace(r"-\d+$", "", regex=True))
        how = "mean" if column == "utilization" else "sum"
        frame = frame.groupby(["at", "node"], as_index=False).agg({column: how})
        title += f" (per role, {how} over its nodes)"
    wide = frame.pivot_table(index="at", columns="node", values=column, aggfunc="mean")
    for i, name in enumerate(wide.columns):
        colour = PALETTE[i % len(PALETTE)]
        ax.plot(wide.index - t0, wide[name], color=colour, linewidth=1.0, label=str(name))
    ax.set_title(title, fontsize=11)
    ax.set_xlabel("seconds since start")
    ax.grid(alpha=0.3)
    if len(wide.columns):  # a column no node sampled (all NaN) has no line to name
        ax.legend(fontsize=8, loc="upper right", ncol=2)
    return png(fig)


def stage_bars(names: Sequence[str], stats: Sequence[Mapping[str, float]]) -> str:
    """p50, p95 and p99 of each stage as grouped horizontal bars, in milliseconds."""
    fig = figure(height=max(2.2, 0.75 * len(names) + 0.8))
    ax = fig.axes[0]
    y = np.arange(len(names))
    for i, key in enumerate(("p50", "p95", "p99")):
        values = [s.get(key, math.nan) * 1000 for s in stats]
        ax.barh(y + (i - 1) * 0.26, values, height=0.26, color=PALETTE[i], label=key)
    ax.set_yticks(y, list(names))
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("ms (log scale)")
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=8, loc="lower right")
    return png(fig)
