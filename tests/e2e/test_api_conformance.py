"""The HTTP contract (docs/api.md), through httpx.ASGITransport.

Every rule and every error status, against each store: memory, sqlite (a file in tmp_path) and
postgres (the `postgres_url` fixture, which skips or fails per TESTBED_REQUIRE_SERVICES).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from reference_impl.adapters import open_store
from reference_impl.adapters.memory import MemoryStore
from reference_impl.adapters.rate_limit import RateLimiter, Unlimited
from reference_impl.api import GatewayDeps, create_app
from reference_impl.core.events import TOPICS
from reference_impl.core.journal import JournalEntry, first_broken_link
from reference_impl.core.money import MAX_AMOUNT
from reference_impl.core.payments import PaymentStatus
from reference_impl.core.screening import ScreeningRules
from reference_impl.core.settlement import Break, BreakKind, SettlementBatch
from reference_impl.runtime.consumer import run_step
from reference_impl.service.accept import IDEMPOTENCY
from reference_impl.service.checks import DECISION
from reference_impl.service.consumer import Idle
from reference_impl.service.groups import Identity
from reference_impl.service.members import GroupSettings, payments_member
from reference_impl.service.payments import (
    PAYMENT as PAYMENT_RECORD,
)
from reference_impl.service.payments import PaymentsConfig, get_payment, save_payment
from reference_impl.service.ports import Store, UnitOfWork
from reference_impl.service.settlement import BATCH, BREAK

pytestmark = pytest.mark.anyio

KEYS = {"key-acme": "acme", "key-acme-2": "acme", "key-globex": "globex"}
ACME = {"Authorization": "Bearer key-acme"}
GLOBEX = {"Authorization": "Bearer key-globex"}
PROBLEM = "application/problem+json"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.t = now

    def now(self) -> float:
        return self.t


class HeldStore(Store):
    """Delegates to a real store; when `hold` is set, the next unit of work waits for
    `release`, so a test can keep one request in flight while it sends another."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.url = inner.url
        self.hold = False
        self.entered = threading.Event()
        self.release = threading.Event()

    def unit_of_work(self) -> UnitOfWork:
        if self.hold:
            self.hold = False
            self.entered.set()
            assert self.release.wait(10), "the test never released the held request"
        return self.inner.unit_of_work()

    def close(self) -> None:
        self.inner.close()


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HeldStore]:
    if request.param == "memory":
        inner: Store = MemoryStore()
    elif request.param == "sqlite":
        inner = open_store(f"sqlite:///{tmp_path}/gateway.db")
    else:
        inner = open_store(request.getfixturevalue("postgres_url"))
    held = HeldStore(inner)
    yield held
    held.release.set()
    held.close()


class Gateway:
    """The app over one store, a client for it, and the steps the tests repeat."""

    def __init__(self, store: HeldStore, client: httpx.AsyncClient, clock: FakeClock) -> None:
        self.store = store
        self.client = client
        self.clock = clock
        self.config = PaymentsConfig(partitions=2)
        self.worker = payments_member(
            Identity("worker"), clock, GroupSettings(partitions=2), self.config, ScreeningRules()
        )
        self.notified = 0

    async def open(
        self, account_id: str, currency: str = "EUR", headers: dict[str, str] = ACME, **more: Any
    ) -> httpx.Response:
        r = await self.client.post(
            "/v1/accounts", json={"id": account_id, "currency": currency, **more}, headers=headers
        )
        assert r.status_code == 201, r.text
        return r

    async def pay(
        self, body: Any, key: str | None = "k1", headers: dict[str, str] = ACME
    ) -> httpx.Response:
        h = dict(headers)
        if key is not None:
            h["Idempotency-Key"] = key
        if isinstance(body, bytes):
            h.setdefault("Content-Type", "application/json")
            return await self.client.post("/v1/payments", content=body, headers=h)
        return await self.client.post("/v1/payments", json=body, headers=h)

    def records(self, kind: str, tenant: str = "acme") -> list[tuple[str, str]]:
        with self.store.inner.unit_of_work() as uow:
            return uow.list_records(kind, tenant)

    def run_payments_worker(self) -> None:
        """One fetch-and-commit of the payments group's member, as the runtime's worker does."""
        self.clock.t += 1.0
        self.worker.wake()
        while not isinstance(step := self.worker.next(), Idle):
            run_step(self.store.inner, step)
            if step.name == "poll":
                return


