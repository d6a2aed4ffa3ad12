"""The node model against queueing theory: M/M/1 and M/M/c (Erlang C) closed forms.

If the node's queue, workers or time integrals were wrong (a lost wake-up, a job counted twice,
busy time not accounted), mean waiting time and utilization would drift from the formulas.
"""

from __future__ import annotations

import math
import random
from collections.abc import Generator
from typing import Any

import pytest
import simpy

from sim.node import Job, JobRun, Node

CUSTOMERS = 150_000


class _Customer(Job):
    __slots__ = ("env", "service")

    def __init__(self, env: simpy.Environment, service: float) -> None:
        super().__init__()
        self.env = env
        self.service = service

    def run(self) -> JobRun:
        yield self.env.timeout(self.service)


def _arrivals(
    env: simpy.Environment, node: Node, lam: float, mu: float, rng: random.Random
) -> Generator[simpy.Event, Any, None]:
    for _ in range(CUSTOMERS):
        yield env.timeout(rng.expovariate(lam))
        node.submit(_Customer(env, rng.expovariate(mu)))


def erlang_c(c: int, a: float) -> float:
    """Probability that an arrival waits in M/M/c with offered load a = lambda / mu."""
    rho = a / c
    top = a**c / math.factorial(c) / (1 - rho)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top)


def simulate_mmc(c: int, lam: float, mu: float, seed: int) -> Node:
    env = simpy.Environment()
    node = Node(env, "server", "test", "a", c)
    env.process(_arrivals(env, node, lam, mu, random.Random(seed)))
    env.run()
    node.close_books()
    return node


@pytest.mark.parametrize(("c", "lam", "mu"), [(1, 0.5, 1.0), (1, 0.7, 1.0), (3, 2.1, 1.0)])
def test_waiting_time_and_utilization_match_the_closed_forms(c: int, lam: float, mu: float):
    node = simulate_mmc(c, lam, mu, seed=7)
    rho = lam / (c * mu)
    expected_wait = erlang_c(c, lam / mu) / (c * mu - lam)
    mean_wait = node.wait_sum / node.completions
    utilization = node.area_busy / (env_time(node) * c)
    assert node.completions == CUSTOMERS
    assert mean_wait == pytest.approx(expected_wait, rel=0.05)
    assert utilization == pytest.approx(rho, rel=0.05)


def test_erlang_c_reduces_to_mm1():
    assert erlang_c(1, 0.7) == pytest.approx(0.7)


def env_time(node: Node) -> float:
    return node.env.now
