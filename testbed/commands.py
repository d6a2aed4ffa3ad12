"""Registers each subcommand with the typer app; one line per command module."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    __import__("testbed.serve", fromlist=["register"]).register(app)
    __import__("testbed.run", fromlist=["register"]).register(app)
    __import__("testbed.scenarios_cmd", fromlist=["register"]).register(app)
    del app  # commands are added here as their modules land