def build(
    store: HeldStore,
    limiter: RateLimiter | None = None,
    notify: Callable[[], None] | None = None,
    operator_keys: frozenset[str] = frozenset(),
) -> tuple[Any, Gateway]:
    clock = FakeClock()
    ids = itertools.count(1)
    holder: list[Gateway] = []

    def count_notifications() -> None:
        holder[0].notified += 1

    deps = GatewayDeps(
        store=store,
        api_keys=KEYS,
        clock=clock,
        new_id=lambda: f"id{next(ids):04d}",
        rate_limiter=limiter or Unlimited(),
        payments=PaymentsConfig(partitions=2),
        notify=notify or count_notifications,
        poll_interval=0.01,
        operator_keys=operator_keys,
    )
    app = create_app(deps)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")
    gw = Gateway(store, client, clock)
    holder.append(gw)
    return app, gw


@pytest.fixture
async def gw(store: HeldStore) -> AsyncIterator[Gateway]:
    _, gateway = build(store)
    async with gateway.client:
        await gateway.open("alice", overdraft=True, holder_name="Alice")
        await gateway.open("bob", holder_name="Bob")
        await gateway.open("dollar", "USD")
        yield gateway


BODY = {"debtor_account": "alice", "creditor_account": "bob", "amount": 1250, "currency": "EUR"}


def assert_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    assert isinstance(body["type"], str) and body["type"]
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    return body


# -- auth and tenant isolation ------------------------------------------------------------

V1_ROUTES = [
    ("POST", "/v1/accounts"),
    ("GET", "/v1/accounts/alice"),
    ("POST", "/v1/payments"),
    ("GET", "/v1/payments/id0001"),
    ("GET", "/v1/journal"),
    ("GET", "/v1/settlements"),
    ("GET", "/v1/reconciliation"),
]


@pytest.mark.parametrize(("method", "path"), V1_ROUTES)
@pytest.mark.parametrize(
    "authorization", [None, "Bearer nope", "Basic a2V5LWFjbWU6", "Bearer", "key-acme"]
)
async def test_every_v1_route_answers_401_without_a_valid_bearer_key(
    gw: Gateway, method: str, path: str, authorization: str | None
) -> None:
    headers = {"Idempotency-Key": "k"} | ({"Authorization": authorization} if authorization else {})
    # A malformed body must not win over the missing credentials.
    r = await gw.client.request(method, path, content=b"{not json", headers=headers)
    assert_problem(r, 401)
    assert r.headers["www-authenticate"].startswith("Bearer")


async def test_a_tenant_never_sees_another_tenants_accounts_or_payments(gw: Gateway) -> None:
    paid = await gw.pay(BODY)
    assert paid.status_code == 202
    payment_id = paid.json()["id"]
    assert_problem(await gw.client.get("/v1/accounts/alice", headers=GLOBEX), 404)
    assert_problem(await gw.client.get(f"/v1/payments/{payment_id}", headers=GLOBEX), 404)
    journal = await gw.client.get("/v1/journal", headers=GLOBEX)
    assert journal.json() == {"entries": [], "next": 0}
    # Globex cannot spend from Acme's accounts: for Globex they do not exist.
    r = await gw.pay(BODY, key="k1", headers=GLOBEX)
    assert assert_problem(r, 422)["errors"][0]["field"] == "debtor_account"
    # The same ids and the same idempotency key are Globex's own, independent of Acme's.
    await gw.open("alice", headers=GLOBEX, overdraft=True)
    await gw.open("bob", headers=GLOBEX)
    r = await gw.pay(BODY, key="k1", headers=GLOBEX)
    assert r.status_code == 202 and "idempotency-replay" not in r.headers
    assert r.json()["id"] != payment_id
    # A second key of the same tenant sees the same data.
    other_key = {"Authorization": "Bearer key-acme-2"}
    assert (await gw.client.get(f"/v1/payments/{payment_id}", headers=other_key)).status_code == 200


# -- accounts -----------------------------------------------------------------------------


async def test_create_account_answers_201_with_location_and_zero_balances(gw: Gateway) -> None:
    r = await gw.open("carol", "JPY", holder_name="Carol")
    assert r.headers["location"] == "/v1/accounts/carol"
    expected = {
        "id": "carol",
        "currency": "JPY",
        "overdraft": False,
        "holder_name": "Carol",
        "balance": {
            "posted": 0,
            "pending": 0,
            "available": 0,
            "debits_posted": 0,
            "debits_pending": 0,
            "credits_posted": 0,
            "credits_pending": 0,
        },
    }
    assert r.json() == expected
    assert (await gw.client.get("/v1/accounts/carol", headers=ACME)).json() == expected


