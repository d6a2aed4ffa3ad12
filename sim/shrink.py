"""Shrinking: the smallest scenario we can find that still fails the same way with the same seed.

A failing seed of a swarm scenario comes with a dozen faults and thousands of payments, most of
them irrelevant. A person debugs faster from "one ledger crash at 3 s, 40 payments a second for
2 s". The shrinker only ever asks one question, `fails(scenario)`, so it knows nothing about
the sim; the caller answers it by running the seed and looking for the violation kind.

Two steps, each kept only where the failure survives:
1. Faults: delta debugging (Zeller's ddmin) over every fault item at once: each timed and each
   background fault, and each fault family switched on as a whole (background crashes, swarm),
   which is removed by resetting it to its default.
2. Workload: halve duration, rate (with its profile and bursts), accounts, tenants and client
   retries, each again and again while the run still fails.
If the workload shrank, the faults get a second ddmin pass: a smaller run may need fewer.
Every answer is cached by the scenario's JSON, so no variant is run twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from scenarios.fault_specs import Faults
from scenarios.schema import Scenario
from sim.rng import Streams
from sim.swarm import swarm_faults

Fails = Callable[[Scenario], bool]

FaultItem = tuple[tuple[str, ...], int | None]
"""(field path, index) of one element of a fault list, e.g. (("timed",), 2) or
(("background", "poisson"), 0); (field path, None) of a fault family switched on as a whole,
e.g. (("background", "crashes"), None) or (("swarm",), None)."""


@dataclass(frozen=True, slots=True)
class ShrinkResult:
    scenario: Scenario
    trials: int
    """Runs made (cache hits not counted)."""
    steps: list[str]
    """What was removed or halved, in order, for the person reading the result."""


def fault_items(faults: Faults) -> list[FaultItem]:
    """Every fault the scenario turns on: each element of every fault list, and every other
    field of `faults` or of one of its sections that is not at its default. Walking the model
    instead of naming fields means a fault family added to the schema is shrunk too."""
    items: list[FaultItem] = []

    def walk(model: BaseModel, path: tuple[str, ...]) -> None:
        defaults = type(model)()
        for name in type(model).model_fields:
            value, where = getattr(model, name), (*path, name)
            if isinstance(value, list):
                items.extend((where, i) for i in range(len(value)))
            elif isinstance(value, BaseModel) and not path:
                walk(value, where)
            elif value != getattr(defaults, name):
                items.append((where, None))

    walk(faults, ())
    return items


def keep_faults(scenario: Scenario, keep: list[FaultItem]) -> Scenario:
    """The scenario with only the `keep` fault items on (the others removed or defaulted)."""
    kept = set(keep)

    def rebuild(model: BaseModel, path: tuple[str, ...]) -> BaseModel:
        defaults = type(model)()
        update: dict[str, Any] = {}
        for name in type(model).model_fields:
            value, where = getattr(model, name), (*path, name)
            if isinstance(value, list):
                update[name] = [v for i, v in enumerate(value) if (where, i) in kept]
            elif isinstance(value, BaseModel) and not path:
                update[name] = rebuild(value, where)
            elif value != getattr(defaults, name) and (where, None) not in kept:
                update[name] = getattr(defaults, name)
        return model.model_copy(update=update)

    return scenario.model_copy(update={"faults": rebuild(scenario.faults, ())})


def describe_item(faults: Faults, item: FaultItem) -> str:
    """`timed[2] crash`, `background.poisson[0] partition`, `swarm`."""
    path, index = item
    name = ".".join(path)
    if index is None:
        return name
    value: Any = faults
    for part in path:
        value = getattr(value, part)
    return f"{name}[{index}] {getattr(value[index], 'kind', '')}".rstrip()


class _Oracle:
    """`fails` with a cache and a trial count."""

    def __init__(self, fails: Fails) -> None:
        self.fails = fails
        self.cache: dict[str, bool] = {}
        self.trials = 0

    def __call__(self, scenario: Scenario) -> bool:
        key = scenario.model_dump_json()
        if key not in self.cache:
            self.trials += 1
            self.cache[key] = self.fails(scenario)
        return self.cache[key]


def ddmin(items: list[FaultItem], fails: Callable[[list[FaultItem]], bool]) -> list[FaultItem]:
    """A 1-minimal subset of `items` that still fails (every single removal makes it pass),
    assuming `fails(items)`. Tries subsets first, then complements, at doubling granularity."""
    n = 2
    while len(items) >= 2:
        size = len(items) // n
        chunks = [items[i : i + size] for i in range(0, len(items), size)] if size else []
        reduced = False
        for chunk in chunks:
            if fails(chunk):
                items, n, reduced = chunk, 2, True
                break
        if not reduced:
            for chunk in chunks:
                rest = [x for x in items if x not in chunk]
                if fails(rest):
                    items, n, reduced = rest, max(n - 1, 2), True
                    break
        if not reduced:
            if n >= len(items):
                break
            n = min(2 * n, len(items))
    if len(items) == 1 and fails([]):
        return []
    return items


def _halved_workload(scenario: Scenario, knob: str) -> Scenario | None:
    """The scenario with one workload knob halved, or None when it is at its floor."""
    w = scenario.workload
    if knob == "duration":
        value = round(scenario.duration / 2, 3)
        return None if value < 0.5 else scenario.model_copy(update={"duration": value})
    if knob == "rate":
        if w.rate / 2 < 1:
            return None
        update: dict[str, Any] = {
            "rate": round(w.rate / 2, 2),
            "profile": [s.model_copy(update={"rate": round(s.rate / 2, 2)}) for s in w.profile],
            "bursts": [b.model_copy(update={"rate": round(b.rate / 2, 2)}) for b in w.bursts],
        }
    elif knob == "accounts":
        if w.accounts <= 2:
            return None
        update = {"accounts": max(2, w.accounts // 2)}
    elif knob == "tenants":
        if w.tenants <= 1:
            return None
        update = {"tenants": w.tenants // 2}
    elif knob == "retries":
        if w.client.retries == 0:
            return None
        update = {"client": w.client.model_copy(update={"retries": w.client.retries // 2})}
    else:
        raise ValueError(f"unknown workload knob {knob!r}")
    return scenario.model_copy(update={"workload": w.model_copy(update=update)})


KNOBS = ("duration", "rate", "accounts", "tenants", "retries")


def _describe(scenario: Scenario, knob: str) -> str:
    w = scenario.workload
    value = {
        "duration": f"{scenario.duration:g}s",
        "rate": f"{w.rate:g}/s",
        "accounts": str(w.accounts),
        "tenants": str(w.tenants),
        "retries": str(w.client.retries),
    }[knob]
    return f"{knob} {value}"


def expand_swarm(scenario: Scenario, seed: int) -> Scenario:
    """`swarm: true` replaced by the background faults it draws for `seed`, written out, so
    that each drawn family can be removed on its own. The sim schedules drawn and written-out
    background faults alike, so the expanded scenario makes the same run."""
    if not scenario.faults.swarm:
        return scenario
    drawn = swarm_faults(scenario, Streams(seed).get("swarm"))
    background = scenario.faults.background
    poisson = background.model_copy(update={"poisson": [*background.poisson, *drawn]})
    faults = scenario.faults.model_copy(update={"swarm": False, "background": poisson})
    return scenario.model_copy(update={"faults": faults})


def shrink(scenario: Scenario, fails: Fails, *, seed: int | None = None) -> ShrinkResult:
    """Shrink a scenario for which `fails` holds; ValueError if it does not fail to begin with.
    With the run's `seed`, a swarm scenario's draw is written out first (see expand_swarm)."""
    oracle = _Oracle(fails)
    if not oracle(scenario):
        raise ValueError("the scenario does not fail with this seed: nothing to shrink")
    steps: list[str] = []
    current = scenario
    if seed is not None and scenario.faults.swarm:
        expanded = expand_swarm(scenario, seed)
        if oracle(expanded):
            n = len(expanded.faults.background.poisson) - len(scenario.faults.background.poisson)
            steps.append(f"swarm written out: {n} background fault families drawn for seed {seed}")
            current = expanded
    current = _shrink_faults(current, oracle, steps)
    before = current
    for knob in KNOBS:
        was = current
        while (smaller := _halved_workload(current, knob)) is not None and oracle(smaller):
            current = smaller
        if current is not was:
            steps.append(f"{_describe(was, knob)} -> {_describe(current, knob).split()[-1]}")
    if current != before:
        current = _shrink_faults(current, oracle, steps)
    return ShrinkResult(current, oracle.trials, steps)


def _shrink_faults(scenario: Scenario, oracle: _Oracle, steps: list[str]) -> Scenario:
    items = fault_items(scenario.faults)
    kept = ddmin(items, lambda keep: oracle(keep_faults(scenario, keep)))
    if len(kept) < len(items):
        names = ", ".join(describe_item(scenario.faults, i) for i in kept) or "none"
        steps.append(f"faults {len(items)} -> {len(kept)} (kept: {names})")
    return keep_faults(scenario, kept)
