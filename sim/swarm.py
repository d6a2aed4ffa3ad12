"""Swarm testing: which fault families are on, and how hard, drawn from the seed.

A fixed mix of every fault at once tends to hide bugs that need one fault alone for long
enough (TigerBeetle's VOPR, after Groce et al., "Swarm Testing"). So each seed turns each
family on with probability one half and draws its rate, window length and strength; a campaign
over many seeds covers many mixes. Rates are scaled to the run, so a family that is on shows
up a few times in it whatever the duration.

Failover is drawn only with sync replication: with async replication it loses acknowledged
commits by design, which is a finding about the configuration, not about the code under test.
"""

from __future__ import annotations

import random
from typing import Any

from pydantic import TypeAdapter

from scenarios.fault_specs import Fault
from scenarios.schema import Scenario

_FAULT: TypeAdapter[Fault] = TypeAdapter(Fault)


def swarm_faults(scenario: Scenario, rng: random.Random) -> list[Fault]:
    """Background faults for one seed: each family on or off, with its own numbers."""
    run = scenario.duration

    def window(kind: str, per_run: tuple[float, float], length: tuple[float, float]) -> Any:
        """A family that opens `per_run` windows over the run, each `length` seconds long."""
        return {
            "kind": kind,
            "rate": rng.uniform(*per_run) / run,
            "duration": span(*length),
        }

    def span(low: float, high: float) -> float:
        return round(rng.uniform(low, high), 3)

    families: list[dict[str, Any]] = [
        window("loss", (1, 4), (0.2, 2)) | {"probability": span(0.05, 0.5)},
        window("duplicate", (1, 4), (0.2, 2)) | {"probability": span(0.05, 0.5)},
        window("reorder", (1, 4), (0.2, 2))
        | {"probability": span(0.1, 0.5), "extra": span(0.01, 0.2)},
        window("latency", (1, 4), (0.2, 2)) | {"extra": span(0.01, 0.3)},
        window("partition", (1, 3), (0.2, 2)) | {"one_way": rng.random() < 0.5},
        window("clog", (1, 2), (0.5, 2)) | {"period": span(0.1, 0.5), "fraction": span(0.1, 0.5)},
        window("crash", (1, 4), (0.1, 1.5)),
        window("pause", (1, 4), (0.1, 1.5)),
        window("disk", (1, 3), (0.2, 2))
        | {"slow": span(0, 0.02), "fail_probability": span(0, 0.2)},
        window("rebalance", (2, 6), (0.05, 0.5)),
        window("poison", (2, 4), (1, 4)) | {"probability": span(0.05, 0.5)},
        window("partner", (1, 3), (1, 5))
        | {
            "outage": rng.random() < 0.3,
            "late_probability": span(0, 0.3),
            "duplicate_line_probability": span(0, 0.1),
            "missing_line_probability": span(0, 0.1),
            "fee_probability": span(0, 0.1),
            "fee_amount": 25,
            "reversal_probability": span(0, 0.05),
        },
        window("clock-skew", (1, 2), (1, 5))
        | {"offset": span(0.1, 2), "behind": rng.random() < 0.5},
    ]
    if len(scenario.topology.zones) > 1:
        families.append(window("zone-outage", (1, 2), (0.2, 1.5)))
    ledger = scenario.topology.ledger
    if ledger.replicas and ledger.replication == "sync":
        families.append(window("failover", (1, 2), (0.1, 1)))
    # Every family's switch is drawn after all parameters, so what one family draws does not
    # depend on which others are on.
    return [_FAULT.validate_python(f) for f in families if rng.random() < 0.5]
