"""The gateway's operational contract: rate limiting (429), store and limiter outages (503),
metrics, the notify hook and the per-app isolation the runtime relies on.

The memory store is enough here: these rules live in the gateway, not in the store.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, Gauge

from reference_impl.adapters.memory import MemoryStore
from reference_impl.adapters.rate_limit import (
    RateLimiter,
    RedisTokenBucket,
    TokenBucket,
    Unlimited,
)
from reference_impl.api import GatewayDeps, create_app
from reference_impl.service.payments import PAYMENT
from reference_impl.service.ports import ConcurrentUpdate, Store, StoreUnavailable, UnitOfWork

pytestmark = pytest.mark.anyio

ACME = {"Authorization": "Bearer key-acme"}
GLOBEX = {"Authorization": "Bearer key-globex"}
BODY = {"debtor_account": "alice", "creditor_account": "bob", "amount": 100, "currency": "EUR"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.t = now

    def now(self) -> float:
        return self.t


class FlakyStore(Store):
    """Raises `errors` (one per unit of work opened) before delegating to a memory store."""

    def __init__(self) -> None:
        self.inner = MemoryStore()
        self.url = self.inner.url
        self.errors: list[Exception] = []
        self.opened = 0

    def unit_of_work(self) -> UnitOfWork:
        self.opened += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.inner.unit_of_work()

    def close(self) -> None:
        self.inner.close()


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


def deps(
    store: Store,
    limiter: RateLimiter | None = None,
    clock: FakeClock | None = None,
    **more: Any,
) -> GatewayDeps:
    ids = itertools.count(1)
    return GatewayDeps(
        store=store,
        api_keys={"key-acme": "acme", "key-globex": "globex"},
        clock=clock or FakeClock(),
        new_id=lambda: f"id{next(ids)}",
        rate_limiter=limiter or Unlimited(),
        **more,
    )


async def open_accounts(client: httpx.AsyncClient, headers: dict[str, str] = ACME) -> None:
    for body in (
        {"id": "alice", "currency": "EUR", "overdraft": True},
        {"id": "bob", "currency": "EUR"},
    ):
        assert (await client.post("/v1/accounts", json=body, headers=headers)).status_code == 201


# -- rate limiting ------------------------------------------------------------------------


async def test_over_the_rate_answers_429_with_retry_after_until_tokens_refill() -> None:
    clock = FakeClock()
    limiter = TokenBucket(rate=0.4, burst=2, clock=clock)
    async with client_for(create_app(deps(MemoryStore(), limiter, clock))) as client:
        assert (await client.get("/v1/journal", headers=ACME)).status_code == 200
        assert (await client.get("/v1/journal", headers=ACME)).status_code == 200
        r = await client.get("/v1/journal", headers=ACME)
        assert r.status_code == 429
        assert r.headers["content-type"] == "application/problem+json"
        # One token takes 2.5 s at 0.4/s: Retry-After is whole seconds, rounded up.
        assert r.headers["retry-after"] == "3"
        assert r.json()["retry_after"] == 3 and r.json()["status"] == 429
        # The limit is per tenant: Globex still has its whole burst.
        assert (await client.get("/v1/journal", headers=GLOBEX)).status_code == 200
        # Requests without a valid key are refused before they can spend a tenant's tokens.
        assert (await client.get("/v1/journal")).status_code == 401
        clock.t += 2.5
        assert (await client.get("/v1/journal", headers=ACME)).status_code == 200
        assert (await client.get("/v1/journal", headers=ACME)).status_code == 429


async def test_payments_are_rate_limited_before_anything_is_stored() -> None:
    clock = FakeClock()
    store = MemoryStore()
    limiter = TokenBucket(rate=1.0, burst=3, clock=clock)
    async with client_for(create_app(deps(store, limiter, clock))) as client:
        await open_accounts(client)
        headers = {**ACME, "Idempotency-Key": "k"}
        assert (await client.post("/v1/payments", json=BODY, headers=headers)).status_code == 202
        r = await client.post("/v1/payments", json=BODY, headers={**ACME, "Idempotency-Key": "k2"})
        assert r.status_code == 429 and r.headers["retry-after"] == "1"
    assert [k for (_, k, _) in store.records(PAYMENT)] == ["id1"]


def test_token_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10.0, burst=5, clock=clock)
    assert [bucket.allow("t")[0] for _ in range(6)] == [True] * 5 + [False]
    allowed, retry_after = bucket.allow("t")
    assert not allowed and retry_after == pytest.approx(0.1)
    clock.t += 0.25  # 2.5 tokens
    assert [bucket.allow("t")[0] for _ in range(3)] == [True, True, False]
    clock.t += 1000.0  # refills to the burst, not beyond
    assert [bucket.allow("t")[0] for _ in range(6)] == [True] * 5 + [False]
    clock.t -= 50.0  # a clock stepping back neither refills nor drains
    assert bucket.allow("t")[0] is False


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (float("inf"), 1), (1.0, 0)])
def test_token_bucket_refuses_a_meaningless_limit(rate: float, burst: int) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst, FakeClock())


async def test_unreachable_redis_limiter_answers_503() -> None:
    import redis

    client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    limiter = RedisTokenBucket(client, rate=10.0, burst=10)
    async with client_for(create_app(deps(MemoryStore(), limiter))) as http:
        r = await http.get("/v1/journal", headers=ACME)
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert "Redis" in r.json()["detail"]


class ThreadRecorder:
    """A limiter that allows everything and records the thread each call ran on."""

    def __init__(self, blocking: bool | None) -> None:
        if blocking is not None:
            self.blocking = blocking
        self.threads: list[threading.Thread] = []

    def allow(self, tenant: str) -> tuple[bool, float]:
        self.threads.append(threading.current_thread())
        return True, 0.0


@pytest.mark.parametrize(("blocking", "on_the_loop"), [(False, True), (True, False), (None, False)])
async def test_only_a_limiter_that_blocks_is_called_off_the_event_loop(
    blocking: bool | None, on_the_loop: bool
) -> None:
    limiter = ThreadRecorder(blocking)  # None: says nothing, so it is assumed to block
    async with client_for(create_app(deps(MemoryStore(), limiter))) as client:
        assert (await client.get("/v1/journal", headers=ACME)).status_code == 200
    loop_thread = threading.current_thread()  # httpx's ASGI transport runs the app here
    assert [t is loop_thread for t in limiter.threads] == [on_the_loop]


# -- store outages ------------------------------------------------------------------------


async def test_serialization_conflicts_are_retried_whole() -> None:
    store = FlakyStore()
    async with client_for(create_app(deps(store))) as client:
        await open_accounts(client)
        store.errors = [ConcurrentUpdate("conflict"), ConcurrentUpdate("conflict")]
        headers = {**ACME, "Idempotency-Key": "k"}
        r = await client.post("/v1/payments", json=BODY, headers=headers)
        assert r.status_code == 202
        assert [k for (_, k, _) in store.inner.records(PAYMENT)] == ["id1"]
        store.errors = [ConcurrentUpdate("conflict")] * 3
        r = await client.post("/v1/payments", json=BODY, headers={**ACME, "Idempotency-Key": "x"})
        assert r.status_code == 503 and r.headers["retry-after"] == "1"


async def test_store_unavailable_answers_503_problem() -> None:
    store = FlakyStore()
    async with client_for(create_app(deps(store))) as client:
        store.errors = [StoreUnavailable("sqlite:///gone.db: disk I/O error")]
        r = await client.get("/v1/accounts/alice", headers=ACME)
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "/problems/store-unavailable"


class ThreadRecordingStore(FlakyStore):
    """Records the thread each unit of work is opened on; `serial` as the test says."""

    def __init__(self, serial: bool) -> None:
        super().__init__()
        self.serial = serial
        self.threads: list[threading.Thread] = []

    def unit_of_work(self) -> UnitOfWork:
        self.threads.append(threading.current_thread())
        return super().unit_of_work()


@pytest.mark.parametrize(
    ("serial", "store_thread"), [(True, True), (True, False), (False, True), (False, False)]
)
async def test_a_serial_stores_units_of_work_run_on_the_gateways_store_thread_when_asked(
    serial: bool, store_thread: bool
) -> None:
    store = ThreadRecordingStore(serial)
    async with client_for(create_app(deps(store, store_thread=store_thread))) as client:
        await open_accounts(client)
        headers = {**ACME, "Idempotency-Key": "k"}
        assert (await client.post("/v1/payments", json=BODY, headers=headers)).status_code == 202
        assert (await client.get("/v1/payments/id1", headers=ACME)).status_code == 200
    assert len(store.threads) == 4
    assert threading.current_thread() not in store.threads  # never on the event loop
    # One store-wide lock (SQLite), and the deps ask for it: its own thread; else the threadpool's.
    assert {t.name == "store" for t in store.threads} == {serial and store_thread}


# -- notify, metrics, isolation -----------------------------------------------------------


async def test_notify_runs_after_each_new_payment_but_not_after_a_replay_or_a_refusal() -> None:
    calls: list[int] = []
    store = MemoryStore()

    def notify() -> None:
        # Called after the commit: the payment is already visible to a woken worker.
        with store.unit_of_work() as uow:
            calls.append(len(uow.list_records(PAYMENT, "acme")))

    async with client_for(create_app(deps(store, notify=notify))) as client:
        await open_accounts(client)
        for key in ("a", "a", "b"):
            r = await client.post(
                "/v1/payments", json=BODY, headers={**ACME, "Idempotency-Key": key}
            )
            assert r.status_code == 202
        bad = {**BODY, "amount": 0}
        r = await client.post("/v1/payments", json=bad, headers={**ACME, "Idempotency-Key": "c"})
        assert r.status_code == 422
    assert calls == [1, 2]


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text output (0.0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        body, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in body for k, v in labels.items()):
            return float(value)
    return 0.0


async def test_metrics_count_requests_by_route_template_and_payments_by_outcome() -> None:
    app_a = create_app(deps(MemoryStore()))
    app_b = create_app(deps(MemoryStore()))  # a second app in one process must not clash
    async with client_for(app_a) as a, client_for(app_b) as b:
        await open_accounts(a)
        for key in ("k1", "k1", "k2"):
            await a.post("/v1/payments", json=BODY, headers={**ACME, "Idempotency-Key": key})
        await a.post(
            "/v1/payments", json={**BODY, "amount": 1.5}, headers={**ACME, "Idempotency-Key": "k3"}
        )
        await a.get("/v1/payments/id1", headers=ACME)
        await a.get("/v1/payments/nope", headers=ACME)
        await a.get("/no/such/route")
        text = (await a.get("/metrics")).text
        other = (await b.get("/metrics")).text
    hist = "testbed_gateway_request_duration_seconds_count"
    assert sample(text, hist, route="/v1/payments", method="POST", status="202") == 3
    assert sample(text, hist, route="/v1/payments", method="POST", status="422") == 1
    assert sample(text, hist, route="/v1/payments/{payment_id}", status="200") == 1
    assert sample(text, hist, route="/v1/payments/{payment_id}", status="404") == 1
    assert sample(text, hist, route="unmatched", status="404") == 1
    assert "nope" not in text  # raw ids never become label values
    payments = "testbed_gateway_payments_total"
    assert sample(text, payments, outcome="accepted") == 2
    assert sample(text, payments, outcome="replayed") == 1
    assert sample(text, payments, outcome="invalid") == 1
    assert sample(other, payments, outcome="accepted") == 0
    assert sample(other, hist, route="/v1/payments", method="POST", status="202") == 0


async def test_metrics_export_the_registry_the_runtime_passes() -> None:
    registry = CollectorRegistry()
    lag = Gauge("testbed_queue_lag_events", "events not yet consumed", registry=registry)
    lag.set(7)
    async with client_for(create_app(deps(MemoryStore(), registry=registry))) as client:
        await client.get("/healthz")
        text = (await client.get("/metrics")).text
    assert "testbed_queue_lag_events 7.0" in text
    assert sample(text, "testbed_gateway_request_duration_seconds_count", route="/healthz") == 1


async def test_invalid_payment_found_by_the_service_counts_as_invalid() -> None:
    async with client_for(create_app(deps(MemoryStore()))) as client:
        await open_accounts(client)
        body = {**BODY, "creditor_account": "ghost"}
        await client.post("/v1/payments", json=body, headers={**ACME, "Idempotency-Key": "k"})
        text = (await client.get("/metrics")).text
    assert sample(text, "testbed_gateway_payments_total", outcome="invalid") == 1


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(create_app(deps(MemoryStore()))) as c:
        yield c


async def test_openapi_documents_every_contract_route(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert {
        "/v1/accounts",
        "/v1/accounts/{account_id}",
        "/v1/payments",
        "/v1/payments/{payment_id}",
        "/v1/journal",
        "/v1/settlements",
        "/v1/reconciliation",
        "/healthz",
        "/metrics",
    } <= set(paths)
    body = paths["/v1/payments"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["amount"]["type"] == "integer"
    assert body["additionalProperties"] is False
