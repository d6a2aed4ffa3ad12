"""The load generator's schedule is the sim's: same arrivals, same requests, same retries."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import pytest
import simpy

from loadtest.attempts import Clients as LoadClients
from loadtest.pacing import arrivals, arrivals_seed, retries_seed
from scenarios.schema import Workload
from scenarios.workload import account_ids, expected_arrivals, peak_rate, tenant_ids
from sim.clients import Attempt as SimAttempt
from sim.clients import Clients as SimClients
from sim.rng import Streams

WORKLOAD = Workload.model_validate({
    "tenants": 3, "accounts": 50, "zipf": 1.2, "rate": "80/s",
    "amount": {"distribution": "lognormal", "median": 900, "sigma": 1.5, "max": 50_000},
    "profile": [{"at": "2s", "rate": "40/s"}, {"at": "4s", "rate": "120/s"}],
    "bursts": [{"at": "1s", "duration": "1500ms", "rate": "200/s"}],
    "client": {"duplicate_probability": 0.1, "retries": 4, "backoff": "50ms",
               "backoff_max": "300ms", "jitter": 0.5, "timeout": "1s"},
})  # fmt: skip
DURATION = 6.0


def test_one_generator_schedules_the_requests_the_sim_makes() -> None:
    seed = 11
    env = simpy.Environment()
    sent: list[SimAttempt] = []
    streams = Streams(seed)
    sim = SimClients(env, WORKLOAD, streams.get("arrivals"), streams.get("retries"), sent.append)
    env.process(sim.arrivals(DURATION))
    env.run()

    ours = list(arrivals(WORKLOAD, DURATION, random.Random(arrivals_seed(seed, 0, 1))))
    assert len(ours) == len(sim.requests) > 300
    for arrival, req in zip(ours, sim.requests, strict=True):
        assert arrival.at == req.intended_at  # bit for bit: the same float arithmetic
        body = req.body
        assert (arrival.tenant, arrival.debtor, arrival.creditor, arrival.amount) == (
            req.tenant, body.debtor_account, body.creditor_account, body.amount,
        )  # fmt: skip
        assert arrival.currency == body.currency == "EUR"
    doubled = {a.request.key for a in sent if a.n == 2}
    assert [a.duplicate for a in ours] == [r.key in doubled for r in sim.requests]
    assert any(a.duplicate for a in ours)


def test_the_sims_ids() -> None:
    assert tenant_ids(2) == ["tenant-1", "tenant-2"]
    assert account_ids(3) == ["acc-000000", "acc-000001", "acc-000002"]


def test_processes_split_the_rate_into_independent_streams() -> None:
    parts = [
        list(arrivals(WORKLOAD, DURATION, random.Random(arrivals_seed(3, i, 4)), share=0.25))
        for i in range(4)
    ]
    assert len({tuple(a.at for a in part[:5]) for part in parts}) == 4  # four different streams
    total = sum(len(p) for p in parts)
    expected = expected_arrivals(WORKLOAD, DURATION, 0, DURATION)
    assert abs(total - expected) < 4 * math.sqrt(expected)  # Poisson: 4 sigma, fixed seeds
    for part in parts:
        assert [a.at for a in part] == sorted(a.at for a in part)
        assert all(0 <= a.at < DURATION for a in part)
    assert arrivals_seed(3, 0, 1) == "3/arrivals" and retries_seed(3, 0, 1) == "3/retries"


def test_the_profile_and_bursts_give_the_expected_arrivals() -> None:
    # 80/s for [0,2) with +200/s in [1,2.5); 40/s in [2,4) (+200/s until 2.5); 120/s from 4.
    assert expected_arrivals(WORKLOAD, DURATION, 0, 1) == pytest.approx(80)
    assert expected_arrivals(WORKLOAD, DURATION, 1, 2) == pytest.approx(280)
    assert expected_arrivals(WORKLOAD, DURATION, 2, 3) == pytest.approx(0.5 * 240 + 0.5 * 40)
    assert expected_arrivals(WORKLOAD, DURATION, 3.5, 4.5) == pytest.approx(20 + 60)
    assert expected_arrivals(WORKLOAD, DURATION, 5, 9) == pytest.approx(120)  # ends at 6 s
    assert peak_rate(WORKLOAD, DURATION) == 280


def test_retries_wait_as_the_sims_clients_do() -> None:
    """The same answers give the same retry delays as sim/clients.py, from the same stream."""
    env = simpy.Environment()
    sent: list[SimAttempt] = []
    streams = Streams(5)
    sim = SimClients(env, WORKLOAD, streams.get("arrivals"), streams.get("retries"), sent.append)
    env.process(sim.arrivals(0.5))
    env.run()
    first = next(a for a in sent if a.n == 1 and a.request.key not in
                 {b.request.key for b in sent if b.n == 2})  # fmt: skip
    sim_delays = []
    attempt = first
    while True:
        before = len(sent)
        answered_at = env.now
        sim.answer(attempt, 503, "", "error")
        env.run()
        if len(sent) == before:
            break
        attempt = sent[-1]
        sim_delays.append(attempt.sent_at - answered_at)

    ours = LoadClients(WORKLOAD.client, random.Random(retries_seed(5, 0, 1)))
    arrival = replace(next(arrivals(WORKLOAD, 0.5, random.Random("x"))), duplicate=False)
    (a,) = ours.open("k1", arrival, b"")
    delays = []
    while True:
        a.status = 503
        delay = ours.finished(a)
        if delay is None:
            break
        delays.append(delay)
        a = ours.attempt(a.request, a.intended + delay)
    assert delays == pytest.approx(sim_delays, abs=1e-12)
    assert len(delays) == WORKLOAD.client.retries
    assert a.request.gave_up and ours.open_requests == 0