async def test_create_account_without_id_gets_a_fresh_one(gw: Gateway) -> None:
    r = await gw.client.post("/v1/accounts", json={"currency": "EUR"}, headers=ACME)
    assert r.status_code == 201
    assert r.json()["id"] == "id0001"
    assert r.headers["location"] == "/v1/accounts/id0001"


@pytest.mark.parametrize(
    "body",
    [
        {"id": "bob", "currency": "EUR"},
        {"id": "bob", "currency": "USD"},
        {"id": "bob", "currency": "EUR", "overdraft": True},
    ],
)
async def test_duplicate_account_id_answers_409(gw: Gateway, body: dict[str, Any]) -> None:
    assert_problem(await gw.client.post("/v1/accounts", json=body, headers=ACME), 409)
    account = (await gw.client.get("/v1/accounts/bob", headers=ACME)).json()
    assert (account["currency"], account["overdraft"]) == ("EUR", False)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"id": "x", "currency": "XYZ"}, "currency"),
        ({"id": "x", "currency": "eur"}, "currency"),
        ({"id": "x"}, "currency"),
        ({"id": "x", "currency": "EUR", "overdraft": "yes"}, "overdraft"),
        ({"id": "x", "currency": "EUR", "overdraft": 1}, "overdraft"),
        ({"id": "", "currency": "EUR"}, "id"),
        ({"id": "a/b", "currency": "EUR"}, "id"),
        ({"id": "x" * 129, "currency": "EUR"}, "id"),
        ({"id": 7, "currency": "EUR"}, "id"),
        ({"id": "x", "currency": "EUR", "colour": "red"}, "colour"),
    ],
)
async def test_invalid_account_answers_422_naming_the_field(
    gw: Gateway, body: dict[str, Any], field: str
) -> None:
    r = await gw.client.post("/v1/accounts", json=body, headers=ACME)
    problem = assert_problem(r, 422)
    assert [e["field"] for e in problem["errors"]] == [field]
    assert field in problem["detail"]
    assert_problem(await gw.client.get("/v1/accounts/x", headers=ACME), 404)


async def test_unknown_account_answers_404(gw: Gateway) -> None:
    assert_problem(await gw.client.get("/v1/accounts/nobody", headers=ACME), 404)


# -- payments: accept ---------------------------------------------------------------------


async def test_payment_answers_202_with_body_and_location(gw: Gateway) -> None:
    body = {**BODY, "reference": "invoice 7", "metadata": {"order": "A-1"}}
    r = await gw.pay(body)
    assert r.status_code == 202
    payment = r.json()
    assert payment["id"] == "id0001"
    assert r.headers["location"] == "/v1/payments/id0001"
    assert "idempotency-replay" not in r.headers
    assert {k: payment[k] for k in body} == body
    assert payment["status"] == "received"
    assert payment["received_at"] == gw.clock.t
    assert payment["debtor_name"] == "Alice" and payment["creditor_name"] == "Bob"
    assert "posted_at" not in payment and "reason" not in payment
    fetched = await gw.client.get("/v1/payments/id0001", headers=ACME)
    assert fetched.status_code == 200 and fetched.json() == payment
    # Committed before the reply: the payment and its idempotency record are in the store.
    assert [k for k, _ in gw.records(PAYMENT_RECORD)] == ["id0001"]
    assert [k for k, _ in gw.records(IDEMPOTENCY)] == ["k1"]
    assert gw.notified == 1


async def test_largest_amount_is_accepted(gw: Gateway) -> None:
    r = await gw.pay({**BODY, "amount": MAX_AMOUNT})
    assert r.status_code == 202 and r.json()["amount"] == MAX_AMOUNT


@pytest.mark.parametrize("key", [None, "", "k" * 256])
async def test_missing_or_overlong_idempotency_key_answers_400(
    gw: Gateway, key: str | None
) -> None:
    problem = assert_problem(await gw.pay(BODY, key=key), 400)
    assert "Idempotency-Key" in problem["detail"]
    assert gw.records(PAYMENT_RECORD) == []


async def test_idempotency_key_of_255_characters_is_accepted(gw: Gateway) -> None:
    assert (await gw.pay(BODY, key="k" * 255)).status_code == 202


