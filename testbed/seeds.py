"""`testbed seeds SCENARIO --count N`: a fault campaign, one scenario across N seeds.

A seed passes when the audit finds no safety violation. Passing seeds leave nothing on disk but
a line in campaign.json; a failing seed writes its full run record to DIR/seed-N, so it can be
inspected, re-rendered or shrunk, and the command that reproduces it is printed. Exit codes:
0 every seed passed, 1 a seed failed, 2 bad input (a bad flag, or a Dask scheduler that cannot
be reached), 3 the campaign was cut short (Ctrl-C, SIGTERM, or its Dask scheduler or a pool
worker went away): the seeds that finished are in campaign.json with the reason and how many did
not run.

Seeds run on a local process pool (`--jobs`), or on a Dask cluster with `--scheduler
tcp://HOST:8786` (testbed/executors.py); either way the same seeds give the same campaign.json
but for the machine's side (`sim.campaign.WALL_FIELDS`).
"""

from __future__ import annotations

import json
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from scenarios.loader import LoadedScenario, ScenarioError, load_scenario
from sim.campaign import CampaignJob, SeedOutcome
from testbed.executors import ExecutorError, ExecutorLost, check_executor, default_jobs
from testbed.judge import run_seeds
from testbed.run import RUNS, BugOption, bug_flags, with_bugs

MAX_SEED = 2**63


class Terminated(KeyboardInterrupt):
    """SIGTERM during a campaign, raised where Ctrl-C's KeyboardInterrupt would be."""


