"""The Locust side: a pacer that hands out the open-model schedule, and the users that send it.

Locust's users are a closed loop (each waits for its answer, then for `wait_time`), which would
let a slow server slow the clients down: coordinated omission. Here the schedule decides when a
payment is sent, never an answer. One `Pacer` per generator process walks the schedule
(pacing.py) and the retries (attempts.py) and, at each attempt's intended time, hands it to an
idle user (the most recently idle first, so only as many connections as needed stay warm). If
every user is busy the attempt waits in a backlog for the next free one; either way its latency
is measured from the intended time, and a send that starts late is counted, with whether a user
was idle (then the generator itself fell behind) or not (then the users were all held by the
system: `users` caps the attempts in flight, like wrk2's connections).

A user is one Locust `User` with one keep-alive connection (wire.py: a lean HTTP/1.1 client,
since the generator's CPU is taken from the server it measures); it reports every
attempt to Locust's request event, so Locust's own statistics (from the actual send) sit beside
ours. Importing this module imports Locust and with it gevent's monkey patching: only generator
processes (loadtest/generator.py) import it.
"""

from __future__ import annotations

import gc
import heapq
import itertools
import json
import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, ClassVar
from urllib.parse import urlsplit

import gevent
import psutil
from gevent.event import Event
from locust import User, constant, task
from locust.exception import StopUser

from loadtest.attempts import Attempt, Clients, outcome
from loadtest.pacing import Arrival, request_body, retries_seed, schedule
from loadtest.plan import TrafficPlan
from loadtest.recorder import Recorder
from loadtest.wire import Connection, post_request, request_head

SAMPLE_INTERVAL = 1.0
BACKLOG_TICK = 0.005
"""While attempts already wait for a user, newly due ones are added this often rather than each
at its own time: no user is idle to take them, and the first to become idle wakes the pacer.
At saturation this spares thousands of wake-ups a second; intended times are unaffected."""
PAYMENTS_PATH = "/v1/payments"


class AttemptFailed(Exception):
    """What Locust's statistics record for an attempt that did not get a 2xx."""


class Pacer:
    """Hands each scheduled attempt to a user at its intended time; one per generator process."""

    def __init__(self, plan: TrafficPlan, process: int) -> None:
        workload = plan.scenario_workload
        self.plan = plan
        self.timeout = workload.client.timeout
        self.end = plan.duration + plan.grace
        self.schedule: Iterator[Arrival] = schedule(
            workload, plan.duration, plan.seed, process, plan.processes
        )
        self.clients = Clients(
            workload.client, random.Random(retries_seed(plan.seed, process, plan.processes))
        )
        self.recorder = Recorder(plan.late_after)
        self.offset = 0.0
        self.closed_at = math.inf
        self.prefix = plan.key_prefix if plan.processes == 1 else f"{plan.key_prefix}w{process}-"
        self.url = urlsplit(plan.base_url)
        path = self.url.path.rstrip("/") + PAYMENTS_PATH
        self.heads = {tenant: request_head(path, self.url.netloc, key)
                      for tenant, key in plan.api_keys.items()}  # fmt: skip
        self.requests = 0
        self.idle: list[TrafficUser] = []
        self.users = 0
        self.started_users = 0
        self.backlog: deque[Attempt] = deque()
        self.retries: list[tuple[float, int, Attempt]] = []
        self.retry_order = itertools.count()
        self.in_flight = 0
        self.closed = False
        self.wake = Event()
        self.sleep_until = math.inf
        self.coarse = False
        self.done = Event()
        self.samples: list[tuple[float, float, int, int]] = []
        self.mono_start = math.inf

    def now(self) -> float:
        """Schedule seconds since the traffic start."""
        return time.monotonic() - self.mono_start

    def go(self, start_at: float) -> None:
        """Start the schedule at wall-clock time `start_at` (the same for every process)."""
        # Everything alive now (Locust and its web stack, the users) stays alive: keep it out of
        # the collector's sight. A full collection of it takes ~60 ms, a stall of every send.
        gc.freeze()
        # The schedule clock is monotonic, anchored to the wall clock once.
        self.mono_start = time.monotonic() + (start_at - time.time())
        self.offset = start_at - self.plan.t0
        gevent.spawn(self._dispatch)
        gevent.spawn(self._sample)

    # -- the schedule -------------------------------------------------------------------------
    def _dispatch(self) -> None:
        gevent.sleep(max(0.0, -self.now()))
        upcoming = next(self.schedule, None)
        retries = self.retries
        while True:
            now = self.now()
            if now >= self.end:
                break
            while upcoming is not None and upcoming.at <= now:
                self.requests += 1
                key = f"{self.prefix}k{self.requests}"
                if upcoming.pattern:
                    self.recorder.label(key, upcoming)
                for a in self.clients.open(key, upcoming, request_body(upcoming)):
                    self._hand(a)
                upcoming = next(self.schedule, None)
            while retries and retries[0][0] <= now:
                due, _, failed = heapq.heappop(retries)
                self._hand(self.clients.attempt(failed.request, due))
            if upcoming is None and not retries and not self.clients.open_requests:
                break
            due = min(
                upcoming.at if upcoming is not None else math.inf,
                retries[0][0] if retries else math.inf,
                self.end,
            )
            self.coarse = bool(self.backlog) and due < now + BACKLOG_TICK
            self.sleep_until = now + BACKLOG_TICK if self.coarse else due
            self.wake.clear()
            self.wake.wait(self.sleep_until - now)
        self._close()

    def _hand(self, a: Attempt) -> None:
        if self.idle:
            self.idle.pop().give(a)
        else:
            a.waited = True
            self.backlog.append(a)

    def take(self, user: TrafficUser) -> Attempt | None:
        """The user's next attempt, waiting for it; None once the run is over."""
        if self.backlog:
            return self.backlog.popleft()
        if self.closed:
            return None
        self.idle.append(user)
        if self.coarse:
            self.wake.set()  # attempts may be due that the pacer has not handed out yet
        return user.wait_for_work()

    def finished(self, a: Attempt) -> None:
        """The user is done with `a` (answered, failed or timed out)."""
        self.in_flight -= 1
        self.recorder.record(a)
        delay = self.clients.finished(a)
        if delay is not None and self.closed:
            self.clients.abandon(a.request)  # no retries after the end
        elif delay is not None:
            due = a.done + delay
            heapq.heappush(self.retries, (due, next(self.retry_order), a))
            if due < self.sleep_until:
                self.wake.set()
        if not self.clients.open_requests:
            self.wake.set()  # perhaps the last one: the dispatcher decides
        if self.closed and not self.in_flight:
            self.done.set()

    def _close(self) -> None:
        """The run is over: record what never got sent, free the users, await those in flight."""
        self.closed = True
        self.closed_at = self.now()
        for a in self.backlog:
            a.outcome = "timeout"
            self.recorder.record(a)
            self.clients.abandon(a.request)
        self.backlog.clear()
        for _due, _seq, a in self.retries:
            self.clients.abandon(a.request)
        self.retries.clear()
        while self.idle:
            self.idle.pop().give(None)
        if not self.in_flight:
            self.done.set()

    # -- self-observation ---------------------------------------------------------------------
    def _sample(self) -> None:
        """Every second: this process's CPU (fraction of one core), busy users, backlog."""
        proc = psutil.Process()
        last_cpu = sum(proc.cpu_times()[:2])
        last = time.monotonic()
        while not self.done.is_set():
            self.done.wait(SAMPLE_INTERVAL)
            cpu = sum(proc.cpu_times()[:2])
            now = time.monotonic()
            busy = self.users - len(self.idle)
            share = (cpu - last_cpu) / (now - last) if now > last else 0.0
            at = self.offset + (now - self.mono_start)
            self.samples.append((at, share, busy, len(self.backlog)))
            last_cpu, last = cpu, now


