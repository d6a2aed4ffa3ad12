"""Load a scenario file, or fail with one line per problem naming the file, field and rule.

pydantic's own error text is several lines per error with a URL; a person fixing a YAML file
wants `scenarios/x.yaml: workload.rate: must be a rate like '1500/s'`, so errors are reformatted
here. The catalog (the scenarios that ship) lives next to this module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from scenarios.fraud import UNKNOWN_PATTERN
from scenarios.schema import Scenario

HERE = Path(__file__).resolve().parent
CATALOG_DIRS = (HERE, HERE / "catalog")
SCHEMA_FILE = HERE / "scenario.schema.json"

_MESSAGES = {
    "extra_forbidden": "unknown field",
    "missing": "required field is missing",
    "model_type": "must be a mapping of fields",
    "list_type": "must be a list",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
}
_UNKNOWN_KEY: dict[tuple[int | str, ...], str] = {("workload", "fraud"): UNKNOWN_PATTERN}
"""Where an unknown key is more than a misspelt field, what it is instead (by parent path)."""


class ScenarioError(ValueError):
    """A scenario cannot be used; `lines` are the one-line problems, file first."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


@dataclass(frozen=True, slots=True)
class LoadedScenario:
    name: str
    path: Path
    scenario: Scenario


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _rule(error: Any, loc: tuple[int | str, ...]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden" and loc[:-1] in _UNKNOWN_KEY:
        return _UNKNOWN_KEY[loc[:-1]]
    if kind in _MESSAGES:
        return _MESSAGES[kind]
    msg = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    return msg[:1].lower() + msg[1:]


def format_errors(source: str, exc: ValidationError) -> list[str]:
    lines = []
    for error in exc.errors():
        # A discriminated union adds its tag (`crash`) to the path: drop it, it is not a field.
        loc = tuple(p for p in error["loc"] if p not in ("crash", "latency"))
        lines.append(f"{source}: {_field_path(loc)}: {_rule(error, loc)}")
    return lines


def parse_scenario(data: Any, source: str) -> Scenario:
    if not isinstance(data, dict):
        raise ScenarioError([f"{source}: (top level): must be a mapping of fields"])
    try:
        return Scenario.model_validate(data)
    except ValidationError as e:
        raise ScenarioError(format_errors(source, e)) from None


def load_scenario(path: str | Path) -> LoadedScenario:
    """Read and validate a YAML scenario file; ScenarioError on any problem."""
    p = Path(path)
    source = str(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError([f"{source}: no such file"]) from None
    except OSError as e:
        raise ScenarioError([f"{source}: cannot read: {e.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or "not valid YAML"
        raise ScenarioError([f"{source}: {where}{problem}"]) from None
    return LoadedScenario(p.stem, p, parse_scenario(data, source))


def resolved_yaml(scenario: Scenario) -> str:
    """The scenario with every default filled in, as the run record stores it."""
    data = scenario.model_dump(mode="json")
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def catalog() -> list[Path]:
    """The scenario files that ship, sorted by name."""
    found = [p for d in CATALOG_DIRS if d.is_dir() for p in d.glob("*.yaml")]
    return sorted(found, key=lambda p: p.stem)


def json_schema() -> str:
    """The JSON Schema for editors (committed as scenario.schema.json; a test keeps it current)."""
    schema = Scenario.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Payments Testbed scenario"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