async def test_same_key_and_body_replays_the_stored_answer(gw: Gateway) -> None:
    first = await gw.pay(BODY)
    # The same request serialised differently (key order, whitespace) is the same body.
    reordered = json.dumps(dict(reversed(BODY.items())), indent=2).encode()
    gw.clock.t += 5.0
    again = await gw.pay(reordered)
    assert again.status_code == 202
    assert again.headers["idempotency-replay"] == "true"
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert len(gw.records(PAYMENT_RECORD)) == 1
    assert gw.notified == 1


async def test_same_key_with_a_different_body_answers_422(gw: Gateway) -> None:
    first = await gw.pay(BODY)
    problem = assert_problem(await gw.pay({**BODY, "amount": 1251}), 422)
    assert problem["type"] == "/problems/idempotency-key-reused"
    assert len(gw.records(PAYMENT_RECORD)) == 1
    # The first answer is still the one the key replays.
    assert (await gw.pay(BODY)).json() == first.json()


def raw_payment(metadata: bytes) -> bytes:
    return (
        b'{"debtor_account":"alice","creditor_account":"bob","amount":1250,"currency":"EUR",'
        b'"metadata":' + metadata + b"}"
    )


INVALID_PAYMENTS = [
    ({**BODY, "amount": 10.0}, "amount", "integer"),
    ({**BODY, "amount": 1.5}, "amount", "integer"),
    ({**BODY, "amount": 1e3}, "amount", "integer"),
    ({**BODY, "amount": "1250"}, "amount", "integer"),
    ({**BODY, "amount": True}, "amount", "integer"),
    ({**BODY, "amount": None}, "amount", "integer"),
    ({**BODY, "amount": 0}, "amount", "greater than or equal to 1"),
    ({**BODY, "amount": -5}, "amount", "greater than or equal to 1"),
    ({**BODY, "amount": MAX_AMOUNT + 1}, "amount", "less than or equal to"),
    ({**BODY, "amount": 10**30}, "amount", "less than or equal to"),
    ({**BODY, "currency": "XYZ"}, "currency", "ISO 4217"),
    ({**BODY, "currency": 978}, "currency", "string"),
    ({**BODY, "debtor_account": "ghost"}, "debtor_account", "does not exist"),
    ({**BODY, "creditor_account": "ghost"}, "creditor_account", "does not exist"),
    ({**BODY, "creditor_account": "dollar"}, "creditor_account", "USD, not EUR"),
    ({**BODY, "currency": "USD"}, "debtor_account", "EUR, not USD"),
    ({**BODY, "creditor_account": "alice"}, "creditor_account", "differ"),
    ({k: v for k, v in BODY.items() if k != "amount"}, "amount", "required"),
    ({**BODY, "colour": "red"}, "colour", "not a known field"),
    ({**BODY, "metadata": ["a"]}, "metadata", "object"),
    (b"{not json", "body", "valid JSON"),
    (b"[1, 2]", "body", "object"),
    (b"[" * 60_000, "body", "valid JSON"),
    (raw_payment(b'{"n":' + b"9" * 5_000 + b"}"), "body", "valid JSON"),
]


@pytest.mark.parametrize(("body", "field", "rule"), INVALID_PAYMENTS)
async def test_invalid_payment_answers_422_naming_field_and_rule_and_stores_nothing(
    gw: Gateway, body: Any, field: str, rule: str
) -> None:
    problem = assert_problem(await gw.pay(body, key="k-invalid"), 422)
    assert problem["type"] == "/problems/validation"
    [error] = problem["errors"]
    assert error["field"] == field
    assert rule in error["rule"]
    assert f"{field}: " in problem["detail"]
    assert gw.records(PAYMENT_RECORD) == [] and gw.records(IDEMPOTENCY) == []
    with gw.store.inner.unit_of_work() as uow:
        assert all(uow.log_heads(t) == {} for t in TOPICS)
    # Nothing was stored under the key either: a corrected request with it is accepted.
    assert (await gw.pay(BODY, key="k-invalid")).status_code == 202


async def test_oversized_body_answers_413(gw: Gateway) -> None:
    body = {**BODY, "metadata": {"blob": "x" * 70_000}}
    assert_problem(await gw.pay(body), 413)
    assert gw.records(PAYMENT_RECORD) == []