class TrafficUser(User):
    """A client connection: sends whatever attempt the pacer hands it, one at a time."""

    pacer: ClassVar[Pacer | None] = None
    wait_time = constant(0)

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self._ready = Event()
        self._next: Attempt | None = None
        self._connection: Connection | None = None
        self._fire: Callable[..., None] = environment.events.request.fire

    def give(self, a: Attempt | None) -> None:
        self._next = a
        self._ready.set()

    def wait_for_work(self) -> Attempt | None:
        self._ready.wait()
        self._ready.clear()
        a, self._next = self._next, None
        return a

    @task
    def send_schedule(self) -> None:
        pacer = self.pacer
        if pacer is None:
            raise StopUser()
        pacer.users += 1
        pacer.started_users += 1
        try:
            while (a := pacer.take(self)) is not None:
                pacer.in_flight += 1
                self._send(pacer, a)
                pacer.finished(a)
        finally:
            pacer.users -= 1
        raise StopUser()

    def _drop_connection(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _send(self, pacer: Pacer, a: Attempt) -> None:
        """One POST with the client's timeout over the whole exchange, connecting included."""
        req = a.request
        request = post_request(pacer.heads[req.arrival.tenant], req.key, req.body)
        if self._connection is not None and self._connection.stale():
            self._drop_connection()
        error: Exception | None = None
        a.sent = pacer.now()
        timer = gevent.Timeout(pacer.timeout)
        timer.start()
        try:
            if self._connection is None:
                self._connection = Connection(pacer.url)
            response = self._connection.post(request)
        except gevent.Timeout as fired:
            if fired is not timer:
                raise
            a.done = pacer.now()
            a.outcome = "timeout"
            self._drop_connection()  # a real client gives up on the connection too
            error = AttemptFailed("timeout")
        except Exception as e:  # a transport error of any kind: no answer
            a.done = pacer.now()
            a.outcome = "error"
            self._drop_connection()
            error = e
        else:
            a.done = pacer.now()
            a.status = status = response.status
            replayed = response.headers.get("idempotency-replay") == "true"
            a.outcome = outcome(status, replayed)
            if 200 <= status < 300:
                a.payment_id = _payment_id(response.body)
            else:
                error = AttemptFailed(f"{status} {a.outcome}")
            if not response.keep_alive or self._connection.buffered:
                self._drop_connection()
        finally:
            timer.close()
        self._fire(
            request_type="POST", name=PAYMENTS_PATH, response_time=(a.done - a.sent) * 1000,
            response_length=0, exception=error, context={},
        )  # fmt: skip

    def on_stop(self) -> None:
        self._drop_connection()


def _payment_id(content: bytes) -> str:
    try:
        body = json.loads(content)
    except ValueError:
        return ""
    pid = body.get("id") if isinstance(body, dict) else None
    return pid if isinstance(pid, str) else ""
