"""A consumer whose handler keeps crashing on one event: retries, backoff, then compensation.

The runtime's Consumer over the memory store, a stepped clock and the real payments handlers;
one payment's event is poisoned (the handler raises for it). The other partitions keep flowing,
the poisoned partition narrows to single events, retries with growing backoff, and after
`attempts` failures the payment is failed by `fail_payment`, its reservation voided, and the
offset moves past it, all in one commit. The database being unreachable blames no event.
"""

from __future__ import annotations

from collections.abc import Sequence

from reference_impl.adapters.memory import MemoryStore
from reference_impl.core.events import decode
from reference_impl.core.ledger import Account, Transfer
from reference_impl.core.screening import ScreeningRules
from reference_impl.runtime.consumer import RetryPolicy
from reference_impl.runtime.workers import WorkerConfig, payments_consumer
from reference_impl.service.accept import PaymentRequest, accept_payment
from reference_impl.service.ledger import create_accounts, read_journal, submit_transfers
from reference_impl.service.payments import (
    PAYMENTS_GROUP,
    PaymentsConfig,
    get_payment,
    handle_payment_events,
)
from reference_impl.service.ports import LoggedEvent, StoreUnavailable, UnitOfWork
from reference_impl.service.projector import projection_lag

CONFIG = PaymentsConfig(partitions=4)


class SteppedClock:
    def __init__(self) -> None:
        self.t = 1_000.0

    def now(self) -> float:
        return self.t


def bank() -> MemoryStore:
    store = MemoryStore()
    accounts = [Account("funding", "EUR", overdraft=True)]
    accounts += [Account(f"a{i}", "EUR") for i in range(6)]
    create_accounts(store, "acme", accounts)
    funding = [Transfer(f"f{i}", "funding", f"a{i}", 1_000, "EUR") for i in range(6)]
    submit_transfers(store, "acme", funding, 1.0)
    for i in range(6):
        req = PaymentRequest(f"a{i}", f"a{(i + 1) % 6}", 100, "EUR")
        with store.unit_of_work() as uow:
            accept_payment(uow, "acme", f"k{i}", req, f"h{i}", f"p{i}", 2.0, CONFIG)
            uow.commit()
    return store


def consumer_with(store: MemoryStore, clock: SteppedClock, poisoned: str, kind: str):  # type: ignore[no-untyped-def]
    """The payments consumer, except that events of `kind` for payment `poisoned` raise."""
    config = WorkerConfig(payments=CONFIG, retry=RetryPolicy(attempts=3, base_delay=0.1))
    consumer = payments_consumer(store, clock, config, range(CONFIG.partitions), lambda n: None)

    def handle(uow: UnitOfWork, events: Sequence[LoggedEvent], now: float) -> int:
        for e in events:
            if e.type == kind and decode(e.type, e.payload).payment_id == poisoned:
                raise RuntimeError("poisoned")
        return len(handle_payment_events(uow, events, ScreeningRules(), now, CONFIG))

    consumer.handle = handle
    return consumer


def status(store: MemoryStore, pid: str) -> str:
    with store.unit_of_work() as uow:
        payment = get_payment(uow, "acme", pid)
    assert payment is not None
    return payment.status.value


def test_a_poisoned_reservation_is_retried_with_backoff_then_compensated() -> None:
    store, clock = bank(), SteppedClock()
    consumer = consumer_with(store, clock, "p3", "PaymentReserved")
    for _ in range(3):
        consumer.step()
    assert status(store, "p3") == "reserved"  # stuck: its post keeps failing
    assert all(status(store, f"p{i}") == "posted" for i in range(6) if i != 3)

    suspect = consumer._suspects  # the partition of p3, narrowed, waiting out its backoff
    assert len(suspect) == 1
    failures_before = consumer.stats.failures
    consumer.step()
    assert consumer.stats.failures == failures_before  # backoff: not retried yet
    for _ in range(10):
        clock.t += 1.0
        consumer.step()
    assert consumer.stats.compensated == 1
    assert status(store, "p3") == "failed"
    kinds = [(e.payment_id, e.kind) for e in read_journal(store, "acme", 0, 1000)]
    assert ("p3", "void") in kinds and ("p3", "post_pending") not in kinds
    with store.unit_of_work() as uow:  # reservation released, nothing left pending
        accounts = uow.get_accounts("acme", ["a3", "a4"])
    assert accounts["a3"].debits_pending == 0 and accounts["a4"].credits_pending == 0
    assert consumer.step() == 0 and consumer._suspects == {}
    with store.unit_of_work() as uow:  # everything consumed, the PaymentFailed event included
        assert projection_lag(uow, PAYMENTS_GROUP, CONFIG.partitions) == 0
        assert any(e.type == "PaymentFailed" for p in range(4) for e in uow.read_events(p, 0, 99))


def test_an_unreachable_store_pauses_without_blaming_an_event() -> None:
    store, clock = bank(), SteppedClock()
    consumer = consumer_with(store, clock, "none", "none")
    real = store.unit_of_work

    def down() -> UnitOfWork:
        raise StoreUnavailable("memory://: down")

    store.unit_of_work = down  # type: ignore[method-assign]
    for _ in range(10):
        consumer.step()
        clock.t += 0.5
    assert consumer.stats.compensated == 0 and consumer._suspects == {}
    store.unit_of_work = real  # type: ignore[method-assign]
    clock.t += 5.0
    while consumer.step():
        pass
    assert all(status(store, f"p{i}") == "posted" for i in range(6))
    with store.unit_of_work() as uow:
        offsets = [uow.get_offset(PAYMENTS_GROUP, p) for p in range(CONFIG.partitions)]
    assert sum(offsets) > 0