async def test_same_key_while_the_first_is_in_flight_answers_409(gw: Gateway) -> None:
    responses: dict[str, httpx.Response] = {}

    async def first() -> None:
        responses["first"] = await gw.pay(BODY, key="slow")

    async with anyio.create_task_group() as tg:
        gw.store.hold = True
        tg.start_soon(first)
        assert await anyio.to_thread.run_sync(gw.store.entered.wait, 10)
        try:
            problem = assert_problem(await gw.pay(BODY, key="slow"), 409)
            assert problem["type"] == "/problems/in-flight"
            # Other keys, and the same key of another tenant, are not held up.
            assert (await gw.pay(BODY, key="other")).status_code == 202
            await gw.open("alice", headers=GLOBEX, overdraft=True)
            await gw.open("bob", headers=GLOBEX)
            assert (await gw.pay(BODY, key="slow", headers=GLOBEX)).status_code == 202
        finally:
            gw.store.release.set()
    assert responses["first"].status_code == 202
    # Once the first is done, the key replays its answer.
    again = await gw.pay(BODY, key="slow")
    assert again.headers["idempotency-replay"] == "true"
    assert again.json() == responses["first"].json()


# -- hostile and careless clients ----------------------------------------------------------


def assert_nothing_stored(gw: Gateway) -> None:
    assert gw.records(PAYMENT_RECORD) == [] and gw.records(IDEMPOTENCY) == []
    with gw.store.inner.unit_of_work() as uow:
        assert all(uow.log_heads(t) == {} for t in TOPICS)


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        (b'{"score":NaN}', "metadata.score"),
        (b'{"score":Infinity}', "metadata.score"),
        (b'{"score":-Infinity}', "metadata.score"),
        (b'{"score":1e400}', "metadata.score"),
        (b'{"tags":[1,-1e400]}', "metadata.tags.1"),
    ],
)
async def test_a_number_outside_standard_json_answers_422_and_stores_nothing(
    gw: Gateway, metadata: bytes, field: str
) -> None:
    problem = assert_problem(await gw.pay(raw_payment(metadata)), 422)
    assert problem["errors"] == [
        {"field": field, "in": "body", "rule": "must be a finite JSON number"}
    ]
    assert_nothing_stored(gw)
    # The key is still free, and what it then makes can be answered and replayed.
    first = await gw.pay(BODY)
    assert first.status_code == 202
    again = await gw.pay(BODY)
    assert again.status_code == 202 and again.json() == first.json()


async def test_an_answer_that_cannot_be_rendered_is_never_committed(store: HeldStore) -> None:
    app, gateway = build(store)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        gateway.client = client
        await gateway.open("alice", overdraft=True)
        await gateway.open("bob")
        gateway.clock.t = float("nan")  # received_at: a value no JSON answer can carry
        r = await gateway.pay(BODY)
        # 500 where the answer fails to render; 503 where the store itself refuses NaN (SQLite).
        assert_problem(r, 503 if r.status_code == 503 else 500)
        assert_nothing_stored(gateway)
        gateway.clock.t = 2_000.0
        assert (await gateway.pay(BODY)).status_code == 202


async def test_a_failing_wake_up_does_not_turn_a_committed_payment_into_an_error(
    store: HeldStore,
) -> None:
    _, gateway = build(store, notify=broken_notify)
    async with gateway.client:
        await gateway.open("alice", overdraft=True)
        await gateway.open("bob")
        r = await gateway.pay(BODY)
        assert r.status_code == 202
        assert [k for k, _ in gateway.records(PAYMENT_RECORD)] == [r.json()["id"]]


async def test_a_failing_wake_up_does_not_turn_a_committed_review_into_an_error(
    store: HeldStore,
) -> None:
    _, gateway = build(store, notify=broken_notify, operator_keys=frozenset({"op"}))
    async with gateway.client:
        await gateway.open("alice", overdraft=True)
        await gateway.open("bob")
        pid = (await gateway.pay(BODY)).json()["id"]
        with store.inner.unit_of_work() as uow:  # held for review, as the checks would leave it
            held = get_payment(uow, "acme", pid)
            assert held is not None
            screening = held.move(PaymentStatus.SCREENING)
            save_payment(uow, screening.move(PaymentStatus.HELD, reason="sanctions:review"))
            uow.commit()
        path, headers = f"/v1/payments/{pid}/review", {**ACME, "X-Operator-Key": "op"}
        r = await gateway.client.post(path, json={"verdict": "approve"}, headers=headers)
        assert r.status_code == 202, r.text
        assert r.json()["id"] == pid
        assert [k for k, _ in gateway.records(DECISION)] == [f"{pid}/operator"]


