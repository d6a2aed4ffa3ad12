"""`testbed gate RUN [--baseline DIR] [--junit FILE]`: a regression gate a CI job can trust.

Evaluates the run's SLOs and audit and, with a baseline run of the same scenario, fails on a
regression that is both significant and larger than the minimum effect (reports/gate.py says
how). Exit codes: 0 pass, 1 the gate failed, 2 an error (a directory that is not a run, a
baseline of another scenario or mode, a bad flag), with one line naming the argument and nothing
written.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from reports.gate import GateResult


def parse_fraction(text: str, flag: str, low: float, high: float) -> float:
    """'10%' or '0.1' as 0.1; ValueError naming `flag` outside [low, high]."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise ValueError(f"{flag}: must be a fraction like 0.1 or a percentage like 10%, "
                         f"got {text!r}") from None  # fmt: skip
    if not low <= value <= high:
        raise ValueError(f"{flag}: must lie between {low:g} and {high:g}, got {text!r}")
    return value


def gate(
    run: Annotated[Path, typer.Argument(help="the run directory to judge", metavar="RUN")],
    baseline: Annotated[
        Path | None,
        typer.Option(help="a run of the same scenario to compare with", metavar="RUN_DIR"),
    ] = None,
    junit: Annotated[
        Path | None, typer.Option(help="write the gate as JUnit XML to FILE", metavar="FILE")
    ] = None,
    min_effect: Annotated[
        str, typer.Option(help="smallest regression that fails the gate (10% or 0.1)")
    ] = "10%",
    alpha: Annotated[
        str, typer.Option(help="significance level of the statistical comparisons")
    ] = "0.01",
) -> None:
    """Judge a run: its SLOs, its audit and, with --baseline, regressions against a baseline."""
    from reports.gate import evaluate, write_junit
    from reports.runs import open_run
    from testbed.run import fail_input

    err, console = Console(stderr=True, emoji=False), Console()
    try:
        effect = parse_fraction(min_effect, "--min-effect", 0.0, 10.0)
        level = parse_fraction(alpha, "--alpha", 1e-9, 0.5)
        if junit is not None and junit.is_dir():
            raise ValueError(f"--junit: {junit} is a directory; give a file name")
        candidate = open_run(run, "RUN")
        base = open_run(baseline, "--baseline") if baseline is not None else None
        result = evaluate(candidate, base, effect, level)
    except ValueError as e:  # NotARun too: the message names the argument
        fail_input(err, [str(e)])
    if junit is not None:
        write_junit(junit, result)
    _print(result, console)
    if junit is not None:
        console.print(f"JUnit XML: {junit}", markup=False, soft_wrap=True)
    raise typer.Exit(0 if result.passed else 1)


def _print(result: GateResult, console: Console) -> None:
    from rich.table import Table

    run = result.run
    title = f"gate: {run.name} seed {run.record.seed} ({run.mode})"
    if result.baseline is not None:
        title += f" vs baseline {result.baseline.path} ({result.method} comparison)"
    table = Table(title=title, title_justify="left")
    table.add_column("kind")
    table.add_column("check")
    table.add_column("result")
    table.add_column("", justify="center")
    for c in result.checks:
        mark = "[green]pass[/green]" if c.passed else "[red]FAIL[/red]"
        table.add_row(c.kind, c.name, c.summary.split(": ", 1)[-1], mark)
    console.print(table)
    for c in result.failures:
        console.print(f"\n[red]FAIL[/red] {c.kind} {c.name}", highlight=False)
        console.print(c.explanation or c.summary, markup=False, highlight=False, soft_wrap=True)
    verdict = "[green]gate passed[/green]" if result.passed else (
        f"[red]gate failed[/red]: {len(result.failures)} of {len(result.checks)} checks"
    )  # fmt: skip
    console.print(f"\n{verdict}")


def register(app: typer.Typer) -> None:
    app.command("gate")(gate)
