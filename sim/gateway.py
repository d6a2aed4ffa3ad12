"""Gateway replicas behind a load balancer: each request runs the real `accept_payment`.

A replica spends its CPU time (auth, validation), then commits the idempotency record, the
payment and its PaymentReceived event on the ledger in one unit of work, and answers. The
balancer sends each request to the next live replica; a request that reaches a replica which
crashed meanwhile is refused, and one in flight at a crash is never answered (the client's
timeout and retry take it from there).

Two bug-zoo variants split that one unit of work in two, with a commit's time between, so a
concurrent request or a crash can fall into the gap: `idempotency-race` looks the key up in
one unit of work and inserts in the next; `publish-before-commit` publishes the payment to the
workers in one and records the key's answer in the next.

With `topology.gateway.rate_limit` each request first takes a token from its tenant's bucket
(`RateLimits`: the real gateway's TokenBucket on the simulated clock), before any CPU is spent:
over the limit it is answered 429 (the client retries it like a 5xx, as real clients do), and
while a shared limit's Redis is down (a `redis` fault) 503, since the real limiter fails closed.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import partial

import simpy

from reference_impl.adapters.rate_limit import TokenBucket
from reference_impl.core.errors import InvalidInput
from reference_impl.service.accept import Acceptance, accept_payment, record_answer, replay_for
from reference_impl.service.payments import PaymentsConfig
from scenarios.schema import RateLimit
from sim.clients import Attempt, Clients
from sim.consumers import SimClock
from sim.ledger import LedgerNode
from sim.network import CLIENT_ZONE, Network
from sim.node import Job, JobRun, Node, NodeDown
from sim.service_times import ServiceTimes

Accepted = Callable[[Acceptance, str], None]
"""Told of each new payment (not of replays): the acceptance and the debtor's event key."""


class RateLimits:
    """Per-tenant token buckets in simulated time: one set for every replica when the limit is
    shared (Redis in load mode), one per replica otherwise (each process its own TokenBucket).

    While the shared limit's Redis is down the real `RedisTokenBucket` raises and the gateway
    answers 503 (fail closed); Redis comes back empty, so every bucket starts full again."""

    def __init__(self, env: simpy.Environment, spec: RateLimit) -> None:
        self.spec = spec
        self.clock = SimClock(env)
        self.redis_down = False
        self.limited = 0
        """Requests answered 429."""
        self.unavailable = 0
        """Requests answered 503 because Redis was down."""
        self._buckets: dict[str, TokenBucket] = {}

    def check(self, replica: str, tenant: str) -> int:
        """0 when the request may proceed, else the status to answer (429 or 503)."""
        if self.spec.shared and self.redis_down:
            self.unavailable += 1
            return 503
        key = "" if self.spec.shared else replica
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.spec.rate, self.spec.tokens, self.clock)
        allowed, _retry_after = bucket.allow(tenant)
        if allowed:
            return 0
        self.limited += 1
        return 429

    def redis_restarted(self) -> None:
        """Redis is back, without the buckets it held."""
        self.redis_down = False
        self._buckets.clear()