def broken_notify() -> None:
    raise RuntimeError("the wake-up signal is down")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/accounts", {"id": "x", "currency": "EUR", "holder_name": "A\x00B"}, "holder_name"),
        ("/v1/payments", {**BODY, "reference": "inv\x007"}, "reference"),
        ("/v1/payments", {**BODY, "metadata": {"note": "\x00"}}, "metadata.note"),
        ("/v1/payments", {**BODY, "metadata": {"a\x00": 1}}, "metadata"),
        ("/v1/payments", {**BODY, "debtor_account": "ali\x00ce"}, "debtor_account"),
    ],
)
async def test_a_nul_character_answers_422_on_every_store(
    gw: Gateway, path: str, body: dict[str, Any], field: str
) -> None:
    headers = {**ACME, "Idempotency-Key": "k-nul"}
    problem = assert_problem(await gw.client.post(path, json=body, headers=headers), 422)
    assert [e["field"] for e in problem["errors"]] == [field]
    assert_nothing_stored(gw)
    assert_problem(await gw.client.get("/v1/accounts/x", headers=ACME), 404)


@pytest.mark.parametrize("path", ["/v1/settlements", "/v1/reconciliation"])
async def test_a_nul_character_in_a_listing_cursor_answers_422(gw: Gateway, path: str) -> None:
    r = await gw.client.get(path, params={"after": "stl\x00"}, headers=ACME)
    assert assert_problem(r, 422)["errors"][0]["field"] == "after"


async def test_an_oversized_body_is_refused_without_reading_it_all(gw: Gateway) -> None:
    pulled = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(10_000):  # 160 MB if it were all read
            pulled += 1
            yield b" " * 16_384

    headers = {**ACME, "Idempotency-Key": "big", "Content-Type": "application/json"}
    r = await gw.client.post("/v1/payments", content=chunks(), headers=headers)
    assert_problem(r, 413)
    assert pulled <= 5  # the 64 KiB limit is 4 chunks: the 5th crosses it, nothing more is read
    assert_nothing_stored(gw)


async def test_a_declared_oversized_body_is_refused_before_reading_any_of_it(gw: Gateway) -> None:
    pulled = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal pulled
        pulled += 1
        yield b"{}"

    headers = {**ACME, "Idempotency-Key": "big", "Content-Type": "application/json",
               "Content-Length": "150000000"}  # fmt: skip
    problem = assert_problem(
        await gw.client.post("/v1/payments", content=chunks(), headers=headers), 413
    )
    assert "150000000" in problem["detail"]
    assert pulled == 0


@pytest.mark.parametrize("second", ["k2", "k1"])
async def test_two_idempotency_key_headers_answer_400(gw: Gateway, second: str) -> None:
    headers = [("Authorization", "Bearer key-acme"), ("Content-Type", "application/json"),
               ("Idempotency-Key", "k1"), ("Idempotency-Key", second)]  # fmt: skip
    r = await gw.client.post("/v1/payments", content=json.dumps(BODY).encode(), headers=headers)
    problem = assert_problem(r, 400)
    assert problem["type"] == "/problems/idempotency-key"
    assert "exactly one" in problem["detail"]
    assert_nothing_stored(gw)


@pytest.mark.parametrize("path", ["/v1/payments", "/v1/accounts"])
@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "application/xml"]
)
async def test_a_body_that_is_not_declared_json_answers_415(
    gw: Gateway, path: str, content_type: str | None
) -> None:
    body = BODY if path == "/v1/payments" else {"id": "x", "currency": "EUR"}
    headers = {**ACME, "Idempotency-Key": "k-type"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    r = await gw.client.post(path, content=json.dumps(body).encode(), headers=headers)
    problem = assert_problem(r, 415)
    assert problem["type"] == "/problems/unsupported-media-type"
    assert problem["detail"].startswith("Content-Type: must be application/json")
    assert_nothing_stored(gw)
    assert_problem(await gw.client.get("/v1/accounts/x", headers=ACME), 404)


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "Application/JSON", "application/json"]
)
async def test_json_with_parameters_or_another_case_is_json(gw: Gateway, content_type: str) -> None:
    headers = {**ACME, "Idempotency-Key": "k", "Content-Type": content_type}
    r = await gw.client.post("/v1/payments", content=json.dumps(BODY).encode(), headers=headers)
    assert r.status_code == 202, r.text


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"amount":1,"debtor_account":"alice","creditor_account":"bob","currency":"EUR",'
         b'"amount":1250}', "amount"),
        (raw_payment(b'{"a":1,"a":1}'), "metadata.a"),
    ],
)  # fmt: skip
async def test_a_duplicate_key_answers_422_naming_it(gw: Gateway, raw: bytes, field: str) -> None:
    problem = assert_problem(await gw.pay(raw), 422)
    assert problem["errors"] == [
        {"field": field, "in": "body", "rule": "must appear only once in its object"}
    ]
    assert_nothing_stored(gw)


