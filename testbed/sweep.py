"""`testbed sweep SCENARIO --vary PATH=LO:HI:STEPS|a,b,c ...`: a grid of runs, a capacity report.

Every grid point is one run of the scenario with the varied fields set, made by the same entry
point as `testbed run` (`run_scenario`, in sim mode by default or `--mode load`), with the same
seed, so the same sweep gives the same points.csv. Points run on a local process pool, or on a
Dask cluster with `--scheduler tcp://HOST:8786` (testbed/executors.py). The sweep directory
holds sweep.json (the settings), points.csv and points.parquet (one row per point),
capacity.json and report.html (reports/capacity.py), and points/NNN, each point's run
directory with its own report.

Exit codes: 0 the report was written, 1 a point crashed or failed its audit (its reproduce
command is printed), 2 bad input (a --vary path not in the schema, an empty or non-numeric
range, an unavailable mode, a bad flag), with one line naming the flag and nothing run.
"""

from __future__ import annotations

import json
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from testbed.run import RUNS, CalibrationOption

if TYPE_CHECKING:
    import pandas as pd

    from scenarios.schema import Scenario
    from sim.calibration import Calibration


@dataclass(frozen=True)
class PointJob:
    index: int
    values: dict[str, Any]
    scenario: Scenario
    name: str
    path: Path
    seed: int
    mode: str
    run_dir: Path
    calibration: Calibration | None = None


def run_point(job: PointJob) -> dict[str, Any]:
    """One grid point, in whatever process the executor chose: its row of points.csv."""
    from reports.capacity import node_roles
    from reports.record import read_table
    from scenarios.loader import LoadedScenario
    from testbed.run import run_scenario

    row: dict[str, Any] = {"point": job.index, "run_dir": f"points/{job.run_dir.name}",
                           **job.values, "seed": job.seed, "error": ""}  # fmt: skip
    try:
        loaded = LoadedScenario(job.name, job.path, job.scenario)
        summary = run_scenario(job.mode, loaded, job.seed, job.run_dir, Console(quiet=True),
                               calibration=job.calibration)  # fmt: skip
        nodes = read_table(job.run_dir, "nodes")
    except Exception as e:  # the system under test crashed: a finding of this point
        row["error"] = traceback.format_exception_only(e)[-1].strip()
        return row
    row.update(summary["metrics"])
    row["audit_ok"] = summary["audit"]["ok"]
    counts = summary["audit"]["counts"]
    row["audit_findings"] = "; ".join(f"{k} {n}" for k, n in sorted(counts.items()) if n)
    row["slos_passed"] = all(s["passed"] for s in summary["slos"])
    row["slos_failed"] = "; ".join(s["slo"] for s in summary["slos"] if not s["passed"])
    row.update(node_roles(nodes, job.scenario.duration))
    return row


def next_sweep_dir(base: Path, name: str, seed: int) -> Path:
    n = 1
    while (base / f"sweep-{name}-{seed}-{n}").exists():
        n += 1
    return base / f"sweep-{name}-{seed}-{n}"


