"""The subcommands, one module each; every module exposes `register(app)`."""

from __future__ import annotations

import importlib

import typer

COMMAND_MODULES = (
    "testbed.run",
    "testbed.scenarios_cmd",
    "testbed.serve",
    "testbed.seeds",
    "testbed.groups",
    "testbed.report",
    "testbed.gate",
    "testbed.compare",
    "testbed.sweep",
    "testbed.calibrate",
    "testbed.fraud_cmd",
)


def register(app: typer.Typer) -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)
