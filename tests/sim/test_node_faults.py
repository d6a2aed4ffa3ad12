"""A node's pause and crash as seen from another node: whoever waits for a stopped process to go
on must not wait for ever when that process is killed instead (swarm seed 384: the ledger was
paused, then lost in a failover, and the settlement member waiting on it never read again, so
no payment settled)."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

import simpy

from reports.audit import KINDS
from scenarios.loader import load_scenario
from sim.node import Node
from testbed.judge import audit_seed

SWARM = Path(__file__).resolve().parents[2] / "scenarios" / "catalog" / "swarm.yaml"


def _paused_with_a_waiter() -> tuple[simpy.Environment, Node, list[tuple[float, bool]]]:
    """A paused node and, one second in, another process still waiting for it to go on; the
    list gets (when, whether the node was up) as that process wakes."""
    env = simpy.Environment()
    node = Node(env, "ledger", "ledger", "a", 1)
    node.pause()
    woke: list[tuple[float, bool]] = []

    def waiter() -> Generator[simpy.Event, Any, None]:
        yield node.running()
        woke.append((env.now, node.up))

    env.process(waiter())
    env.run(until=1.0)
    assert woke == []
    return env, node, woke


def test_a_waiter_on_a_paused_node_wakes_when_it_resumes() -> None:
    env, node, woke = _paused_with_a_waiter()
    node.resume()
    env.run(until=2.0)
    assert woke == [(1.0, True)]


def test_a_waiter_on_a_paused_node_wakes_when_it_crashes_and_finds_it_down() -> None:
    env, node, woke = _paused_with_a_waiter()
    node.crash()
    env.run(until=2.0)
    assert woke == [(1.0, False)]
    node.restart()
    env.run(until=3.0)
    assert woke == [(1.0, False)], "woken once"


def test_swarm_seed_384_settles_after_the_ledger_is_killed_while_paused() -> None:
    found = audit_seed(load_scenario(SWARM).scenario, "swarm", 384)
    assert {k: n for k, n in found.counts.items() if n and k in KINDS} == {}