@contextmanager
def _sigterm_stops_like_ctrl_c() -> Iterator[None]:
    """`kill PID`, or a CI job's time limit, stops a campaign as Ctrl-C does and keeps the seeds
    that finished. A campaign started in the background (`&` in a script) has Ctrl-C
    ignored, as every background job does, so SIGTERM is how one stops it. On a pool the running
    seeds finish (the workers do not get the signal); in this process (`--jobs 1`) the running
    seed stops at once."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread receives signals
        return

    def stop(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def describe_failure(outcome: SeedOutcome) -> str:
    counts = ", ".join(f"{k} {n}" for k, n in sorted(outcome.counts.items()))
    line = f"seed {outcome.seed} FAILED: {counts}"
    if outcome.first is not None:
        f = outcome.first
        where = "".join(
            [
                f" payment {f.payment_id}" if f.payment_id else "",
                f" seq {f.seq}" if f.seq is not None else "",
            ]
        )
        line += f"; first: {f.kind}{where}: {f.detail}"
    return line


def next_campaign_dir(base: Path, name: str, start: int) -> Path:
    n = 1
    while (base / f"campaign-{name}-{start}-{n}").exists():
        n += 1
    return base / f"campaign-{name}-{start}-{n}"


def _bad_input(err: Console, line: str) -> None:
    err.print(line, markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def seeds(
    scenario: Annotated[Path, typer.Argument(help="a scenario YAML file")],
    count: Annotated[int, typer.Option(help="how many seeds to run")],
    start: Annotated[
        int | None, typer.Option(help="first seed (default: the scenario's seed)")
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(help="local worker processes (default: one per CPU; not with --scheduler)"),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(help="run the seeds on a Dask cluster at tcp://HOST:8786", metavar="ADDR"),
    ] = None,
    bug: BugOption = None,
    out: Annotated[
        Path | None,
        typer.Option(help="campaign directory (default runs/campaign-NAME-START-N)"),
    ] = None,
    shrink: Annotated[
        bool, typer.Option("--shrink", help="shrink the first failing seed to DIR/shrunk.yaml")
    ] = False,
) -> None:
    """Run a scenario across seeds, on a process pool or a Dask cluster, and audit every seed.

    Exit codes: 0 every seed passed, 1 a seed failed, 2 bad input, 3 cut short (Ctrl-C, SIGTERM,
    or the cluster or a pool worker went away; campaign.json holds the seeds that finished).
    """
    err = Console(stderr=True)
    console = Console()
    try:
        loaded = with_bugs(load_scenario(scenario), bug)
    except ScenarioError as e:
        for line in e.lines[:-1]:
            err.print(line, markup=False, highlight=False, soft_wrap=True)
        _bad_input(err, e.lines[-1])
    except ValueError as e:
        _bad_input(err, str(e))
    first = loaded.scenario.seed if start is None else start
    if count < 1:
        _bad_input(err, f"--count: must be at least 1, got {count}")
    try:
        check_executor(jobs, scheduler)
    except ExecutorError as e:
        _bad_input(err, str(e))
    if first < 0 or first + count > MAX_SEED:
        _bad_input(err, "--start: seeds must lie between 0 and 2^63-1")
    campaign_dir = out if out is not None else next_campaign_dir(RUNS, loaded.name, first)
    if campaign_dir.exists() and not campaign_dir.is_dir():
        _bad_input(err, f"--out: {campaign_dir} exists and is not a directory")
    if scheduler is not None:
        campaign_dir = campaign_dir.resolve()  # failing seeds are written by workers elsewhere
    created = not campaign_dir.exists()
    campaign_dir.mkdir(parents=True, exist_ok=True)
    workers = default_jobs() if jobs is None else jobs
    try:
        summary = run_campaign(loaded, scenario, range(first, first + count), workers, scheduler,
                               bug, campaign_dir, console)  # fmt: skip
    except ExecutorError as e:  # the cluster cannot be reached: raised before any seed runs
        if created:
            shutil.rmtree(campaign_dir)
        _bad_input(err, str(e))
    recorded = [f["run_dir"] for f in summary["failures"] if f["run_dir"]]
    if shrink and recorded:
        from testbed.shrink import shrink_run

        shrink_run(Path(recorded[0]), campaign_dir / "shrunk.yaml", console)
    elif shrink and summary["failures"]:
        console.print("nothing to shrink: the failing seeds crashed before their audit")
    if summary.get("interrupted"):
        raise typer.Exit(3)
    raise typer.Exit(1 if summary["failed"] else 0)


def run_campaign(
    loaded: LoadedScenario,
    path: Path,
    seed_range: range,
    jobs: int,
    scheduler: str | None,
    bug: list[str] | None,
    campaign_dir: Path,
    console: Console,
) -> dict[str, Any]:
    """Run the seeds with a progress bar, print each failure, write campaign.json.

    With a `scheduler`, `jobs` is unused: the cluster's workers decide how many seeds run at once.
    """
    from reports.campaign_report import build_campaign_report, write_seeds_csv
    from sim.campaign import campaign_summary

    job = CampaignJob(loaded.scenario, loaded.name, campaign_dir)

    def reproduce(seed: int) -> str:
        return f"testbed run {path} --seed {seed}{bug_flags(bug)}"

    outcomes: list[SeedOutcome] = []
    interrupted: str | None = None
    started = time.perf_counter()
    with (
        Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("seeds, {task.fields[failed]} failed"),
            TimeElapsedColumn(),
            console=console,
        ) as bar,
        _sigterm_stops_like_ctrl_c(),
    ):
        where = f"on {scheduler}" if scheduler else f"{jobs} jobs"
        task = bar.add_task(f"{loaded.name}, {where}", total=len(seed_range), failed=0)
        try:
            for outcome in run_seeds(job, seed_range, jobs, scheduler):
                outcomes.append(outcome)
                failed = sum(not o.ok for o in outcomes)
                bar.update(task, advance=1, failed=failed)
                if not outcome.ok:
                    # soft_wrap: a reproduce command broken over two lines cannot be pasted
                    say = partial(bar.console.print, markup=False, highlight=False, soft_wrap=True)
                    say(describe_failure(outcome))
                    if outcome.run_dir:
                        say(f"  run record: {outcome.run_dir}")
                    say(f"  reproduce:  {reproduce(outcome.seed)}")
        except ExecutorLost as e:  # what finished stands and is written; the rest never ran
            interrupted = str(e)
        except Terminated:
            interrupted = "stopped by SIGTERM"
        except KeyboardInterrupt:  # likewise: hours of finished seeds are not thrown away
            interrupted = "stopped by the user (Ctrl-C)"
    summary = campaign_summary(
        outcomes,
        scenario=loaded.name,
        bugs=list(loaded.scenario.bugs),
        jobs=None if scheduler else jobs,
        scheduler=scheduler,
        wall=time.perf_counter() - started,
        reproduce=reproduce,
    )
    if interrupted is not None:
        done = {o.seed for o in outcomes}
        summary["interrupted"] = {
            "reason": interrupted,
            "seeds_not_run": len(seed_range) - len(outcomes),
            "first_not_run": next((s for s in seed_range if s not in done), None),
        }
    # A long campaign outlives many things; a directory removed meanwhile must not cost the summary.
    campaign_dir.mkdir(parents=True, exist_ok=True)
    (campaign_dir / "campaign.json").write_text(
        json.dumps(summary, indent=2, sort_keys=True) + "\n"
    )
    write_seeds_csv(campaign_dir, [_seed_row(o) for o in outcomes])
    build_campaign_report(campaign_dir)
    _print_summary(summary, campaign_dir, console)
    return summary


def _seed_row(o: SeedOutcome) -> dict[str, Any]:
    findings = "; ".join(f"{k} {n}" for k, n in sorted(o.counts.items()))
    return {"seed": o.seed, "ok": o.ok, "payments": o.payments, "ack_p99": o.ack_p99,
            "posted_p99": o.posted_p99, "findings": findings}  # fmt: skip


def _ms(value: object) -> str:
    return "-" if not isinstance(value, float) else f"{value * 1000:.1f} ms"


def _print_summary(summary: dict[str, Any], campaign_dir: Path, console: Console) -> None:
    from rich.table import Table

    table = Table(title=f"campaign {summary['scenario']}")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("seeds run", str(summary["run"]))
    table.add_row("passed", str(summary["passed"]))
    table.add_row("failed", str(summary["failed"]))
    for kind, n in summary["failures_by_kind"].items():
        table.add_row(f"  seeds with {kind}", str(n))
    for name in ("ack_p99", "posted_p99"):
        spread = summary["latency_across_seeds"][name]
        table.add_row(
            f"{name} across seeds (p50 / p99)", f"{_ms(spread['p50'])} / {_ms(spread['p99'])}"
        )
    table.add_row(
        "wall", f"{summary['wall_seconds']:.1f} s ({summary['seeds_per_minute']} seeds/min)"
    )
    console.print(table)
    if cut := summary.get("interrupted"):
        console.print(
            f"campaign cut short: {cut['reason']}; {cut['seeds_not_run']} seeds did not run "
            f"(from seed {cut['first_not_run']} on, not all consecutive)",
            markup=False,
        )
    console.print(f"campaign summary: {campaign_dir / 'campaign.json'}", markup=False)
    console.print(f"campaign report:  {campaign_dir / 'report.html'}", markup=False)


def register(app: typer.Typer) -> None:
    """`seeds` and its companion `shrink` (testbed/shrink.py)."""
    from testbed.shrink import shrink_cmd

    app.command("seeds")(seeds)
    app.command("shrink")(shrink_cmd)
