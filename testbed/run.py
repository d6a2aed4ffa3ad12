"""`testbed run SCENARIO`: run a scenario, write the run directory, print the verdict.

Exit codes: 0 when the audit and every SLO pass, 1 when one fails, 2 on bad input (a missing
or invalid scenario, an unavailable mode), with one line per problem and no traceback.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from reference_impl.bugs import BUGS, IN_REAL_PROCESSES, valid_names
from scenarios.loader import LoadedScenario, ScenarioError, load_scenario, resolved_yaml
from scenarios.slo import LATENCY_KINDS

if TYPE_CHECKING:
    import pandas as pd

    from scenarios.schema import Scenario
    from sim.calibration import Calibration

RUNS = Path("runs")


def next_run_dir(base: Path, name: str, seed: int) -> Path:
    n = 1
    while (base / f"{name}-{seed}-{n}").exists():
        n += 1
    return base / f"{name}-{seed}-{n}"


def _ms(seconds: Any) -> str:
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "-"
    return f"{seconds * 1000:.1f} ms"


def verdict_tables(summary: dict[str, Any]) -> list[Table]:
    """Latency percentiles, then the checks: throughput, outcomes, audit and each SLO; with
    the compliance checks on, how they did against the labelled fraud."""
    m = summary["metrics"]
    latency = Table(title=f"{summary['scenario']} (seed {summary['seed']}): latency")
    latency.add_column("")
    for head in ("p50", "p95", "p99", "p99.9", "max"):
        latency.add_column(head, justify="right")
    for kind in LATENCY_KINDS:
        latency.add_row(
            kind, *(_ms(m[f"{kind}.{s}"]) for s in ("p50", "p95", "p99", "p999", "max"))
        )
    checks = Table(title="verdict")
    checks.add_column("check")
    checks.add_column("value", justify="right")
    checks.add_column("", justify="center")
    checks.add_row("offered", f"{m['offered']:.1f}/s", "")
    checks.add_row("throughput (acknowledged)", f"{m['throughput']:.1f}/s", "")
    for status, count in summary["payments"].items():
        checks.add_row(f"payments {status}", str(count), "")
    counts = summary["audit"]["counts"]
    found = ", ".join(f"{k} {v}" for k, v in counts.items() if v) or "no violations"
    checks.add_row("audit", found, _mark(summary["audit"]["ok"]))
    for slo in summary["slos"]:
        checks.add_row(f"SLO {slo['slo']}", _slo_value(slo), _mark(slo["passed"]))
    from reports.metrics import generator_row
    from testbed.summary import detection_table, load_tables

    if "generator" in summary:  # a load run's
        label, value, bound = generator_row(summary["generator"])
        checks.add_row(label, value, "[yellow]bound[/yellow]" if bound else "")
        if bound:
            reason = summary["generator"]["reason"]
            checks.caption = f"the load generator was the bottleneck: {reason}"
    detected = detection_table(summary)
    tables = [latency, checks] if detected is None else [latency, checks, detected]
    return [*tables, *load_tables(summary)]


def _slo_value(slo: dict[str, Any]) -> str:
    """The SLO's measured side, in milliseconds for the latency metrics (stored in seconds)."""
    v = slo["left"]
    if v is None:
        return "-"
    return _ms(v) if slo["slo"].startswith(tuple(f"{k}." for k in LATENCY_KINDS)) else f"{v:.4g}"


def _mark(ok: bool) -> str:
    return "[green]pass[/green]" if ok else "[red]FAIL[/red]"


def fail_input(console: Console, lines: list[str]) -> NoReturn:
    """Bad input: each line as written (no markup, never wrapped), then exit 2."""
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(2)


BugOption = Annotated[
    list[str] | None,
    typer.Option("--bug", help="switch on a bug-zoo variant (repeatable; see docs/bug-zoo.md)"),
]


def with_bugs(loaded: LoadedScenario, bugs: list[str] | None) -> LoadedScenario:
    """The scenario with the `--bug` names added to its own `bugs:`; ValueError names the flag."""
    unknown = [b for b in bugs or [] if b not in BUGS]
    if unknown:
        raise ValueError(f"--bug: unknown bug {unknown[0]!r} (valid: {valid_names()})")
    merged = list(dict.fromkeys([*loaded.scenario.bugs, *(bugs or [])]))
    scenario = loaded.scenario.model_copy(update={"bugs": merged})
    return LoadedScenario(loaded.name, loaded.path, scenario)


def bug_flags(bugs: list[str] | None) -> str:
    """`--bug` flags for a reproduce command, in the order given."""
    return "".join(f" --bug {b}" for b in dict.fromkeys(bugs or []))


