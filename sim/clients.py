"""Clients: open-model arrivals, Zipf-skewed accounts, timeouts and retries with the same key.

Open model: requests arrive on their own schedule (Poisson with a piecewise-constant rate from
the profile plus bursts) whether or not the system keeps up, so a slow system sees queues grow
instead of the load politely backing off (no coordinated omission). A client that hears nothing
within its timeout retries with the same idempotency key after an exponential backoff with
jitter; the server must turn that into one payment.

Timeouts are checked by one watcher process rather than a timer per request: the timeout is the
same for every attempt, so deadlines arrive in send order and one deque holds them all.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace
from typing import Any

import simpy

from reference_impl.service.accept import PaymentRequest, request_hash
from scenarios.fraud import FraudPayment, request_names
from scenarios.schema import Workload
from scenarios.workload import ZipfAccounts, account_ids, draw_amount, rate_segments, tenant_ids


@dataclass(slots=True)
class Request:
    """One logical payment a client wants made, across all of its attempts."""

    key: str
    tenant: str
    body: PaymentRequest
    request_hash: str
    intended_at: float
    attempts: int = 0
    done: bool = False
    gave_up: bool = False


@dataclass(slots=True)
class Attempt:
    """One HTTP attempt: a row of the requests table."""

    request: Request
    n: int
    sent_at: float
    done_at: float | None = None
    status: int = 0
    payment_id: str = ""
    outcome: str = ""
    finished: bool = field(default=False)


Router = Callable[[Attempt], None]


class Clients:
    def __init__(
        self,
        env: simpy.Environment,
        workload: Workload,
        arrivals_rng: random.Random,
        retry_rng: random.Random,
        route: Router,
    ) -> None:
        self.env = env
        self.workload = workload
        self.client = workload.client
        self.rng = arrivals_rng
        self.retry_rng = retry_rng
        self.route = route
        self.tenants = tenant_ids(workload.tenants)
        self.accounts = account_ids(workload.accounts)
        self.zipf = ZipfAccounts(workload.accounts, workload.zipf)
        self.names = workload.fraud is not None and workload.fraud.names
        self.requests: list[Request] = []
        self.attempts: list[Attempt] = []
        self.labels: list[tuple[str, str, str, str]] = []
        """(key, tenant, pattern, case) of each fraudulent request, in the order sent."""
        self.open_requests = 0
        self._pending: deque[Attempt] = deque()
        self._watcher_wake: simpy.Event | None = None

    # -- arrivals -------------------------------------------------------------------------
    def arrivals(self, duration: float) -> Generator[simpy.Event, Any, None]:
        """Poisson arrivals; at a rate change the next gap is redrawn (memorylessness)."""
        env, rng = self.env, self.rng
        for start, end, rate in rate_segments(self.workload, duration):
            if env.now < start:
                yield env.timeout(start - env.now)
            if rate <= 0:
                continue
            while True:
                gap = rng.expovariate(rate)
                if env.now + gap >= end:
                    break
                yield env.timeout(gap)
                self._new_request()

    def fraud_arrivals(self, schedule: list[FraudPayment]) -> Generator[simpy.Event, Any, None]:
        """The fraud schedule (scenarios/fraud.py), sent like any payment and labelled."""
        env = self.env
        for p in schedule:
            if env.now < p.at:
                yield env.timeout(p.at - env.now)
            debtor_name, _ = request_names(self.workload, p.tenant, p.debtor, p.creditor)
            body = PaymentRequest(
                p.debtor, p.creditor, p.amount, self.workload.currency,
                debtor_name=debtor_name, creditor_name=p.creditor_name,
            )  # fmt: skip
            req = self._open(p.tenant, body)
            self.labels.append((req.key, p.tenant, p.pattern, p.case))

    def _new_request(self) -> None:
        rng = self.rng
        tenant = self.tenants[rng.randrange(len(self.tenants))]
        debtor, creditor = self.zipf.pair(rng)
        amount = draw_amount(self.workload.amount, rng)
        debtor_id, creditor_id = self.accounts[debtor], self.accounts[creditor]
        body = PaymentRequest(debtor_id, creditor_id, amount, self.workload.currency)
        if self.names:
            names = request_names(self.workload, tenant, debtor_id, creditor_id)
            body = replace(body, debtor_name=names[0], creditor_name=names[1])
        req = self._open(tenant, body)
        if self.client.duplicate_probability and rng.random() < self.client.duplicate_probability:
            self._send(req)  # a double submit: same key, same body, at the same moment

    def _open(self, tenant: str, body: PaymentRequest) -> Request:
        """A new request with the next key, sent now."""
        # What a client sends (docs/api.md), hashed as the API hashes it.
        wire: dict[str, Any] = {
            "debtor_account": body.debtor_account,
            "creditor_account": body.creditor_account,
            "amount": body.amount,
            "currency": body.currency,
        }
        if body.debtor_name:
            wire["debtor_name"] = body.debtor_name
        if body.creditor_name:
            wire["creditor_name"] = body.creditor_name
        req = Request(f"k{len(self.requests) + 1}", tenant, body, request_hash(wire), self.env.now)
        self.requests.append(req)
        self.open_requests += 1
        self._send(req)
        return req

    def _send(self, req: Request) -> None:
        req.attempts += 1
        attempt = Attempt(req, req.attempts, self.env.now)
        self.attempts.append(attempt)
        self._pending.append(attempt)
        if self._watcher_wake is not None:
            wake, self._watcher_wake = self._watcher_wake, None
            wake.succeed()
        self.route(attempt)

    # -- answers --------------------------------------------------------------------------
    def answer(self, attempt: Attempt, status: int, payment_id: str, outcome: str) -> None:
        """The reply reaches the client; ignored if the client already gave up on it."""
        if attempt.finished:
            return
        attempt.finished = True
        attempt.done_at = self.env.now
        attempt.status = status
        attempt.payment_id = payment_id
        attempt.outcome = outcome
        req = attempt.request
        if req.done:
            return
        if status in (202, 422):
            self._close(req)
        else:
            self._retry(attempt)

    def _close(self, req: Request, gave_up: bool = False) -> None:
        req.done = True
        req.gave_up = gave_up
        self.open_requests -= 1

    def _retry(self, attempt: Attempt) -> None:
        req = attempt.request
        if attempt.n != req.attempts:
            return  # a later attempt (a double submit) is still in flight
        if req.attempts > self.client.retries:
            self._close(req, gave_up=True)
            return
        c = self.client
        delay = min(c.backoff_max, c.backoff * 2 ** (attempt.n - 1))
        delay *= 1 - c.jitter + c.jitter * self.retry_rng.random()
        timer = self.env.timeout(delay)
        timer.callbacks.append(lambda _ev: self._send(req))

    def timeout_watcher(self) -> Generator[simpy.Event, Any, None]:
        env, pending, timeout = self.env, self._pending, self.client.timeout
        while True:
            if not pending:
                self._watcher_wake = env.event()
                yield self._watcher_wake
                continue
            head = pending[0]
            if head.finished:
                pending.popleft()
                continue
            deadline = head.sent_at + timeout
            if deadline > env.now:
                yield env.timeout(deadline - env.now)
                continue
            pending.popleft()
            head.finished = True
            head.done_at = env.now
            head.outcome = "timeout"
            if not head.request.done:
                self._retry(head)
