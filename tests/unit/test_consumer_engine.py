"""The consumer engine (service/consumer.py), driven as the real runtime drives it.

A memory store, a stepped clock and the real payments handlers; the real runtime's driver
(`run_step`, `drain`) performs the steps. Each test pins down one promise of the engine: the
error classes (a poisoned event is retried with backoff then compensated; an unreachable store
blames no event), fencing (a zombie commits nothing), membership (a leave moves the partitions
at once; an exclusive group has one active member), and the tasks run only on that member.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from reference_impl.adapters.memory import MemoryStore
from reference_impl.core.events import OUTCOMES_TOPIC, PAYMENTS_TOPIC, decode
from reference_impl.core.ledger import Account, Transfer
from reference_impl.core.screening import ScreeningRules
from reference_impl.runtime.consumer import drain, run_step
from reference_impl.service.accept import PaymentRequest, accept_payment
from reference_impl.service.consumer import (
    Idle,
    Member,
    RetryPolicy,
    Step,
    StepRun,
    Task,
    Write,
)
from reference_impl.service.groups import Identity
from reference_impl.service.ledger import create_accounts, read_journal, submit_transfers
from reference_impl.service.members import GroupSettings, payments_member, reporting_member
from reference_impl.service.payments import PAYMENTS_GROUP, PaymentsConfig, get_payment
from reference_impl.service.ports import LoggedEvent, StoreUnavailable, UnitOfWork

CONFIG = PaymentsConfig(partitions=4)
SETTINGS = GroupSettings(
    partitions=4, batch_size=10, session_timeout=3.0, retry=RetryPolicy(attempts=3, base_delay=0.1)
)


class SteppedClock:
    def __init__(self) -> None:
        self.t = 1_000.0

    def now(self) -> float:
        return self.t


def bank(payments: int = 6) -> MemoryStore:
    store = MemoryStore()
    accounts = [Account("funding", "EUR", overdraft=True)]
    accounts += [Account(f"a{i}", "EUR") for i in range(6)]
    create_accounts(store, "acme", accounts)
    funding = [Transfer(f"f{i}", "funding", f"a{i}", 1_000, "EUR") for i in range(6)]
    submit_transfers(store, "acme", funding, 1.0)
    for i in range(payments):
        req = PaymentRequest(f"a{i % 6}", f"a{(i + 1) % 6}", 100, "EUR")
        with store.unit_of_work() as uow:
            accept_payment(uow, "acme", f"k{i}", req, f"h{i}", f"p{i}", 2.0, CONFIG)
            uow.commit()
    return store


def member(clock: SteppedClock, name: str = "m1", poisoned: str = "", kind: str = "") -> Member:
    """A payments member whose handler raises for events of `kind` for payment `poisoned`."""
    m = payments_member(Identity(name), clock, SETTINGS, CONFIG, ScreeningRules())
    handle = m.handle

    def handle_or_raise(uow: UnitOfWork, events: Sequence[LoggedEvent], now: float) -> Any:
        for e in events:
            if e.type == kind and decode(e.type, e.payload).payment_id == poisoned:
                raise RuntimeError("poisoned")
        return handle(uow, events, now)

    m.handle = handle_or_raise
    return m


def status(store: MemoryStore, pid: str) -> str:
    with store.unit_of_work() as uow:
        payment = get_payment(uow, "acme", pid)
    assert payment is not None
    return payment.status.value


def offsets(store: MemoryStore, group: str = PAYMENTS_GROUP) -> list[int]:
    with store.unit_of_work() as uow:
        return [uow.get_offset(group, PAYMENTS_TOPIC, p) for p in range(CONFIG.partitions)]


def test_a_poisoned_reservation_is_retried_with_backoff_then_compensated() -> None:
    store, clock = bank(), SteppedClock()
    m = member(clock, poisoned="p3", kind="PaymentReserved")
    drain(store, [m])
    assert status(store, "p3") == "reserved"  # stuck: its post keeps failing
    assert all(status(store, f"p{i}") == "posted" for i in range(6) if i != 3)
    [(_key, suspect)] = m.suspects.items()  # p3's partition, narrowed, waiting out its backoff
    assert suspect.failures == 1 and m.stats.compensated == 0
    failures = m.stats.failures
    drain(store, [m])
    assert m.stats.failures == failures  # backoff: not retried yet
    for attempt in (2, 3):
        clock.t += SETTINGS.retry.delay(attempt - 1)
        drain(store, [m])
    assert m.stats.compensated == 1 and m.suspects == {}
    assert status(store, "p3") == "failed"
    kinds = [(e.payment_id, e.kind) for e in read_journal(store, "acme", 0, 1000)]
    assert ("p3", "void") in kinds and ("p3", "post_pending") not in kinds
    with store.unit_of_work() as uow:  # reservation released, nothing left pending
        accounts = uow.get_accounts("acme", ["a3", "a4"])
        failed = [
            decode(e.type, e.payload).payment_id
            for p in range(4)
            for e in uow.read_events(OUTCOMES_TOPIC, p, 0, 99)
            if e.type == "PaymentFailed"
        ]
    assert accounts["a3"].debits_pending == 0 and accounts["a4"].credits_pending == 0
    assert failed == ["p3"]
    with store.unit_of_work() as uow:  # the offset moved past the event with the compensation
        heads = uow.log_heads(PAYMENTS_TOPIC)
    assert offsets(store) == [heads.get(p, 0) for p in range(4)]


def test_an_unreachable_store_backs_off_without_blaming_an_event() -> None:
    store, clock = bank(), SteppedClock()
    m = member(clock)
    real = store.unit_of_work

    def down() -> UnitOfWork:
        raise StoreUnavailable("memory://: down")

    store.unit_of_work = down  # type: ignore[method-assign]
    waits = []
    for _ in range(6):
        nxt = m.next()
        assert isinstance(nxt, Step), nxt
        run_step(store, nxt)
        idle = m.next()
        assert isinstance(idle, Idle)
        waits.append(round(idle.until - clock.t, 3))
        clock.t = idle.until
    assert waits == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0]  # the one backoff policy, capped
    assert m.stats.failures == 0 and m.suspects == {}
    store.unit_of_work = real  # type: ignore[method-assign]
    drain(store, [m])
    assert all(status(store, f"p{i}") == "posted" for i in range(6))


def test_a_zombie_commits_nothing_and_the_new_owner_applies_each_event_once() -> None:
    store, clock = bank(payments=0), SteppedClock()
    zombie, other = member(clock, "a-zombie"), member(clock, "b-other")
    drain(store, [zombie])  # joins alone: holds every partition
    assert sorted(zombie.assignment) == [0, 1, 2, 3]
    for i in range(6):
        req = PaymentRequest(f"a{i}", f"a{(i + 1) % 6}", 100, "EUR")
        with store.unit_of_work() as uow:
            accept_payment(uow, "acme", f"k{i}", req, f"h{i}", f"p{i}", clock.t, CONFIG)
            uow.commit()
    zombie.wake()
    poll = zombie.next()
    assert isinstance(poll, Step) and poll.name == "poll"
    fetch = next(poll.run)
    with store.unit_of_work() as uow:  # the zombie fetched its batch ... and is stopped
        batch = fetch.fn(uow)
    assert len(batch.handled) == 6
    clock.t += SETTINGS.session_timeout + 1  # past its lease
    drain(store, [other])  # the other member takes every partition over and does the work
    assert all(status(store, f"p{i}") == "posted" for i in range(6))
    journal = read_journal(store, "acme", 0, 1000)
    op = poll.run.send(batch)  # it wakes and tries to commit what it fetched
    while not isinstance(op, Write):
        op = poll.run.send(None)
    with store.unit_of_work() as uow, pytest.raises(Exception) as refused:
        op.fn(uow)
    assert type(refused.value).__name__ in ("Fenced", "Stale")
    assert read_journal(store, "acme", 0, 1000) == journal  # nothing applied twice


def test_a_leave_moves_the_partitions_at_once_and_joins_split_them() -> None:
    store, clock = bank(payments=0), SteppedClock()
    a, b = member(clock, "a"), member(clock, "b")
    drain(store, [a, b])
    clock.t += SETTINGS.session_timeout / 3
    drain(store, [a, b])
    assert sorted(a.assignment) == [0, 1] and sorted(b.assignment) == [2, 3]
    b.stop()
    drain(store, [b])
    assert b.stopped
    clock.t += SETTINGS.session_timeout / 3
    drain(store, [a])
    assert sorted(a.assignment) == [0, 1, 2, 3]  # without waiting for b's lease


def test_tasks_run_only_on_the_member_that_holds_the_exclusive_group() -> None:
    store, clock = bank(payments=0), SteppedClock()
    runs: list[str] = []

    def tick(name: str) -> Any:
        def run(m: Member) -> StepRun:
            yield Write(m.fenced(lambda uow: runs.append(name)))

        return run

    first = reporting_member(Identity("first"), clock, SETTINGS)
    second = reporting_member(Identity("second"), clock, SETTINGS)
    first.tasks = [Task("tick", 1.0, tick("first"))]
    second.tasks = [Task("tick", 1.0, tick("second"))]
    for _ in range(4):  # due at every whole second of the clock, from the next one on
        drain(store, [first, second])
        clock.t += 1.0
    assert first.holds_group and not second.assignment
    assert runs == ["first", "first", "first"]
    clock.t += SETTINGS.session_timeout + 1  # the first member stops heartbeating
    drain(store, [second])
    assert second.holds_group
    clock.t += 1.0
    drain(store, [second])
    assert runs == ["first", "first", "first", "second"]


def test_a_task_that_takes_no_time_runs_once_per_interval_even_where_float_rounding_bites() -> None:
    # 31 * 0.075 == 2.3249999999999997, and the next multiple of 0.075 after it computed as
    # (floor(t / 0.075) + 1) * 0.075 is that same instant: a task that took no time there ran
    # again at once, for ever (it hung a sim run).
    store, clock = bank(payments=0), SteppedClock()
    clock.t = 30 * 0.075
    runs: list[float] = []

    def tick(m: Member) -> StepRun:
        runs.append(m.clock.now())
        yield from ()

    member = reporting_member(Identity("only"), clock, SETTINGS)
    member.tasks = [Task("tick", 0.075, tick)]
    drain(store, [member])  # joins; the task is due from the next multiple of 0.075 on
    clock.t = 31 * 0.075
    member.tasks[0].next_at = clock.t
    drain(store, [member], max_steps=50)
    assert runs == [31 * 0.075]
    assert member.tasks[0].next_at > clock.t
