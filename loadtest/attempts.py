"""What a client does with each answer: the sim's retry rules, as a state machine without I/O.

A payment is one `Request` (one idempotency key) and one or more `Attempt`s. An answer that
settles it (202, or a refusal a retry cannot change) closes the request; anything else (409 in
flight, 429, 5xx, a transport error, no answer within the client timeout) is retried with the
same key after `min(backoff_max, backoff * 2**(n-1))`, of which the `jitter` fraction is drawn
at random, until `retries` retries are spent. As in sim/clients.py, only the latest attempt of
a request may trigger a retry: after a double submit the earlier twin's failure is ignored.

The one difference from the sim is deliberate: a real server can answer 400, 401, 404 or 413,
which the sim never does; those are final (a retry would get the same answer), like 422.

`outcome` maps an answer to the run record's vocabulary (reports/record.py ENUMS).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from loadtest.pacing import Arrival
from scenarios.schema import Client

NAN = math.nan
RETRIED_4XX = frozenset({408, 409, 425, 429})
"""Client errors that say "not now" rather than "never": retried like a 5xx."""


def outcome(status: int, replayed: bool) -> str:
    """The run record's outcome of an HTTP answer (status 0: no answer, see `Attempt`)."""
    if 200 <= status < 300:
        return "replayed" if replayed else "accepted"
    if status == 409:
        return "conflict"
    if status == 429:
        return "rate_limited"
    if 400 <= status < 500:
        return "rejected"
    return "error"


def is_final(status: int) -> bool:
    """Does this answer settle the request (no retry)?"""
    return 200 <= status < 300 or (400 <= status < 500 and status not in RETRIED_4XX)


@dataclass(slots=True)
class Request:
    """One payment a client wants made, across all of its attempts."""

    key: str
    arrival: Arrival
    body: bytes
    attempts: int = 0
    done: bool = False
    gave_up: bool = False


@dataclass(slots=True)
class Attempt:
    """One HTTP attempt, a row of the requests table. Times are schedule seconds (from the
    traffic start); `sent` stays NaN for an attempt the generator never got to send."""

    request: Request
    n: int
    intended: float
    sent: float = NAN
    done: float = NAN
    status: int = 0
    payment_id: str = ""
    outcome: str = ""
    waited: bool = field(default=False)
    """Handed out when no user was idle: it waited in the backlog for one."""


class Clients:
    """The clients' side of every open request: which attempt to send next, and when."""

    def __init__(self, client: Client, retry_rng: random.Random) -> None:
        self.client = client
        self.retry_rng = retry_rng
        self.open_requests = 0

    def open(self, key: str, arrival: Arrival, body: bytes) -> list[Attempt]:
        """A new request: its first attempt, and its twin if the arrival is a double submit."""
        req = Request(key, arrival, body)
        self.open_requests += 1
        first = self.attempt(req, arrival.at)
        return [first, self.attempt(req, arrival.at)] if arrival.duplicate else [first]

    def attempt(self, req: Request, at: float) -> Attempt:
        """The request's next attempt, meant to be sent at `at`."""
        req.attempts += 1
        return Attempt(req, req.attempts, at)

    def finished(self, attempt: Attempt) -> float | None:
        """`attempt` got its answer (or timed out): the delay before a retry, or None."""
        req = attempt.request
        if req.done:
            return None
        if is_final(attempt.status):
            self._close(req)
            return None
        if attempt.n != req.attempts:
            return None  # a later attempt (a double submit's twin or a retry) is in flight
        c = self.client
        if req.attempts > c.retries:
            self._close(req, gave_up=True)
            return None
        delay = min(c.backoff_max, c.backoff * 2.0 ** (attempt.n - 1))
        return delay * (1 - c.jitter + c.jitter * self.retry_rng.random())

    def abandon(self, req: Request) -> None:
        """The run ended before the request was settled."""
        if not req.done:
            self._close(req, gave_up=True)

    def _close(self, req: Request, gave_up: bool = False) -> None:
        req.done = True
        req.gave_up = gave_up
        self.open_requests -= 1


def finish_time_bound(client: Client) -> float:
    """The longest a request can stay open after its arrival when every attempt times out: all
    attempts' timeouts plus the largest backoff before each retry."""
    backoffs = sum(min(client.backoff_max, client.backoff * 2.0**n) for n in range(client.retries))
    return (client.retries + 1) * client.timeout + backoffs