class Gateway:
    def __init__(
        self,
        replicas: list[Node],
        ledger: LedgerNode,
        network: Network,
        times: ServiceTimes,
        rng: random.Random,
        config: PaymentsConfig,
        accepted: Accepted,
        rate_limit: RateLimit | None = None,
    ) -> None:
        self.replicas = replicas
        self.ledger = ledger
        self.network = network
        self.times = times
        self.rng = rng
        self.config = config
        self.accepted = accepted
        self.clients: Clients | None = None
        self.limits = RateLimits(ledger.env, rate_limit) if rate_limit is not None else None
        self._next = 0
        self._ids = 0

    def route(self, attempt: Attempt) -> None:
        """The load balancer: the next live replica, or a refusal when none is up."""
        n = len(self.replicas)
        for i in range(n):
            node = self.replicas[(self._next + i) % n]
            if node.up:
                self._next = (self._next + i + 1) % n
                self.network.deliver(CLIENT_ZONE, node.zone, partial(self._arrive, node, attempt))
                return
        self._reply(CLIENT_ZONE, attempt, 503, "", "error")

    def _arrive(self, node: Node, attempt: Attempt) -> None:
        if not node.submit(_Accept(self, node, attempt)):
            self._reply(node.zone, attempt, 503, "", "error")

    def _reply(
        self, zone: str, attempt: Attempt, status: int, payment_id: str, outcome: str
    ) -> None:
        clients = self.clients
        assert clients is not None
        self.network.deliver(
            zone, CLIENT_ZONE, lambda: clients.answer(attempt, status, payment_id, outcome)
        )

    def commit_accept(self, attempt: Attempt, payment_id: str) -> Acceptance:
        req = attempt.request
        now = self.ledger.env.now
        with self.ledger.store.unit_of_work() as uow:
            acceptance = accept_payment(
                uow, req.tenant, req.key, req.body, req.request_hash, payment_id, now, self.config
            )
            uow.commit()
        if not acceptance.replayed:
            self.accepted(acceptance, f"{req.tenant}/{req.body.debtor_account}")
        return acceptance

    def look_up(self, attempt: Attempt) -> Acceptance | None:
        """`idempotency-race`: the key's stored answer, in a unit of work of its own."""
        req = attempt.request
        with self.ledger.store.unit_of_work() as uow:
            return replay_for(uow, req.tenant, req.key, req.request_hash, self.ledger.env.now)

    def commit_answer(self, attempt: Attempt, acceptance: Acceptance) -> Acceptance:
        """`publish-before-commit`: record the key's answer after the payment went out."""
        req = attempt.request
        now = self.ledger.env.now
        with self.ledger.store.unit_of_work() as uow:
            answer = record_answer(
                uow, req.tenant, req.key, req.request_hash, acceptance, now, self.config
            )
            uow.commit()
        return answer

    def new_payment_id(self) -> str:
        self._ids += 1
        return f"p{self._ids}"


class _Accept(Job):
    __slots__ = ("attempt", "gateway", "node")

    def __init__(self, gateway: Gateway, node: Node, attempt: Attempt) -> None:
        super().__init__()
        self.gateway = gateway
        self.node = node
        self.attempt = attempt

    def run(self) -> JobRun:
        gw, node, attempt = self.gateway, self.node, self.attempt
        ledger = gw.ledger
        if gw.limits is not None:
            refused = gw.limits.check(node.name, attempt.request.tenant)
            if refused:
                outcome = "rate_limited" if refused == 429 else "error"
                gw._reply(node.zone, attempt, refused, "", outcome)
                return
        # The ledger round trip is folded into the hold: links have no queue of their own.
        yield node.compute(gw.times.gateway_accept.sample(gw.rng))
        yield node.env.timeout(gw.network.rtt(node.zone, ledger.zone))
        payment_id = gw.new_payment_id()
        bugs = gw.config.bugs
        try:
            if "idempotency-race" in bugs:
                replay = yield ledger.call(lambda: gw.look_up(attempt), origin=node)
                if replay is not None:
                    pid = str(replay.body["id"])
                    gw._reply(node.zone, attempt, replay.status_code, pid, "replayed")
                    return
            acceptance = yield ledger.call(
                lambda: gw.commit_accept(attempt, payment_id), origin=node
            )
            if "publish-before-commit" in bugs and not acceptance.replayed:
                published = acceptance
                acceptance = yield ledger.call(
                    lambda: gw.commit_answer(attempt, published), origin=node
                )
        except InvalidInput:
            gw._reply(node.zone, attempt, 422, "", "rejected")
        except NodeDown:
            gw._reply(node.zone, attempt, 503, "", "error")
        else:
            outcome = "replayed" if acceptance.replayed else "accepted"
            pid = str(acceptance.body["id"])
            gw._reply(node.zone, attempt, acceptance.status_code, pid, outcome)