def run(
    scenario: Annotated[Path, typer.Argument(help="a scenario YAML file")],
    mode: Annotated[
        str, typer.Option(help="sim (simulated time) or load (real processes)")
    ] = "sim",
    seed: Annotated[int | None, typer.Option(help="overrides the scenario's seed")] = None,
    out: Annotated[
        Path | None, typer.Option(help="run directory (default runs/NAME-SEED-N)")
    ] = None,
    bug: BugOption = None,
    store: Annotated[
        str | None,
        typer.Option(help="load: the store URL (default SQLite in the run directory)"),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(help="load: drive this system (its API, docs/api.md) instead of ours"),
    ] = None,
    api_key: Annotated[
        list[str] | None,
        typer.Option(help="load with --target: TENANT:KEY for each of the scenario's tenants"),
    ] = None,
    locust_workers: Annotated[
        int, typer.Option(min=0, max=64, help="load: Locust worker processes (0: one process)")
    ] = 0,
    port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="load: the gateway's port (default: a free one)"),
    ] = None,
    calibration: CalibrationOption = None,
) -> None:
    """Run a scenario, write its run record, audit it and check its SLOs."""
    err = Console(stderr=True)
    console = Console()
    try:
        check_mode(mode)
        load = load_options(mode, store, target, api_key, locust_workers, port)
        fitted = open_calibration(mode, calibration)
    except ValueError as e:
        fail_input(err, [str(e)])
    if seed is not None and not 0 <= seed < 2**63:
        fail_input(err, ["--seed: must be between 0 and 2^63-1"])
    try:
        loaded = load_scenario(scenario)
        loaded = with_bugs(loaded, bug)
    except ScenarioError as e:
        fail_input(err, e.lines)
    except ValueError as e:
        fail_input(err, [str(e)])
    if mode == "load":
        sim_only = sorted(set(loaded.scenario.bugs) - IN_REAL_PROCESSES)
        if sim_only:
            fail_input(
                err,
                [
                    f"--bug {sim_only[0]}: sim mode only (in load mode: "
                    f"{', '.join(sorted(IN_REAL_PROCESSES))})"
                ],
            )
    the_seed = loaded.scenario.seed if seed is None else seed
    run_dir = out if out is not None else next_run_dir(RUNS, loaded.name, the_seed)
    try:
        summary = run_scenario(mode, loaded, the_seed, run_dir, console, load, fitted)
    except ValueError as e:
        fail_input(err, [str(e)])
    for table in verdict_tables(summary):
        console.print(table)
    console.print(f"run directory: {run_dir} (report: {run_dir / 'report.html'})", soft_wrap=True)
    if not summary["passed"]:
        console.print(
            f"[red]failed[/red]; reproduce with: testbed run {scenario} --seed {the_seed}"
            f"{bug_flags(bug)}{f' --calibration {calibration}' if calibration else ''}",
            soft_wrap=True,
        )
        raise typer.Exit(1)


@dataclass(frozen=True)
class LoadOptions:
    """How a load run reaches its system: our processes on `store`, or `target` with `keys`."""

    store: str | None = None
    target: str | None = None
    keys: tuple[str, ...] = ()
    """TENANT:KEY for each of the scenario's tenants (with `target`)."""
    locust_workers: int = 0
    port: int | None = None


def load_options(
    mode: str,
    store: str | None,
    target: str | None,
    api_key: list[str] | None,
    locust_workers: int,
    port: int | None = None,
) -> LoadOptions:
    """The load flags, checked against each other; ValueError names the flag."""
    for flag, value in {"--store": store, "--target": target, "--api-key": api_key}.items():
        if value and mode != "load":
            raise ValueError(f"{flag}: only with --mode load")
    if locust_workers and mode != "load":
        raise ValueError("--locust-workers: only with --mode load")
    if store and target:
        raise ValueError("--store: not with --target (the target keeps its own store)")
    if api_key and not target:
        raise ValueError("--api-key: only with --target (ours are generated)")
    if port is not None and (mode != "load" or target):
        raise ValueError("--port: only with --mode load, for our own processes")
    return LoadOptions(store, target, tuple(api_key or ()), locust_workers, port)


def _target_keys(loaded: LoadedScenario, options: LoadOptions) -> dict[str, str]:
    """tenant -> key for --target, one for every tenant of the scenario (names the flag)."""
    from scenarios.workload import tenant_ids

    keys: dict[str, str] = {}
    for value in options.keys:
        tenant, sep, key = value.partition(":")
        if not sep or not tenant or not key:
            raise ValueError(f"--api-key: expected TENANT:KEY, got {value!r}")
        keys[tenant] = key
    missing = [t for t in tenant_ids(loaded.scenario.workload.tenants) if t not in keys]
    if missing:
        raise ValueError(f"--api-key: no key for tenant {missing[0]!r} of the scenario")
    return keys


CalibrationOption = Annotated[
    Path | None,
    typer.Option(
        help="sim: service times fitted to a load run (testbed calibrate) instead of defaults",
        metavar="FILE",
    ),
]


