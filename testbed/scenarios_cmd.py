"""`testbed scenarios`: the catalog with one line each, or the JSON Schema for editors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from scenarios.loader import ScenarioError, catalog, json_schema, load_scenario


def scenarios(
    json_schema_: Annotated[
        bool, typer.Option("--json-schema", help="print the scenario JSON Schema and exit")
    ] = False,
) -> None:
    """List the scenario catalog with descriptions."""
    if json_schema_:
        typer.echo(json_schema(), nl=False)
        return
    paths = catalog()
    shown = [_display(p) for p in paths]
    width = max(map(len, shown), default=0)
    for path, name in zip(paths, shown, strict=True):
        try:
            description = load_scenario(path).scenario.description
        except ScenarioError as e:
            description = f"invalid: {e.lines[0]}"
        typer.echo(f"{name:<{width}}  {description}")


def _display(path: Path) -> str:
    """The path as the user would type it: relative to the working directory when inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def register(app: typer.Typer) -> None:
    app.command("scenarios")(scenarios)
