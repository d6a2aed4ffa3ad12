"""Expired idempotency records are purged, on every store, and a purged key makes a new payment.

Keys are remembered for `PaymentsConfig.idempotency_retention` (24 h); without a purge their
records would pile up forever. The runtime's reporting loop sweeps them; the sweep deletes a
record only if it is still the expired one it read, so a key reused meanwhile keeps its answer.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reference_impl.adapters import open_store
from reference_impl.adapters.rate_limit import Unlimited
from reference_impl.api import GatewayDeps, create_app
from reference_impl.core.ledger import Account
from reference_impl.runtime import Runtime, RuntimeConfig
from reference_impl.service.accept import IDEMPOTENCY, PaymentRequest, accept_payment
from reference_impl.service.idempotency import purge_expired
from reference_impl.service.ledger import create_accounts
from reference_impl.service.payments import PaymentsConfig
from reference_impl.service.ports import Store

DAY = 86_400.0
CONFIG = PaymentsConfig(partitions=2)


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.t = now

    def now(self) -> float:
        return self.t


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'purge.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = open_store(store_url)
    create_accounts(s, "acme", [Account("alice", "EUR", overdraft=True), Account("bob", "EUR")])
    yield s
    s.close()


def accept(store: Store, key: str, now: float, payment_id: str) -> dict[str, object]:
    req = PaymentRequest("alice", "bob", 100, "EUR")
    with store.unit_of_work() as uow:
        acceptance = accept_payment(uow, "acme", key, req, f"hash-{key}", payment_id, now, CONFIG)
        uow.commit()
    return acceptance.body


def keys(store: Store) -> list[str]:
    with store.unit_of_work() as uow:
        return [k for k, _ in uow.list_records(IDEMPOTENCY, "acme")]


def test_the_runtime_purges_expired_keys_and_keeps_live_ones(store_url: str) -> None:
    clock = FakeClock()
    config = RuntimeConfig(store_url, {"k": "acme"}, partitions=CONFIG.partitions)
    runtime = Runtime(config, open_store(store_url), clock=clock)
    try:
        create_accounts(runtime.store, "acme", [Account("alice", "EUR", overdraft=True),
                                                Account("bob", "EUR")])  # fmt: skip
        accept(runtime.store, "old", 1_000.0, "p-old")
        accept(runtime.store, "new", 1_000.0 + DAY / 2, "p-new")
        clock.t = 1_000.0 + DAY + 1.0  # "old" expired, "new" has half a day left
        runtime.start_workers(["reporting"])
        deadline = time.monotonic() + 60
        while keys(runtime.store) != ["new"]:
            assert time.monotonic() < deadline, f"not purged: {keys(runtime.store)}"
            time.sleep(0.05)
            clock.t += 0.5  # the sweep runs every 10 s of the runtime's clock
    finally:
        assert runtime.stop_workers()
        runtime.close()


def test_a_sweep_pages_through_every_key_and_deletes_only_expired_ones(store: Store) -> None:
    for i in range(25):
        accept(store, f"k{i:02d}", 1_000.0 + (DAY if i % 3 == 0 else 0.0), f"p{i}")
    now = 1_000.0 + DAY  # expired: those accepted at 1000 (expires_at <= now)
    cursor, deleted, pages = "", 0, 0
    while True:
        with store.unit_of_work() as uow:
            cursor, n = purge_expired(uow, "acme", cursor, now, limit=10)
            uow.commit()
        deleted += n
        pages += 1
        if not cursor:
            break
    assert pages == 3
    assert deleted == 16
    assert keys(store) == [f"k{i:02d}" for i in range(25) if i % 3 == 0]


def test_a_record_rewritten_after_the_sweep_read_it_is_kept(store: Store) -> None:
    accept(store, "k", 1_000.0, "p1")
    with store.unit_of_work() as uow:
        [(_, stale)] = uow.list_records(IDEMPOTENCY, "acme")
    # Meanwhile the expired key is used again: its record now holds a new payment's answer.
    accept(store, "k", 1_000.0 + DAY + 5.0, "p2")
    with store.unit_of_work() as uow:
        uow.delete_records_if_unchanged(IDEMPOTENCY, "acme", {"k": stale})
        uow.commit()
    with store.unit_of_work() as uow:
        record = uow.get_record(IDEMPOTENCY, "acme", "k")
    assert record is not None and '"p2"' in record
    with store.unit_of_work() as uow:
        uow.delete_records_if_unchanged(IDEMPOTENCY, "acme", {"k": record})
        # Not committed: rolled back, the record stays.
    assert keys(store) == ["k"]
    with store.unit_of_work() as uow:
        uow.delete_records_if_unchanged(IDEMPOTENCY, "acme", {"k": record})
        assert uow.get_record(IDEMPOTENCY, "acme", "k") is None  # its own delete, seen
        assert uow.list_records(IDEMPOTENCY, "acme") == []
        uow.commit()
    assert keys(store) == []


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_purged_key_makes_a_new_payment(store: Store, anyio_backend: str) -> None:
    clock = FakeClock()
    ids = itertools.count(1)
    app = create_app(
        GatewayDeps(
            store=store,
            api_keys={"key-acme": "acme"},
            clock=clock,
            new_id=lambda: f"id{next(ids)}",
            rate_limiter=Unlimited(),
            payments=CONFIG,
        )
    )
    body = {"debtor_account": "alice", "creditor_account": "bob", "amount": 5, "currency": "EUR"}
    headers = {"Authorization": "Bearer key-acme", "Idempotency-Key": "order-1"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        first = await client.post("/v1/payments", json=body, headers=headers)
        clock.t += DAY - 1.0
        replay = await client.post("/v1/payments", json=body, headers=headers)
        assert replay.headers["idempotency-replay"] == "true"
        assert replay.json()["id"] == first.json()["id"] == "id1"
        clock.t += 1.0  # 24 h after the first answer: the key has expired
        with store.unit_of_work() as uow:
            assert purge_expired(uow, "acme", "", clock.t) == ("", 1)
            uow.commit()
        assert keys(store) == []
        again = await client.post("/v1/payments", json=body, headers=headers)
    assert again.status_code == 202 and "idempotency-replay" not in again.headers
    assert again.json()["id"] == "id3"  # a new payment (id2 went to the replayed request)
    assert keys(store) == ["order-1"]
