"""`python -m sim.bench`: how many payments the sim moves per wall-second, against a baseline.

The baseline is measured in the same run on the same machine: bare SimPy M/M/1 customers (a
process per customer, a Resource request, a timeout), the cheapest thing a discrete-event sim
of a queue can do. The ratio says what the full payment path (client, gateway, ledger commits,
two consumer batches, settlement, the real handlers) costs in units of one bare queue visit,
which stays meaningful across machines where absolute numbers do not.
"""

from __future__ import annotations

import random
import time
from collections.abc import Generator
from typing import Any

import simpy

from scenarios.loader import HERE, load_scenario
from sim.run import simulate

TARGET_RATIO = 0.2
MM1_CUSTOMERS = 100_000


def _customer(
    env: simpy.Environment, server: simpy.Resource, service: float
) -> Generator[simpy.Event, Any, None]:
    with server.request() as req:
        yield req
        yield env.timeout(service)


def _source(
    env: simpy.Environment, server: simpy.Resource, rng: random.Random
) -> Generator[simpy.Event, Any, None]:
    for _ in range(MM1_CUSTOMERS):
        yield env.timeout(rng.expovariate(0.8))
        env.process(_customer(env, server, rng.expovariate(1.0)))


def mm1_per_second() -> float:
    env = simpy.Environment()
    server = simpy.Resource(env, capacity=1)
    env.process(_source(env, server, random.Random(1)))
    start = time.perf_counter()
    env.run()
    return MM1_CUSTOMERS / (time.perf_counter() - start)


def payments_per_second() -> tuple[float, int]:
    scenario = load_scenario(HERE / "quickstart.yaml").scenario
    start = time.perf_counter()
    run = simulate(scenario, scenario.seed)
    elapsed = time.perf_counter() - start
    payments = len(run.system.open_payments) + sum(
        1 for r in run.system.clients.requests if r.done and not r.gave_up
    )
    return payments / elapsed, payments


def main() -> int:
    baseline = mm1_per_second()
    rate, payments = payments_per_second()
    ratio = rate / baseline
    verdict = "PASS" if ratio >= TARGET_RATIO else "MISS"
    print(f"bare SimPy M/M/1:      {baseline:12,.0f} customers/s (wall)")
    print(f"quickstart full path:  {rate:12,.0f} payments/s (wall), {payments} payments")
    print(f"ratio:                 {ratio:12.3f}  (target >= {TARGET_RATIO})  {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
