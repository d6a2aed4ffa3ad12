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


# -- whole networks: Jackson's closed forms -----------------------------------------------
# Stations are the sim's nodes with exponential service; a job that leaves one station enters
# the next. Between the ledger and the consumer the work passes through the store's event log,
# as payments do: the ledger station appends an event, and the consumer station's job fetches it
# at its offset and commits the offset. In an open Jackson network each visit to a station is an
# M/M/1 sojourn, Exp(mu - lambda_i) (the arrival theorem), so means add up per visit, and the
# sojourns of a tandem are independent, so its end-to-end time is their hypoexponential sum.

NETWORK_CUSTOMERS = 60_000


class _Visit(Job):
    """One visit of a customer to a station; on completion it enters the next station."""

    __slots__ = ("customer", "service", "step")

    def __init__(self, customer: _Payment, step: int, service: float) -> None:
        super().__init__()
        self.customer = customer
        self.step = step
        self.service = service

    def run(self) -> JobRun:
        c = self.customer
        yield c.net.env.timeout(self.service)
        c.visits.append((c.net.route[self.step], c.net.env.now - self.arrived_at))
        c.net.leave(c, self.step)


class _Payment:
    __slots__ = ("net", "offset", "started", "visits")

    def __init__(self, net: Network, started: float) -> None:
        self.net = net
        self.started = started
        self.visits: list[tuple[str, float]] = []
        self.offset = 0


class Network:
    """Stations by name and a route through them; `consumer` fetches from the event log."""

    def __init__(self, mus: dict[str, float], route: list[str], seed: int) -> None:
        from reference_impl.adapters.memory import MemoryStore

        self.env = simpy.Environment()
        self.nodes = {name: Node(self.env, name, name, "a", 1) for name in mus}
        self.mus = mus
        self.route = route
        self.rng = random.Random(seed)
        self.store = MemoryStore()
        self.done: list[_Payment] = []

    def enter(self, customer: _Payment, step: int) -> None:
        station = self.route[step]
        service = self.rng.expovariate(self.mus[station])
        if station == "consumer":
            self.nodes[station].submit(_Fetch(customer, step, service))
        else:
            self.nodes[station].submit(_Visit(customer, step, service))

    def leave(self, customer: _Payment, step: int) -> None:
        if step + 1 < len(self.route) and self.route[step + 1] == "consumer":
            from reference_impl.service.ports import NewEvent

            with self.store.unit_of_work() as uow:  # the ledger commits the customer's event
                uow.append_events([NewEvent("t", "E", "k", "{}")], 1, self.env.now)
                customer.offset = uow.log_heads("t")[0]
                uow.commit()
        if step + 1 == len(self.route):
            self.done.append(customer)
        else:
            self.enter(customer, step + 1)

    def arrivals(self, lam: float) -> Generator[simpy.Event, Any, None]:
        for _ in range(NETWORK_CUSTOMERS):
            yield self.env.timeout(self.rng.expovariate(lam))
            self.enter(_Payment(self, self.env.now), 0)


class _Fetch(_Visit):
    """The consumer's visit: fetch the customer's event at its offset, work, commit the offset."""

    def run(self) -> JobRun:
        c = self.customer
        store = c.net.store
        with store.unit_of_work() as uow:
            after = uow.get_offset("g", "t", 0)
            [event] = uow.read_events("t", 0, after, 1)
        assert event.offset == c.offset  # FIFO: the log hands events over in arrival order
        yield c.net.env.timeout(self.service)
        with store.unit_of_work() as uow:
            uow.set_offset("g", "t", 0, event.offset)
            uow.commit()
        c.visits.append(("consumer", c.net.env.now - self.arrived_at))
        c.net.leave(c, self.step)


def run_network(mus: dict[str, float], route: list[str], lam: float) -> list[_Payment]:
    net = Network(mus, route, seed=11)
    net.env.process(net.arrivals(lam))
    net.env.run()
    warm = NETWORK_CUSTOMERS // 10  # leave out the start-up, when queues are still empty
    return sorted(net.done, key=lambda c: c.started)[warm:]


def hypoexponential_quantile(rates: list[float], q: float) -> float:
    """The q-quantile of a sum of independent exponentials with distinct rates."""

    def cdf(t: float) -> float:
        total = 0.0
        for i, r in enumerate(rates):
            weight = math.prod(s / (s - r) for j, s in enumerate(rates) if j != i)
            total += weight * math.exp(-r * t)
        return 1.0 - total

    low, high = 0.0, 1000.0
    for _ in range(100):
        mid = (low + high) / 2
        low, high = (mid, high) if cdf(mid) < q else (low, mid)
    return (low + high) / 2


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


def test_a_tandem_of_gateway_ledger_and_consumer_matches_jackson() -> None:
    lam = 0.5
    mus = {"gateway": 1.0, "ledger": 1.25, "consumer": 0.8}
    done = run_network(mus, ["gateway", "ledger", "consumer"], lam)
    total = [sum(v for _, v in c.visits) for c in done]
    rates = [mu - lam for mu in mus.values()]
    assert sum(total) / len(total) == pytest.approx(sum(1 / r for r in rates), rel=0.05)
    assert percentile(total, 0.99) == pytest.approx(hypoexponential_quantile(rates, 0.99), rel=0.10)


def test_a_station_visited_twice_sees_twice_the_traffic() -> None:
    lam = 0.3
    mus = {"gateway": 1.0, "ledger": 1.0, "consumer": 0.6}
    route = ["gateway", "ledger", "consumer", "ledger"]  # the ledger commits twice per payment
    done = run_network(mus, route, lam)
    lam_at = {"gateway": lam, "ledger": 2 * lam, "consumer": lam}
    expected_mean = sum(1 / (mus[s] - lam_at[s]) for s in route)
    total = [sum(v for _, v in c.visits) for c in done]
    assert sum(total) / len(total) == pytest.approx(expected_mean, rel=0.05)
    for station in mus:
        visits = [v for c in done for s, v in c.visits if s == station]
        rate = mus[station] - lam_at[station]
        assert sum(visits) / len(visits) == pytest.approx(1 / rate, rel=0.05), station
        assert percentile(visits, 0.99) == pytest.approx(math.log(100) / rate, rel=0.10), station
