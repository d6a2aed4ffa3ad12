"""`testbed calibrate LOAD_RUN`: the sim's service times fitted to a load run, as a YAML file.

Exit codes: 0 written, 2 the directory is not a load run with stage timings (one line naming
LOAD_RUN) or --out is a directory. `testbed run --calibration FILE` uses what it writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console


def calibrate(
    load_run: Annotated[
        Path, typer.Argument(help="a run of `testbed run --mode load`", metavar="LOAD_RUN")
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "-o", "--out", help="file to write (default LOAD_RUN/calibration.yaml)", metavar="FILE"
        ),
    ] = None,
) -> None:
    """Fit the sim's service times (gateway, commits, consumer batches, client) to a load run."""
    import pandas as pd
    from rich.table import Table

    from reference_impl.timings import TIMINGS_FILE
    from reports.runs import open_run
    from sim.fit import calibration_yaml, fit_run, vars_of
    from sim.service_times import DEFAULTS

    err, console = Console(stderr=True, emoji=False), Console()
    target = out if out is not None else load_run / "calibration.yaml"
    try:
        if target.is_dir():
            raise ValueError(f"--out: {target} is a directory; give a file name")
        run = open_run(load_run, "LOAD_RUN")
        if run.mode != "load":
            raise ValueError(
                f"LOAD_RUN: {load_run} is a {run.mode} run; calibrate fits a load run "
                "(testbed run --mode load)"
            )
        timings_path = load_run / TIMINGS_FILE
        if not timings_path.is_file():
            raise ValueError(
                f"LOAD_RUN: {load_run} has no {TIMINGS_FILE} (a run against --target, whose "
                "stages are not timed, or a run from before they were)"
            )
    except ValueError as e:
        err.print(str(e), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    fit = fit_run(run, pd.read_parquet(timings_path))
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.write_text(calibration_yaml(fit))
    partial.replace(target)

    table = Table(title=f"service times fitted to {load_run} (mean, one item)",
                  title_justify="left")  # fmt: skip
    for head in ("", "default", "fitted", "samples"):
        table.add_column(head, justify="left" if not head else "right")
    fitted, defaults = vars_of(fit.times), vars_of(DEFAULTS)
    for name, value in fitted.items():
        table.add_row(
            name,
            _ms(defaults[name]),
            "default" if name in fit.defaults else _ms(value),
            str(fit.samples.get(name, "")),
        )
    console.print(table)
    console.print(f"calibration: {target}", markup=False, soft_wrap=True)


def _ms(cost: object) -> str:
    from sim.fit import mean_seconds

    if cost is None:
        return "as client"
    if isinstance(cost, int):  # a count (cores, writers), 0 for "not modelled"
        return str(cost)
    return f"{mean_seconds(cost) * 1e3:.3f} ms"


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate)
