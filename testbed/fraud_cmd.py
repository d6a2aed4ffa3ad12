"""`testbed fraud train`: train the fraud model on generated, labelled traffic and save it.

Generates a scenario's legitimate payments and its `workload.fraud` patterns (default scenario:
the catalog's fraud-mix), computes each payment's online features as the fraud consumer does,
fits a gradient-boosted classifier on the first 70% (by time), picks the threshold that reaches
--recall on the rest, prints the model's and the rules baseline's rates on that validation part,
and writes the model directory (docs/compliance.md, "Fraud scoring"). Exit codes: 0 written,
2 bad input (one line naming the flag or the file) or data that cannot train a model.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console

if TYPE_CHECKING:
    from testbed.fraud_train import Training

DEFAULT_SEED = 1000
"""Not a seed a run usually takes: a model is judged on traffic it was not trained on."""
DEFAULT_DURATION = 600.0
"""Ten minutes of traffic: at fraud-mix's rates, ~60,000 payments and ~4,000 of them fraud."""

fraud_app = typer.Typer(
    help="Fraud scoring: train the model the fraud consumer loads.",
    no_args_is_help=True,
    add_completion=False,
)


@fraud_app.command("train")
def train(
    out: Annotated[
        Path, typer.Option("-o", "--out", help="model directory to write", metavar="DIR")
    ],
    scenario: Annotated[
        Path | None,
        typer.Option(
            help="scenario whose workload (with workload.fraud) generates the data "
            "(default: the catalog's fraud-mix.yaml)",
            metavar="FILE",
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option(min=0, max=2**63 - 1, help="seed of the generated traffic")
    ] = DEFAULT_SEED,
    payments: Annotated[
        int | None,
        typer.Option(min=100, help="generate this many legitimate payments (plus the fraud)"),
    ] = None,
    duration: Annotated[
        str | None,
        typer.Option(
            help="generate this much traffic, e.g. '30min' (default: 10min)",
            metavar="D",
        ),
    ] = None,
    recall: Annotated[
        float,
        typer.Option(min=0.01, max=1.0, help="recall the threshold must reach on validation"),
    ] = 0.8,
) -> None:
    """Generate labelled payments, train the fraud model, save it with its threshold."""
    from pydantic_core import PydanticCustomError

    from scenarios.loader import HERE, ScenarioError, load_scenario
    from scenarios.units import parse_duration
    from testbed.fraud_train import TrainingError, feature_table, generated_payments
    from testbed.fraud_train import train as fit

    err, console = Console(stderr=True), Console()
    if out.exists() and not out.is_dir():
        _fail(err, f"--out: {out} is a file; give a directory")
    if payments is not None and duration is not None:
        _fail(err, "--payments, --duration: give one of them, not both")
    seconds = None
    if duration is not None:
        try:
            seconds = parse_duration(duration)
        except PydanticCustomError as e:
            _fail(err, f"--duration: {e.message()}")
        if seconds <= 0:
            _fail(err, "--duration: must be longer than 0s")
    path = scenario if scenario is not None else HERE / "catalog" / "fraud-mix.yaml"
    try:
        loaded = load_scenario(path)
    except ScenarioError as e:
        _fail(err, *(f"--scenario: {line}" for line in e.lines))
    workload = loaded.scenario.workload
    if workload.fraud is None:
        _fail(err, f"--scenario: {path}: workload.fraud: missing, so there is no fraud to learn")
    if payments is None and seconds is None:
        seconds = DEFAULT_DURATION
    generated, span = generated_payments(workload, seed, seconds, payments)
    console.print(
        f"generated {len(generated)} payments over {span:.0f}s of {loaded.name} (seed {seed})",
        highlight=False,
    )
    try:
        result = fit(
            feature_table(generated),
            seed,
            recall,
            metadata={"scenario": str(path), "duration": round(span, 3)},
        )
    except TrainingError as e:
        _fail(err, f"--scenario {path}, --seed {seed}: {e}")
    result.model.save(out)
    _print_tables(console, result)
    console.print(
        f"scoring one payment (one thread, this machine): median "
        f"{result.score_seconds[0] * 1e3:.3f} ms, p99 {result.score_seconds[1] * 1e3:.3f} ms",
        highlight=False,
    )
    console.print(f"model: {out} (threshold {result.model.threshold:.4f})", soft_wrap=True)


def _print_tables(console: Console, result: Training) -> None:
    from rich.table import Table

    table = Table(title="fraud model vs rules (validation part)", title_justify="left")
    for head in ("", "rows", "fraud", "flagged", "precision", "recall", "FPR"):
        table.add_column(head, justify="left" if not head else "right")
    fitted = result.fitted
    table.add_row("training part", str(fitted.rows), str(fitted.positives), "", "", "", "")
    for name, r in (("model", result.validation), ("rules", result.rules)):
        table.add_row(
            name,
            str(r.rows),
            str(r.positives),
            str(r.flagged),
            f"{r.precision:.3f}",
            f"{r.recall:.3f}",
            f"{r.fpr:.4f}",
        )
    console.print(table)
    by_pattern = Table(title="recall by pattern (validation part)", title_justify="left")
    for head in ("pattern", "payments", "model", "rules"):
        by_pattern.add_column(head, justify="left" if head == "pattern" else "right")
    for pattern, (count, model_recall, rules_recall) in result.recall_by_pattern.items():
        by_pattern.add_row(pattern, str(count), f"{model_recall:.3f}", f"{rules_recall:.3f}")
    console.print(by_pattern)


def _fail(console: Console, *lines: str) -> NoReturn:
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    app.add_typer(fraud_app, name="fraud")
