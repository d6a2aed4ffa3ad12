"""Helpers for the seeded sim tests: scenarios derived from the catalog, runs into tmp dirs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from scenarios.loader import parse_scenario
from scenarios.schema import Scenario

QUICKSTART = Path(__file__).resolve().parents[2] / "scenarios" / "quickstart.yaml"


def quickstart_with(**changes: Any) -> Scenario:
    """The quickstart with top-level sections replaced or merged one level deep."""
    data = yaml.safe_load(QUICKSTART.read_text())
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return parse_scenario(data, "test")