def open_calibration(mode: str, path: Path | None) -> Calibration | None:
    """The --calibration file, read and checked (ValueError names the flag and the field)."""
    if path is None:
        return None
    if mode != "sim":
        raise ValueError("--calibration: sim mode only (a load run measures the real system)")
    from sim.calibration import load_calibration

    return load_calibration(path)


def check_mode(mode: str) -> None:
    """ValueError naming --mode unless scenarios can run in `mode`."""
    if mode not in ("sim", "load"):
        raise ValueError(f"--mode: must be sim or load, got {mode!r}")


def run_scenario(
    mode: str,
    loaded: LoadedScenario,
    seed: int,
    run_dir: Path,
    console: Console,
    load: LoadOptions | None = None,
    calibration: Calibration | None = None,
) -> dict[str, Any]:
    """One run of a scenario in `mode`, written to `run_dir`; returns its summary. The one entry
    point `testbed run` and every point of `testbed sweep` go through. ValueError (one line)
    when the run cannot start: bad load flags, a system that cannot be started."""
    check_mode(mode)
    if mode == "load":
        return execute_load(loaded, seed, run_dir, console, load or LoadOptions())
    return execute(loaded, seed, run_dir, console, calibration)


def execute_load(
    loaded: LoadedScenario, seed: int, run_dir: Path, console: Console, options: LoadOptions
) -> dict[str, Any]:
    """Run against real processes (or a target), write the record, audit; returns the summary.

    A topology the load runtime cannot honour (loadtest/topology.py), checked before any process
    starts, a system that could not be started, or traffic not sent: ValueError with one line,
    and no process left behind (the load runtime stops everything it started before it raises).
    """
    from loadtest.errors import TrafficError
    from loadtest.run import run_load
    from loadtest.system import SystemError_
    from loadtest.topology import check_topology
    from reference_impl.service.ports import InvalidStoreURL, StoreError

    keys = _target_keys(loaded, options) if options.target else {}
    if not options.target:  # a target runs its own topology
        check_topology(loaded.scenario)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(f"{loaded.name} seed {seed} (load)", total=loaded.scenario.duration)

        def progress(phase: str, done: float, total: float) -> None:
            bar.update(task, description=f"{loaded.name} seed {seed}: {phase}", completed=done,
                       total=total)  # fmt: skip

        try:
            result = run_load(
                loaded.scenario, loaded.name, seed, run_dir, store=options.store,
                target=options.target, target_keys=keys, locust_workers=options.locust_workers,
                port=options.port, progress=progress,
            )  # fmt: skip
        except (InvalidStoreURL, StoreError) as e:
            raise ValueError(f"--store: {e}") from None
        except SystemError_ as e:
            raise ValueError(f"the system could not be started: {e}") from None
        except TrafficError as e:
            raise ValueError(f"the traffic could not run: {e}") from None
    return write_run(run_dir, loaded.scenario, loaded.name, seed, result.tables, result.meta)


def execute(
    loaded: LoadedScenario,
    seed: int,
    run_dir: Path,
    console: Console,
    calibration: Calibration | None = None,
) -> dict[str, Any]:
    """Simulate (with the calibration's service times, if any), write the run record, audit,
    write summary.json; returns the summary."""
    from sim import export
    from sim.run import simulate
    from sim.service_times import DEFAULTS

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.1f}/{task.total:.0f} s simulated"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(f"{loaded.name} seed {seed}", total=loaded.scenario.duration)

        def progress(now: float, horizon: float) -> None:
            bar.update(task, completed=now, total=horizon)

        times = DEFAULTS if calibration is None else calibration.times
        result = simulate(loaded.scenario, seed, progress, times)
    tables = export.tables(result)
    meta = export.meta(result, loaded.name)
    if calibration is not None:
        meta["calibration"] = calibration.meta()
    return write_run(run_dir, loaded.scenario, loaded.name, seed, tables, meta)


def write_run(
    run_dir: Path,
    scenario: Scenario,
    name: str,
    seed: int,
    tables: Mapping[str, pd.DataFrame],
    meta: Mapping[str, Any],
) -> dict[str, Any]:
    """A run's record, audit.json, summary.json and report.html; returns the summary.

    The audit and the report read the record back from disk, so what they judge is what was
    written.
    """
    from reports.audit import audit, write_audit
    from reports.record import load_run, write_run_record
    from reports.run_report import build_run_report
    from testbed.summary import dumps, summarise

    write_run_record(run_dir, tables=tables, meta=meta, scenario_yaml=resolved_yaml(scenario))
    record = load_run(run_dir)
    audited = audit(record)
    write_audit(run_dir, audited)
    summary = summarise(
        scenario,
        name,
        seed,
        tables,
        audited.to_json(),
        mode=meta["mode"],
        start=float(meta.get("started_at", 0.0)),
        meta=meta,
    )
    (run_dir / "summary.json").write_text(dumps(summary))
    build_run_report(run_dir, record, audited.to_json())
    return summary


def register(app: typer.Typer) -> None:
    app.command("run")(run)
