"""`testbed report DIR...`: (re)build report.html for runs, campaigns and sweeps.

Every run, campaign and sweep writes its report when it finishes; this command rebuilds them
from what is on disk (after an upgrade, or for a directory copied from CI). Exit codes: 0 every
report written, 2 a directory is not a run, campaign or sweep, with one line naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console


def kind_of(directory: Path) -> str | None:
    """'campaign', 'sweep' or 'run' by the file that marks each, None for anything else."""
    for marker, kind in (("campaign.json", "campaign"), ("sweep.json", "sweep"),
                         ("meta.json", "run")):  # fmt: skip
        if (directory / marker).is_file():
            return kind
    return None


def report(
    dirs: Annotated[
        list[Path], typer.Argument(help="run, campaign or sweep directories", metavar="DIR...")
    ],
) -> None:
    """Rebuild report.html for each run, campaign or sweep directory."""
    from reports.runs import NotARun

    err, console = Console(stderr=True, emoji=False), Console()
    kinds = {d: kind_of(d) for d in dirs}
    for d, kind in kinds.items():
        if kind is None:
            err.print(
                f"DIR: {d} is not a run, campaign or sweep directory "
                "(no meta.json, campaign.json or sweep.json)",
                markup=False, highlight=False, soft_wrap=True,
            )  # fmt: skip
            raise typer.Exit(2)
    for d, kind in kinds.items():
        try:
            out = _build(d, kind or "")
        except (ValueError, KeyError, OSError) as e:  # an unreadable record or summary
            line = str(e) if isinstance(e, NotARun) else f"DIR: {d}: {e}"
            err.print(line, markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        console.print(f"{kind} report: {out}", markup=False, soft_wrap=True)


def _build(directory: Path, kind: str) -> Path:
    if kind == "campaign":
        from reports.campaign_report import build_campaign_report

        return build_campaign_report(directory)
    if kind == "sweep":
        from reports.capacity_report import build_capacity_report

        return build_capacity_report(directory)
    from reports.run_report import build_run_report

    return build_run_report(directory)


def register(app: typer.Typer) -> None:
    app.command("report")(report)
