"""The `testbed` command line: wires scenarios to a runtime and runs to reports.

Each command lives in its own module (testbed/commands.py lists them); a module keeps its heavy
imports (simpy, fastapi, pandas) inside the command function, so `testbed --help` stays fast.
Exit codes: 0 pass, 1 a gate or audit failed, 2 bad input or error.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Payments Testbed: simulate and load-test payment infrastructure, then audit it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Payments Testbed: simulate and load-test payment infrastructure, then audit it."""


def _register() -> None:
    from testbed import commands

    commands.register(app)


def main() -> None:
    _register()
    app()
