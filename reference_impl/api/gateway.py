"""The gateway's per-app state and the steps every /v1 request shares: auth, rate limit, store.

One `Gateway` per app holds the deps, the metrics and the in-flight idempotency keys; routes
get it by closure, not from globals, so two apps in one process never share anything (unless
their deps name one multiprocess metrics directory, which is the point of it).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.concurrency import run_in_threadpool

from reference_impl.adapters.rate_limit import RateLimiterUnavailable, blocks
from reference_impl.api.deps import GatewayDeps
from reference_impl.api.metrics import GatewayMetrics
from reference_impl.api.problems import Problem
from reference_impl.api.store_thread import StoreThread
from reference_impl.service.ports import ConcurrentUpdate, StoreError, UnitOfWork
from reference_impl.timings import timings

T = TypeVar("T")

STORE_ATTEMPTS = 3
"""A unit of work rolled back by a serialization conflict is retried whole, this many times."""


def render_json(body: Any) -> bytes:
    """A JSON answer's bytes, as JSONResponse renders them; ValueError for NaN or infinity.

    Routes that commit render their answer inside the unit of work, before the commit, so an
    answer that cannot be rendered rolls the work back instead of failing after it is stored.
    """
    return json.dumps(
        body, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode()


_bearer = HTTPBearer(auto_error=False, description="An API key; each key belongs to one tenant.")


class InFlight:
    """(tenant, idempotency key) pairs whose first request this process is still handling.

    Only this process: across gateway processes the store serialises the two units of work on
    the idempotency record, and the later one answers with the earlier one's stored response.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: set[tuple[str, str]] = set()

    @contextmanager
    def claim(self, tenant: str, key: str) -> Iterator[bool]:
        """Yields False (and holds nothing) when the key is already in flight."""
        with self._lock:
            taken = (tenant, key) in self._keys
            if not taken:
                self._keys.add((tenant, key))
        try:
            yield not taken
        finally:
            if not taken:
                with self._lock:
                    self._keys.discard((tenant, key))


class Gateway:
    def __init__(self, deps: GatewayDeps) -> None:
        self.deps = deps
        self.in_flight = InFlight()
        self.store_thread = StoreThread() if deps.store_thread and deps.store.serial else None
        own = deps.registry or CollectorRegistry(auto_describe=True)
        if deps.metrics_dir is None:
            self.metrics = GatewayMetrics(own)
            self.exported = [own]
        else:
            # This process's metrics go to its files in the directory, and /metrics reads every
            # process's files back: the registry that holds them is never exported itself.
            self.metrics = GatewayMetrics(CollectorRegistry())
            merged = CollectorRegistry()
            MultiProcessCollector(merged, path=deps.metrics_dir)  # type: ignore[no-untyped-call]
            self.exported = [merged, own]

    def metrics_text(self) -> bytes:
        """The Prometheus text of every exported registry, for GET /metrics."""
        return b"".join(generate_latest(registry) for registry in self.exported)

    async def tenant(
        self, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> str:
        """The caller's tenant (401 otherwise), after taking a token from its rate limit (429).

        On the event loop, but for a limiter that blocks (a Redis round trip), which runs in the
        threadpool: a request then makes only the hop to a thread that its store work needs
        (each hop costs about 0.05-0.1 ms of CPU, measured in-process on SQLite).
        """
        tenant = self.deps.api_keys.get(credentials.credentials) if credentials else None
        if tenant is None:
            detail = (
                "Authorization: the API key is not valid"
                if credentials
                else "Authorization: a 'Bearer <API key>' header is required"
            )
            raise Problem(
                401,
                "unauthorized",
                "Unauthorized",
                detail,
                headers={"WWW-Authenticate": 'Bearer realm="payments-testbed"'},
            )
        limiter = self.deps.rate_limiter
        try:
            if blocks(limiter):
                allowed, retry_after = await run_in_threadpool(limiter.allow, tenant)
            else:
                allowed, retry_after = limiter.allow(tenant)
        except RateLimiterUnavailable as e:
            raise Problem(
                503, "unavailable", "Service unavailable", str(e), headers={"Retry-After": "1"}
            ) from e
        if not allowed:
            seconds = max(1, math.ceil(retry_after))
            raise Problem(
                429,
                "rate-limited",
                "Too many requests",
                f"tenant {tenant!r} is over its request rate; retry in {seconds} s",
                headers={"Retry-After": str(seconds)},
                extra={"retry_after": seconds},
            )
        return tenant

    async def in_store(
        self,
        work: Callable[[UnitOfWork], T],
        *,
        commit: bool = False,
        commit_seconds: list[float] | None = None,
    ) -> T:
        """Run `work` in one unit of work on a worker thread (store calls block): the gateway's
        store thread when the deps ask for it and the store runs units of work one at a time
        anyway, else the threadpool.

        Committed when `commit` (its time appended to `commit_seconds` and to the process's
        timings); retried whole on a serialization conflict; a store that is down or keeps
        conflicting answers 503, which clients retry.
        """

        def attempt() -> T:
            for tries_left in range(STORE_ATTEMPTS - 1, -1, -1):
                try:
                    with self.deps.store.unit_of_work() as uow:
                        result = work(uow)
                        if commit:
                            before = time.perf_counter()
                            uow.commit()
                            spent = time.perf_counter() - before
                            timings().commit(1, spent)
                            if commit_seconds is not None:
                                commit_seconds.append(spent)
                        return result
                except ConcurrentUpdate:
                    if not tries_left:
                        raise
            raise AssertionError("unreachable: the last attempt returns or raises")

        try:
            if self.store_thread is not None:
                return await self.store_thread.run(attempt)
            return await run_in_threadpool(attempt)
        except StoreError as e:
            raise Problem(
                503,
                "store-unavailable",
                "Service unavailable",
                f"the store could not complete the request ({type(e).__name__}); retry",
                headers={"Retry-After": "1"},
            ) from e