@pytest.mark.parametrize("path", ["/v1/accounts/{}", "/v1/payments/{}"], ids=["account", "payment"])
async def test_a_path_id_over_128_characters_answers_422(gw: Gateway, path: str) -> None:
    r = await gw.client.get(path.format("x" * 129), headers=ACME)
    field = "account_id" if "accounts" in path else "payment_id"
    assert assert_problem(r, 422)["errors"][0]["field"] == field
    assert_problem(await gw.client.get(path.format("x" * 128), headers=ACME), 404)


# -- payments: read and long-poll ---------------------------------------------------------


async def test_unknown_payment_answers_404(gw: Gateway) -> None:
    assert_problem(await gw.client.get("/v1/payments/nope", headers=ACME), 404)
    assert_problem(await gw.client.get("/v1/payments/nope?wait=1", headers=ACME), 404)


@pytest.mark.parametrize("wait", ["-1", "31", "nan", "inf", "soon"])
async def test_wait_out_of_bounds_answers_422(gw: Gateway, wait: str) -> None:
    await gw.pay(BODY)
    r = await gw.client.get(f"/v1/payments/id0001?wait={wait}", headers=ACME)
    assert assert_problem(r, 422)["errors"][0]["field"] == "wait"


async def test_wait_returns_when_the_status_changes(gw: Gateway) -> None:
    await gw.pay(BODY)
    started = time.monotonic()
    async with anyio.create_task_group() as tg:

        async def worker_later() -> None:
            await anyio.sleep(0.2)
            await anyio.to_thread.run_sync(gw.run_payments_worker)

        tg.start_soon(worker_later)
        r = await gw.client.get("/v1/payments/id0001?wait=30", headers=ACME)
    assert r.status_code == 200
    assert r.json()["status"] == "reserved"
    # After the change, and long before the wait would have expired: it returned on the change.
    assert 0.2 <= time.monotonic() - started < 20


async def test_wait_expires_with_the_unchanged_payment(gw: Gateway) -> None:
    await gw.pay(BODY)
    started = time.monotonic()
    r = await gw.client.get("/v1/payments/id0001?wait=0.3", headers=ACME)
    assert r.json()["status"] == "received"
    assert time.monotonic() - started >= 0.3


async def test_wait_on_a_terminal_payment_returns_at_once(gw: Gateway) -> None:
    await gw.open("carol")
    # Carol has no funds and no overdraft: the worker rejects the payment.
    await gw.pay({**BODY, "debtor_account": "carol"})
    gw.run_payments_worker()
    started = time.monotonic()
    r = await gw.client.get("/v1/payments/id0001?wait=30", headers=ACME)
    payment = r.json()
    assert payment["status"] == "rejected"
    assert payment["reason"] == "insufficient_funds"
    assert time.monotonic() - started < 20  # not the 30 s wait: at once


async def test_posted_payment_shows_posted_at_and_balances(gw: Gateway) -> None:
    await gw.pay(BODY)
    gw.run_payments_worker()
    gw.run_payments_worker()
    payment = (await gw.client.get("/v1/payments/id0001", headers=ACME)).json()
    assert payment["status"] == "posted"
    assert payment["posted_at"] == gw.clock.t
    alice = (await gw.client.get("/v1/accounts/alice", headers=ACME)).json()
    bob = (await gw.client.get("/v1/accounts/bob", headers=ACME)).json()
    zero = {"debits_pending": 0, "credits_pending": 0}
    assert alice["balance"] == {
        "posted": -1250, "pending": 0, "available": -1250,
        "debits_posted": 1250, "credits_posted": 0, **zero,
    }  # fmt: skip
    assert bob["balance"] == {
        "posted": 1250, "pending": 0, "available": 1250,
        "debits_posted": 0, "credits_posted": 1250, **zero,
    }  # fmt: skip


# -- journal ------------------------------------------------------------------------------