def sweep(
    scenario: Annotated[Path, typer.Argument(help="a scenario YAML file")],
    vary: Annotated[
        list[str],
        typer.Option(help="PATH=LO:HI:STEPS or PATH=a,b,c (repeatable: the grid is their product)"),
    ],
    mode: Annotated[
        str, typer.Option(help="sim (simulated time) or load (real processes)")
    ] = "sim",
    seed: Annotated[int | None, typer.Option(help="overrides the scenario's seed")] = None,
    jobs: Annotated[
        int | None,
        typer.Option(help="local worker processes (default: one per CPU; not with --scheduler)"),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(help="run the points on a Dask cluster at tcp://HOST:8786", metavar="ADDR"),
    ] = None,
    headroom: Annotated[
        str, typer.Option(help="kept below the highest load that met the SLOs (20% or 0.2)")
    ] = "20%",
    out: Annotated[
        Path | None, typer.Option(help="sweep directory (default runs/sweep-NAME-SEED-N)")
    ] = None,
    calibration: CalibrationOption = None,
) -> None:
    """Run the scenario over a grid of values and write a capacity report."""
    from scenarios.loader import ScenarioError, load_scenario
    from testbed.executors import check_executor, default_jobs
    from testbed.gate import parse_fraction
    from testbed.run import check_mode, fail_input, open_calibration
    from testbed.sweep_grid import build_grid, size_path

    err, console = Console(stderr=True, emoji=False), Console()
    try:
        check_mode(mode)
        fitted = open_calibration(mode, calibration)
        loaded = load_scenario(scenario)
        varies, points = build_grid(loaded.scenario, vary)
        room = parse_fraction(headroom, "--headroom", 0.0, 0.9)
        workers = (1 if mode == "load" else default_jobs()) if jobs is None else jobs
        if mode == "load" and (workers > 1 or scheduler is not None):
            flag = "--scheduler" if scheduler is not None else "--jobs"
            raise ValueError(
                f"{flag}: load points run one at a time on this machine (two at once would "
                "share its cores and measure each other)"
            )
        if mode == "load":  # every point's topology, before any point starts a process
            from loadtest.topology import check_topology

            for p in points:
                check_topology(p.scenario)
        check_executor(jobs, scheduler)
        if seed is not None and not 0 <= seed < 2**63:
            raise ValueError("--seed: must be between 0 and 2^63-1")
    except ScenarioError as e:
        fail_input(err, e.lines)
    except ValueError as e:
        fail_input(err, [str(e)])
    the_seed = loaded.scenario.seed if seed is None else seed
    sweep_dir = out if out is not None else next_sweep_dir(RUNS, loaded.name, the_seed)
    if sweep_dir.exists() and not sweep_dir.is_dir():
        fail_input(err, [f"--out: {sweep_dir} exists and is not a directory"])
    settings = {
        "scenario": loaded.name,
        "scenario_path": str(scenario),
        "seed": the_seed,
        "mode": mode,
        "vary": [
            {"flag": f, "path": v.path, "values": list(v.values)}
            for f, v in zip(vary, varies, strict=True)
        ],
        "size_path": size_path(varies),
        "headroom": room,
        "slos": list(loaded.scenario.slos),
        "points": len(points),
        "calibration": None if fitted is None else fitted.meta(),
    }
    points_dir = sweep_dir.resolve() / "points"  # absolute: a Dask worker's cwd differs
    jobs_list = [
        PointJob(p.index, p.values, p.scenario, loaded.name, scenario, the_seed, mode,
                 points_dir / f"{p.index:03d}", fitted)
        for p in points
    ]  # fmt: skip
    rows = _run_points(jobs_list, workers, scheduler, console, err)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / "sweep.json").write_text(json.dumps(settings, indent=2) + "\n")
    frame = points_frame(rows, [v.path for v in varies])
    frame.to_csv(sweep_dir / "points.csv", index=False)
    frame.to_parquet(sweep_dir / "points.parquet", index=False)
    from reports.capacity_report import build_capacity_report

    report = build_capacity_report(sweep_dir)
    _print(json.loads((sweep_dir / "capacity.json").read_text()), console)
    console.print(f"capacity report: {report}", markup=False, soft_wrap=True)
    broken = [r for r in rows if r["error"] or not r.get("audit_ok", True)]
    for r in broken:
        why = r["error"] or f"audit failed ({r['audit_findings']})"
        err.print(f"point {r['point']} ({r['run_dir']}): {why}; reproduce: testbed run "
                  f"{sweep_dir / r['run_dir'] / 'scenario.yaml'} --seed {the_seed}",
                  markup=False, highlight=False, soft_wrap=True)  # fmt: skip
    raise typer.Exit(1 if broken else 0)


def _run_points(
    jobs: list[PointJob], workers: int, scheduler: str | None, console: Console, err: Console
) -> list[dict[str, Any]]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from testbed.executors import ExecutorError, run_jobs

    where = scheduler or f"{workers} local jobs"
    rows: list[dict[str, Any]] = []
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("points"), TimeElapsedColumn(), console=console) as bar:  # fmt: skip
        task = bar.add_task(f"sweep on {where}", total=len(jobs))
        try:
            for _, row in run_jobs(run_point, jobs, workers, scheduler):
                rows.append(row)
                bar.update(task, advance=1)
        except ExecutorError as e:
            err.print(str(e), markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
    return sorted(rows, key=lambda r: r["point"])


def points_frame(rows: list[dict[str, Any]], varied: list[str]) -> pd.DataFrame:
    """points.csv's rows in point order (run directories relative to the sweep directory)."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    for column in [*varied, "error", "slos_failed", "audit_findings"]:
        if column in frame and frame[column].map(type).nunique() > 1:
            frame[column] = frame[column].astype(str)  # mixed values: one type for Parquet
    for column in ("audit_ok", "slos_passed"):
        if column in frame:
            frame[column] = frame[column].fillna(False).astype(bool)
    return frame


def _print(capacity: dict[str, Any], console: Console) -> None:
    from rich.table import Table

    def rate(value: float | None) -> str:
        return "-" if value is None else f"{value:,.1f}/s"

    table = Table(title="capacity", title_justify="left")
    for head in ("curve", "knee", "capacity", "bottleneck", "max at SLOs", "recommended"):
        left = head in ("curve", "bottleneck")
        table.add_column(head, justify="left" if left else "right", overflow="fold")
    for c in capacity["curves"]:
        table.add_row(c["label"], rate(c["knee"]), rate(c["capacity"]), c["bottleneck"] or "-",
                      rate(c["max_load_at_slos"]), rate(c["recommended"]))  # fmt: skip
    console.print(table)
    fit = capacity["usl"]
    if fit is not None:
        peak = fit["peak_n"]
        console.print(
            f"USL: sigma {fit['sigma']['value']:.4g}, kappa {fit['kappa']['value']:.4g}, "
            + (f"N* {peak['value']:.3g}" if peak else "no peak (kappa nil)"),
            markup=False,
        )


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep)
