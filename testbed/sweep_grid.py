"""`--vary PATH=LO:HI:STEPS` and `--vary PATH=a,b,c`: a sweep's grid, checked before it runs.

A path names a field of the scenario schema in dots (`workload.rate`,
`topology.gateway.replicas`, `topology.bank_partners[0].statement_delay`). It is resolved
against the scenario with every default filled in, so any field the schema has can be varied
and a misspelt one is refused with the fields that do exist. Every point's scenario is built and
validated up front: a sweep that would fail at point 17 fails before point 1.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import yaml

from scenarios.loader import ScenarioError, parse_scenario
from scenarios.schema import Scenario

_PART = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)$")
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_RANGE = re.compile(rf"^({_NUMBER}):({_NUMBER}):(\d+)$")


class GridError(ValueError):
    """A --vary flag is unusable; the message names it and the rule."""


@dataclass(frozen=True)
class Vary:
    flag: str
    path: str
    values: tuple[Any, ...]


def _steps(path: str) -> list[str | int]:
    out: list[str | int] = []
    for part in path.split("."):
        m = _PART.match(part)
        if m is None:
            raise ValueError(part)
        out.append(m.group(1))
        out += [int(i) for i in re.findall(r"\[(\d+)\]", m.group(2))]
    return out


def resolve(data: dict[str, Any], path: str, flag: str) -> Any:
    """The value at `path` in the resolved scenario; GridError naming what exists instead."""
    try:
        steps = _steps(path)
    except ValueError:
        raise GridError(
            f"{flag}: {path!r} is not a field path like topology.gateway.replicas"
        ) from None
    node: Any = data
    walked = ""
    for step in steps:
        if isinstance(step, int):
            if not isinstance(node, list) or step >= len(node):
                size = len(node) if isinstance(node, list) else 0
                raise GridError(f"{flag}: {walked}[{step}] does not exist ({walked} has "
                                f"{size} items)")  # fmt: skip
            node = node[step]
            walked += f"[{step}]"
            continue
        if not isinstance(node, dict) or step not in node:
            where = walked or "the scenario"
            fields = ", ".join(node) if isinstance(node, dict) else "no fields"
            raise GridError(f"{flag}: {path} is not in the scenario schema ({where} has: {fields})")
        node = node[step]
        walked = f"{walked}.{step}" if walked else step
    if isinstance(node, dict | list):
        raise GridError(f"{flag}: {path} is a section, not a value; vary one of its fields")
    return node


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    steps = _steps(path)
    node: Any = data
    for step in steps[:-1]:
        node = node[step]
    node[steps[-1]] = value


def parse_vary(flag_value: str, data: dict[str, Any]) -> Vary:
    """One --vary flag against the resolved scenario `data`."""
    path, sep, spec = flag_value.partition("=")
    path, spec = path.strip(), spec.strip()
    flag = f"--vary {flag_value}"
    if not sep or not path or not spec:
        raise GridError(f"--vary: {flag_value!r} must be PATH=LO:HI:STEPS or PATH=a,b,c")
    current = resolve(data, path, flag)
    if ":" in spec:
        m = _RANGE.match(spec)
        if m is None:
            raise GridError(f"{flag}: a range must be numeric LO:HI:STEPS, e.g. 100:2000:5")
        lo, hi, steps = float(m.group(1)), float(m.group(2)), int(m.group(3))
        if steps < 1 or hi < lo or (steps > 1 and hi == lo):
            raise GridError(f"{flag}: the range is empty (LO must be below HI and STEPS at "
                            "least 1; STEPS 1 takes LO alone)")  # fmt: skip
        values: list[Any] = [float(v) for v in np.linspace(lo, hi, steps)] if steps > 1 else [lo]
        if isinstance(current, int) and not isinstance(current, bool):
            if any(not float(v).is_integer() for v in values):
                raise GridError(f"{flag}: {path} is a whole number; choose LO, HI and STEPS "
                                "whose steps are whole (e.g. 1:8:8)")  # fmt: skip
            values = [int(v) for v in values]
        else:
            values = [round(v, 9) for v in values]
    else:
        items = [item.strip() for item in spec.split(",")]
        if any(not item for item in items):
            raise GridError(f"{flag}: a list needs a value between every two commas")
        values = [yaml.safe_load(item) for item in items]
    if len(set(map(repr, values))) != len(values):
        raise GridError(f"{flag}: a value is repeated")
    return Vary(flag, path, tuple(values))


@dataclass(frozen=True)
class Point:
    index: int
    values: dict[str, Any]
    scenario: Scenario


def build_grid(scenario: Scenario, flags: list[str]) -> tuple[list[Vary], list[Point]]:
    """The cartesian product of the flags, in flag order, every point validated."""
    if not flags:
        raise GridError("--vary: give at least one, e.g. --vary workload.rate=100:2000:5")
    data = scenario.model_dump(mode="json")
    varies = [parse_vary(f, data) for f in flags]
    seen: set[str] = set()
    for v in varies:
        if v.path in seen:
            raise GridError(f"{v.flag}: {v.path} is varied twice")
        seen.add(v.path)
    points = []
    for index, combo in enumerate(itertools.product(*(v.values for v in varies))):
        point = scenario.model_dump(mode="json")
        for v, value in zip(varies, combo, strict=True):
            _set(point, v.path, value)
        try:
            built = parse_scenario(point, "sweep")
        except ScenarioError as e:
            culprit = next((v for v in varies if v.path in e.lines[0]), varies[0])
            value = combo[varies.index(culprit)]
            rule = e.lines[0].removeprefix("sweep: ")
            raise GridError(f"{culprit.flag}: the value {value!r} is invalid: {rule}") from None
        points.append(Point(index, dict(zip((v.path for v in varies), combo, strict=True)), built))
    return varies, points


def size_path(varies: list[Vary]) -> str | None:
    """The varied topology size (an integer topology field), for the scalability fit."""
    for v in varies:
        whole = all(isinstance(x, int) and not isinstance(x, bool) for x in v.values)
        if v.path.startswith("topology.") and whole:
            return v.path
    return None