async def test_journal_pages_in_order_until_an_empty_page(gw: Gateway) -> None:
    for i in range(3):
        await gw.pay({**BODY, "amount": 100 + i}, key=f"k{i}")
    gw.run_payments_worker()
    gw.run_payments_worker()
    entries: list[dict[str, Any]] = []
    after = 0
    while True:
        r = await gw.client.get(f"/v1/journal?after={after}&limit=2", headers=ACME)
        page = r.json()
        assert len(page["entries"]) <= 2
        if not page["entries"]:
            assert page["next"] == after
            break
        assert page["next"] == page["entries"][-1]["seq"]
        entries += page["entries"]
        after = page["next"]
    assert [e["seq"] for e in entries] == list(range(1, 7))
    assert [e["kind"] for e in entries] == ["pending"] * 3 + ["post_pending"] * 3
    assert set(entries[0]) == {
        "seq",
        "transfer_id",
        "payment_id",
        "kind",
        "debit_account",
        "credit_account",
        "amount",
        "currency",
        "at",
        "prev_hash",
        "hash",
        "pending_id",
    }
    assert first_broken_link([JournalEntry(**e) for e in entries]) == 0


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "after=-1", "limit=ten"])
async def test_journal_bounds_answer_422(gw: Gateway, query: str) -> None:
    r = await gw.client.get(f"/v1/journal?{query}", headers=ACME)
    assert assert_problem(r, 422)["errors"][0]["in"] == "query"


# -- settlement ---------------------------------------------------------------------------


def store_settlement_records(store: Store) -> None:
    """Batches and breaks as the settlement worker stores them, for two tenants."""
    with store.unit_of_work() as uow:
        for tenant in ("acme", "globex"):
            for seq in (1, 2, 3):
                batch = SettlementBatch(f"stl:{tenant}:bank:EUR:{seq:08d}", tenant, "bank", "EUR")
                batch = batch.add(f"pay-{seq}", 100 * seq)
                uow.put_record(BATCH, tenant, batch.id, batch.to_json())
            brk = Break(f"brk:{tenant}:1", "bank", batch.id, "pay-3", BreakKind.MISSING, "no line")
            uow.put_record(BREAK, tenant, brk.id, brk.to_json())
        uow.commit()


async def test_settlements_page_by_id_until_an_empty_page(gw: Gateway) -> None:
    store_settlement_records(gw.store.inner)
    ids: list[str] = []
    after = ""
    while True:
        r = await gw.client.get(
            "/v1/settlements", params={"after": after, "limit": 2}, headers=ACME
        )
        page = r.json()
        if not page["settlements"]:
            assert page["next"] == after
            break
        assert all(b["tenant"] == "acme" for b in page["settlements"])
        ids += [b["id"] for b in page["settlements"]]
        assert page["next"] == ids[-1]
        after = page["next"]
    assert ids == [f"stl:acme:bank:EUR:{seq:08d}" for seq in (1, 2, 3)]
    first = (await gw.client.get("/v1/settlements?limit=1", headers=ACME)).json()
    batch = first["settlements"][0]
    assert (batch["payment_ids"], batch["total"], batch["status"]) == (["pay-1"], 100, "open")


async def test_reconciliation_lists_the_tenants_breaks(gw: Gateway) -> None:
    store_settlement_records(gw.store.inner)
    page = (await gw.client.get("/v1/reconciliation", headers=GLOBEX)).json()
    assert [(b["id"], b["kind"], b["payment_id"]) for b in page["breaks"]] == [
        ("brk:globex:1", "missing", "pay-3")
    ]
    assert page["next"] == "brk:globex:1"
    after = (await gw.client.get("/v1/reconciliation?after=brk:globex:1", headers=GLOBEX)).json()
    assert after == {"breaks": [], "next": "brk:globex:1"}


@pytest.mark.parametrize("path", ["/v1/settlements", "/v1/reconciliation"])
@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=x"])
async def test_settlement_listing_bounds_answer_422(gw: Gateway, path: str, query: str) -> None:
    r = await gw.client.get(f"{path}?{query}", headers=ACME)
    assert assert_problem(r, 422)["errors"][0]["field"] == "limit"


# -- operations ---------------------------------------------------------------------------


async def test_healthz_needs_no_key(gw: Gateway) -> None:
    r = await gw.client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


async def test_unknown_route_and_method_answer_problem_json(gw: Gateway) -> None:
    assert_problem(await gw.client.get("/v2/nothing", headers=ACME), 404)
    assert_problem(await gw.client.delete("/v1/journal", headers=ACME), 405)
