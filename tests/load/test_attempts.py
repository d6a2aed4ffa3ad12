"""The client's state machine: which answers settle a request, retries, double submits."""

from __future__ import annotations

import random

import pytest

from loadtest.attempts import Clients, finish_time_bound, is_final, outcome
from loadtest.pacing import Arrival
from scenarios.schema import Client

CLIENT = Client(timeout=1.0, retries=2, backoff=0.1, backoff_max=0.15, jitter=0.0)


def arrival(duplicate: bool = False) -> Arrival:
    return Arrival(0.5, "tenant-1", "acc-000001", "acc-000002", 100, "EUR", duplicate)


@pytest.mark.parametrize(
    ("status", "replayed", "expected", "final"),
    [
        (202, False, "accepted", True),
        (202, True, "replayed", True),
        (422, False, "rejected", True),
        (400, False, "rejected", True),
        (401, False, "rejected", True),
        (409, False, "conflict", False),
        (429, False, "rate_limited", False),
        (503, False, "error", False),
        (500, False, "error", False),
    ],
)
def test_answers_map_to_the_run_records_outcomes(
    status: int, replayed: bool, expected: str, final: bool
) -> None:
    assert outcome(status, replayed) == expected
    assert is_final(status) is final


def test_a_failing_request_is_retried_with_growing_backoff_then_given_up() -> None:
    clients = Clients(CLIENT, random.Random(1))
    (a,) = clients.open("k1", arrival(), b"{}")
    assert (a.n, a.intended, clients.open_requests) == (1, 0.5, 1)
    a.status = 503
    assert clients.finished(a) == pytest.approx(0.1)  # backoff * 2**0, no jitter
    b = clients.attempt(a.request, 0.7)
    b.status = 0  # a timeout
    assert clients.finished(b) == pytest.approx(0.15)  # 0.2 capped at backoff_max
    c = clients.attempt(a.request, 1.0)
    assert (b.n, c.n, c.request.key) == (2, 3, "k1")
    c.status = 409
    assert clients.finished(c) is None  # retries spent
    assert c.request.done and c.request.gave_up and clients.open_requests == 0


def test_jitter_draws_the_given_fraction_of_the_delay() -> None:
    client = Client(retries=50, backoff=1.0, backoff_max=1.0, jitter=0.25)
    clients = Clients(client, random.Random(2))
    (a,) = clients.open("k1", arrival(), b"")
    delays = []
    for _ in range(50):
        a.status = 503
        delay = clients.finished(a)
        assert delay is not None
        delays.append(delay)
        a = clients.attempt(a.request, 0.0)
    assert all(0.75 <= d <= 1.0 for d in delays) and len(set(delays)) == 50


def test_an_answer_that_settles_closes_the_request() -> None:
    clients = Clients(CLIENT, random.Random(1))
    (a,) = clients.open("k1", arrival(), b"")
    a.status = 422
    assert clients.finished(a) is None
    assert a.request.done and not a.request.gave_up and clients.open_requests == 0


def test_a_double_submit_retries_only_after_its_latest_attempt_fails() -> None:
    clients = Clients(CLIENT, random.Random(1))
    first, twin = clients.open("k1", arrival(duplicate=True), b"")
    assert (first.n, twin.n, first.intended, twin.intended) == (1, 2, 0.5, 0.5)
    first.status = 409  # the twin is still in flight: no retry for the first
    assert clients.finished(first) is None and not first.request.done
    twin.status = 202
    assert clients.finished(twin) is None and twin.request.done
    # Late answers after the request is settled change nothing.
    first.status = 503
    assert clients.finished(first) is None and clients.open_requests == 0


def test_an_abandoned_request_is_closed_once() -> None:
    clients = Clients(CLIENT, random.Random(1))
    (a,) = clients.open("k1", arrival(), b"")
    clients.abandon(a.request)
    clients.abandon(a.request)
    assert a.request.gave_up and clients.open_requests == 0


def test_the_longest_a_request_stays_open() -> None:
    # 3 attempts of 1 s, backoffs 0.1 and min(0.15, 0.2).
    assert finish_time_bound(CLIENT) == pytest.approx(3.0 + 0.1 + 0.15)
