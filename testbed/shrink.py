"""`testbed shrink RUN_DIR`: turn a failing run into the smallest scenario that still fails.

The run directory has everything needed: the resolved scenario (bugs included), the seed in
meta.json and the violation in audit.json. Each trial re-runs that seed in memory and asks
whether the audit still reports the first violation's kind (sim/shrink.py does the search).
The result is written as a short YAML scenario, only the fields that differ from the defaults,
with a header saying what was removed and how to run it, and is run once more from the written
file, so what a person gets is known to fail. Exit codes: 0 written, 1 the written file no
longer fails, 2 bad input.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console

from scenarios.loader import ScenarioError, load_scenario, parse_scenario
from scenarios.schema import Scenario
from sim.shrink import Fails, fault_items, shrink
from testbed.judge import audit_seed


class ShrinkInputError(ValueError):
    """The run directory cannot be shrunk; the message names the file and the reason."""


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ShrinkInputError(f"{path}: no such file (is this a run directory?)") from None
    except json.JSONDecodeError as e:
        raise ShrinkInputError(f"{path}: not valid JSON ({e.msg})") from None


def failing_run(run_dir: Path) -> tuple[Scenario, str, int, str]:
    """(scenario, name, seed, violation kind) of a failing run directory."""
    meta = _read_json(run_dir / "meta.json")
    audit = _read_json(run_dir / "audit.json")
    if meta.get("mode") != "sim" or not isinstance(meta.get("seed"), int):
        raise ShrinkInputError(f"{run_dir}: only sim runs with a seed can be shrunk")
    if not audit.get("violations"):
        raise ShrinkInputError(f"{run_dir}: the audit found no safety violation to shrink")
    try:
        scenario = load_scenario(run_dir / "scenario.yaml").scenario
    except ScenarioError as e:
        raise ShrinkInputError(e.lines[0]) from None
    return (
        scenario,
        str(meta.get("scenario", run_dir.name)),
        meta["seed"],
        audit["violations"][0]["kind"],
    )


def fails_with(kind: str, name: str, seed: int) -> Fails:
    def fails(scenario: Scenario) -> bool:
        return audit_seed(scenario, name, seed).counts.get(kind, 0) > 0

    return fails


def shrunk_yaml(scenario: Scenario, header: list[str]) -> str:
    """Only what differs from the defaults, short mappings on one line, a comment header.
    SLOs are left out: the file reproduces a safety violation, and latency objectives mean
    nothing at a halved workload."""
    data = scenario.model_dump(mode="json", exclude_defaults=True, exclude={"slos"})
    data["seed"] = scenario.seed
    first: tuple[str, ...] = ("description", "seed", "duration", "bugs")
    ordered = {k: data[k] for k in first if k in data}
    ordered.update({k: v for k, v in data.items() if k not in ordered})
    body = yaml.safe_dump(_kind_first(ordered), sort_keys=False, default_flow_style=None, width=100)
    return "".join(f"# {line}\n" for line in header) + body


def _kind_first(value: Any) -> Any:
    """Faults read as `{kind: failover, at: 3s, ...}`: the kind says what the rest means."""
    if isinstance(value, dict):
        first = {"kind": value["kind"]} if "kind" in value else {}
        return first | {k: _kind_first(v) for k, v in value.items() if k != "kind"}
    if isinstance(value, list):
        return [_kind_first(v) for v in value]
    return value


def _faults_and_duration(scenario: Scenario) -> str:
    n = len(fault_items(scenario.faults))
    return f"{n} fault{'' if n == 1 else 's'}, {scenario.duration:g}s"


def shrink_run(run_dir: Path, out: Path, console: Console) -> bool:
    """Shrink the failing run in `run_dir` into `out`; True when the written file still fails."""
    scenario, name, seed, kind = failing_run(run_dir)
    fails = fails_with(kind, name, seed)
    console.print(f"shrinking {run_dir} (seed {seed}, {kind}): each trial re-runs the seed")
    with console.status("shrinking..."):
        result = shrink(scenario, fails, seed=seed)
    small = result.scenario.model_copy(
        update={
            "seed": seed,
            "description": f"{name} seed {seed} shrunk: still fails the audit with {kind}",
        }
    )
    before, after = _faults_and_duration(scenario), _faults_and_duration(small)
    header = [
        f"Shrunk from {run_dir} in {result.trials} trials: {before} -> {after}.",
        *(f"  {step}" for step in result.steps),
        f"Reproduce: testbed run {out} --seed {seed}",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(shrunk_yaml(small, header))
    reloaded = parse_scenario(yaml.safe_load(out.read_text()), str(out))
    still = fails(reloaded)
    console.print(f"shrunk in {result.trials} trials: {before} -> {after}", markup=False)
    for step in result.steps:
        console.print(f"  {step}", markup=False)
    console.print(f"shrunk scenario: {out}", markup=False, soft_wrap=True)
    if still:
        console.print(f"reproduce: testbed run {out} --seed {seed}", markup=False, soft_wrap=True)
    else:
        console.print(f"[red]the written scenario no longer fails with {kind}[/red]")
    return still


def shrink_cmd(
    run_dir: Annotated[Path, typer.Argument(help="a failing sim run directory")],
    out: Annotated[
        Path | None, typer.Option(help="where to write the scenario (default RUN_DIR/shrunk.yaml)")
    ] = None,
) -> None:
    """Shrink a failing run's faults and workload to a small scenario that still fails."""
    err = Console(stderr=True)
    if not run_dir.is_dir():
        err.print(f"{run_dir}: not a run directory", markup=False, soft_wrap=True)
        raise typer.Exit(2)
    try:
        ok = shrink_run(run_dir, out or run_dir / "shrunk.yaml", Console())
    except ShrinkInputError as e:
        err.print(str(e), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    raise typer.Exit(0 if ok else 1)
