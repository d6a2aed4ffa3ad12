"""`testbed compare RUN_A RUN_B`: two runs side by side, on the terminal and as HTML.

Exit codes: 0 the comparison was printed and written, 2 a directory is not a run (one line
naming RUN_A or RUN_B) or --out is a directory. Comparing is not judging: `testbed gate` decides
whether a difference fails.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console


def compare(
    run_a: Annotated[Path, typer.Argument(help="the first run (the baseline)", metavar="RUN_A")],
    run_b: Annotated[Path, typer.Argument(help="the second run", metavar="RUN_B")],
    out: Annotated[
        Path | None,
        typer.Option(help="HTML file to write (default RUN_B/compare.html)", metavar="FILE"),
    ] = None,
) -> None:
    """Print two runs side by side (change is B against A) and write them as HTML with charts."""
    from rich.table import Table

    from reports.compare import build_compare_report, cell, change_text, rows, slo_rows
    from reports.runs import open_run

    err, console = Console(stderr=True, emoji=False), Console()
    target = out if out is not None else run_b / "compare.html"
    try:
        if target.is_dir():
            raise ValueError(f"--out: {target} is a directory; give a file name")
        a, b = open_run(run_a, "RUN_A"), open_run(run_b, "RUN_B")
    except ValueError as e:
        err.print(str(e), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    all_rows = rows(a, b)
    table = Table(title=f"A: {a.path} ({a.name} seed {a.record.seed}, {a.mode})\n"
                        f"B: {b.path} ({b.name} seed {b.record.seed}, {b.mode})",
                  title_justify="left")  # fmt: skip
    for head, justify in (("", "left"), ("A", "right"), ("B", "right"), ("B vs A", "right")):
        table.add_column(head, justify=justify)  # type: ignore[arg-type]
    section = ""
    for r in all_rows:
        if r.section != section:
            section = r.section
            table.add_section()
            table.add_row(f"[bold]{section}[/bold]", "", "", "")
        table.add_row(r.name, cell(r.a, r.unit), cell(r.b, r.unit), change_text(r))
    slos = slo_rows(a, b)
    if slos:
        table.add_section()
        table.add_row("[bold]SLOs[/bold]", "", "", "")
        for name, x, y in slos:
            table.add_row(name, x, y, "")
    console.print(table)
    written = build_compare_report(a, b, target)
    console.print(f"comparison: {written}", markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("compare")(compare)
