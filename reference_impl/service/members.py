"""The consumer groups of the reference system, built once for both runtimes.

Each function returns an engine `Member` (service/consumer.py) wired to its group's handler,
give-up action and tasks. The real runtime and the sim call the same functions and differ only
in the identity, the clock and what they do with the events a commit emitted (`on_commit`):

- payments: screening, reserve, post; an event that keeps failing is compensated by
  `fail_payment` (void the reservation, mark the payment failed); with compliance checks in
  parallel it also waits for their decisions, and sweeps the payments whose checks timed out;
- sanctions, aml, fraud: each records its check's decision on every received payment
  (service/compliance.py), when the checks run in parallel;
- settlement (exclusive): posted payments join open batches; its tasks are the cut-off (close,
  submit to the partner, mark sent) and the ingestion of the partner's statement feed;
- reporting (exclusive): the projector's read models.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from reference_impl.core.events import PaymentEvent, PaymentFailed, decode
from reference_impl.core.settlement import SettlementBatch, Statement
from reference_impl.service.checks import CHECKS, Checker, due, sweep_interval
from reference_impl.service.compliance import (
    CHECK_HANDLES,
    CHECK_TOPICS,
    handle_check_events,
    prepare_batch,
)
from reference_impl.service.consumer import (
    External,
    GroupSpec,
    Member,
    Read,
    RetryPolicy,
    StepRun,
    Task,
    Work,
    Write,
)
from reference_impl.service.consumer_bugs import strategies
from reference_impl.service.groups import Identity
from reference_impl.service.idempotency import purge_expired
from reference_impl.service.payments import (
    CHECKED_HANDLES,
    CHECKED_LIGHT,
    CHECKED_TOPICS,
    PAYMENTS_GROUP,
    PAYMENTS_HANDLES,
    PAYMENTS_TOPICS,
    PaymentsConfig,
    Screening,
    expire_checks,
    fail_payment,
    handle_payment_events,
)
from reference_impl.service.ports import Clock, LoggedEvent, UnitOfWork
from reference_impl.service.projector import (
    REPORTING_GROUP,
    REPORTING_HANDLES,
    REPORTING_TOPICS,
    handle_reporting_events,
)
from reference_impl.service.settlement import (
    SETTLEMENT_GROUP,
    SETTLEMENT_HANDLES,
    SETTLEMENT_TOPICS,
    BankPartner,
    PartnerUnavailable,
    SettlementConfig,
    close_batches,
    feed_position,
    handle_settlement_events,
    ingest_from_feed,
    mark_sent,
)

OnCommit = Callable[[Sequence[Any]], None]

GROUP_TOPICS: dict[str, tuple[str, ...]] = {
    PAYMENTS_GROUP: CHECKED_TOPICS,
    SETTLEMENT_GROUP: SETTLEMENT_TOPICS,
    REPORTING_GROUP: REPORTING_TOPICS,
    **dict.fromkeys(CHECKS, CHECK_TOPICS),
}
"""What each group of the reference system reads (payments: with the checks' decisions)."""

CHECK_TIMEOUTS = "check-timeouts"
"""The payments members' task deciding payments whose checks timed out."""
CLOSE_STAGE = "settlement-close"
"""`Work` of a cut-off: per payment of the batches it closes and sends."""
STATEMENT_STAGE = "statement"
"""`Work` of reconciling a statement: per line."""
PURGE_INTERVAL = 10.0
"""Seconds between sweeps of expired idempotency keys."""
PURGE_PAGES = 5
SETTLEMENT_LINGER = 0.5
"""Seconds between the settlement group's fetches: settlement works at cut-offs seconds apart,
so it takes few large batches rather than many small ones."""


@dataclass(frozen=True, slots=True)
class GroupSettings:
    """What a deployment (or a scenario) tunes about every group."""

    partitions: int = 8
    batch_size: int = 100
    session_timeout: float = 10.0
    idle_poll: float = 0.25
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def spec(self, name: str, topics: tuple[str, ...], handles: frozenset[str]) -> GroupSpec:
        return GroupSpec(
            name,
            topics,
            handles,
            self.partitions,
            batch_size=self.batch_size,
            session_timeout=self.session_timeout,
            idle_poll=self.idle_poll,
            retry=self.retry,
        )


def payments_member(
    identity: Identity,
    clock: Clock,
    settings: GroupSettings,
    config: PaymentsConfig,
    screening: Screening,
    on_commit: OnCommit | None = None,
    checkers: Sequence[Checker] = (),
) -> Member:
    """`checkers`: the checks that run inside this group's handler (sequential mode)."""

    def handle(uow: UnitOfWork, events: Sequence[LoggedEvent], now: float) -> Sequence[Any]:
        return handle_payment_events(uow, events, screening, now, config, checkers)

    def give_up(uow: UnitOfWork, event: LoggedEvent, reason: str, now: float) -> Sequence[Any]:
        e = decode(event.type, event.payload)
        failed = fail_payment(uow, e.tenant, e.payment_id, reason, now, config)
        if failed is None:
            return []
        return [PaymentFailed(failed.id, failed.tenant, failed.debtor_account, now, reason)]

    commit, compensation = strategies(config.bugs)
    spec = settings.spec(PAYMENTS_GROUP, PAYMENTS_TOPICS, PAYMENTS_HANDLES)
    tasks = []
    if config.checks.on and config.checks.mode == "parallel":
        spec = settings.spec(PAYMENTS_GROUP, CHECKED_TOPICS, CHECKED_HANDLES)
        spec = replace(spec, light=CHECKED_LIGHT)
        interval = sweep_interval(config.checks)
        tasks.append(Task(CHECK_TIMEOUTS, interval, partial(_expire, config=config), shared=True))
    elif config.checks.on:
        spec = settings.spec(PAYMENTS_GROUP, PAYMENTS_TOPICS, CHECKED_HANDLES)
        if any(getattr(c, "remote", False) for c in checkers):
            spec = replace(spec, prepare=partial(prepare_batch, checkers=checkers))
    return Member(
        spec,
        identity,
        clock,
        handle,
        give_up=give_up,
        on_commit=on_commit,
        commit=commit,
        compensation=compensation,
        tasks=tasks,
    )


def _expire(member: Member, config: PaymentsConfig) -> StepRun:
    """Decide the payments of the member's partitions whose checks did not all answer in time
    (a read first: most sweeps find none, and commit nothing)."""
    now, partitions = member.clock.now, sorted(member.assignment)
    if not (yield Read(partial(_any_due, partitions=partitions, now=now))):
        return
    emitted = yield Write(
        member.fenced(partial(_expire_in, partitions=partitions, now=now, config=config))
    )
    if emitted:
        member.on_commit(emitted)


def _any_due(uow: UnitOfWork, partitions: Sequence[int], now: Callable[[], float]) -> bool:
    return any(due(uow, p, now()) for p in partitions)


def _expire_in(
    uow: UnitOfWork, partitions: Sequence[int], now: Callable[[], float], config: PaymentsConfig
) -> list[PaymentEvent]:
    return expire_checks(uow, partitions, now(), config)


def check_member(
    identity: Identity,
    clock: Clock,
    settings: GroupSettings,
    checker: Checker,
    config: PaymentsConfig,
    on_commit: OnCommit | None = None,
) -> Member:
    """A member of the consumer group named after `checker` (parallel mode)."""

    def handle(uow: UnitOfWork, events: Sequence[LoggedEvent], now: float) -> Sequence[Any]:
        return handle_check_events(uow, events, checker, now, config.partitions)

    spec = settings.spec(checker.name, CHECK_TOPICS, CHECK_HANDLES)
    if getattr(checker, "remote", False):
        spec = replace(spec, prepare=partial(prepare_batch, checkers=[checker]))
    return Member(spec, identity, clock, handle, on_commit=on_commit)


def reporting_member(
    identity: Identity,
    clock: Clock,
    settings: GroupSettings,
    on_commit: OnCommit | None = None,
    purge_tenants: Sequence[str] = (),
) -> Member:
    """The projector; it also purges the expired idempotency keys of `purge_tenants`, as the
    one member of a deployment that always runs and writes little."""

    def handle(uow: UnitOfWork, events: Sequence[LoggedEvent], now: float) -> Sequence[Any]:
        return handle_reporting_events(uow, events)

    spec = settings.spec(REPORTING_GROUP, REPORTING_TOPICS, REPORTING_HANDLES)
    tasks = []
    if purge_tenants:
        cursors = dict.fromkeys(purge_tenants, "")
        tasks.append(Task("idempotency-purge", PURGE_INTERVAL, partial(_purge, cursors=cursors)))
    return Member(
        replace(spec, exclusive=True), identity, clock, handle, on_commit=on_commit, tasks=tasks
    )


def _purge(member: Member, cursors: dict[str, str]) -> StepRun:
    """Sweep each tenant's idempotency keys a page per unit of work, resuming where the last
    run stopped, at most `PURGE_PAGES` pages per tenant per run."""
    for tenant in cursors:
        for _ in range(PURGE_PAGES):
            cursor, _purged = yield Write(
                partial(_purge_page, tenant=tenant, after=cursors[tenant], now=member.clock.now)
            )
            cursors[tenant] = cursor
            if not cursor:  # back at the first key: the rest waits for the next run
                break


def _purge_page(
    uow: UnitOfWork, tenant: str, after: str, now: Callable[[], float]
) -> tuple[str, int]:
    return purge_expired(uow, tenant, after, now())


def settlement_member(
    identity: Identity,
    clock: Clock,
    settings: GroupSettings,
    config: SettlementConfig,
    partners: Sequence[BankPartner],
    cutoff: float,
    statement_poll: float,
    on_commit: OnCommit | None = None,
) -> Member:
    def handle(uow: UnitOfWork, events: Sequence[LoggedEvent], now: float) -> Sequence[Any]:
        return handle_settlement_events(uow, events, now, config)

    spec = settings.spec(SETTLEMENT_GROUP, SETTLEMENT_TOPICS, SETTLEMENT_HANDLES)
    tasks = [
        Task("cut-off", cutoff, partial(_cut_off, partners=partners)),
        Task("statements", statement_poll, partial(_ingest, partners=partners, config=config)),
    ]
    return Member(
        replace(spec, exclusive=True, linger=SETTLEMENT_LINGER),
        identity,
        clock,
        handle,
        on_commit=on_commit,
        tasks=tasks,
    )


def _cut_off(member: Member, partners: Sequence[BankPartner]) -> StepRun:
    """Close every partner's open batches, submit each closed one, then mark it sent."""
    now = member.clock.now
    for partner in partners:
        unsent = yield Write(member.fenced(partial(_close, partner=partner.name, now=now)))
        yield Work(CLOSE_STAGE, sum(b.count for b in unsent))
        for batch in unsent:
            try:
                yield External(partner.name, partial(partner.submit, batch, now()))
            except PartnerUnavailable:
                break  # closed batches wait for the next cut-off
            yield Write(member.fenced(partial(_mark_sent, batch=batch, now=now)), batch.count)


def _close(uow: UnitOfWork, partner: str, now: Callable[[], float]) -> list[SettlementBatch]:
    return close_batches(uow, now(), partner)


def _mark_sent(uow: UnitOfWork, batch: SettlementBatch, now: Callable[[], float]) -> None:
    mark_sent(uow, batch, now())


def _ingest(member: Member, partners: Sequence[BankPartner], config: SettlementConfig) -> StepRun:
    """Read each partner's statement feed from the position ingested so far, and reconcile
    every new statement in a unit of work that also moves the position."""
    now = member.clock.now
    for partner in partners:
        position = yield Read(partial(feed_position, partner=partner.name))
        statements = yield External(
            partner.name, partial(partner.statements_after, position, now())
        )
        for i, statement in enumerate(statements):
            lines = len(statement.lines)
            yield Work(STATEMENT_STAGE, lines)
            ingest = partial(
                _ingest_one, statement=statement, position=position + i, now=now, config=config
            )
            settled = yield Write(member.fenced(ingest), max(1, lines))
            if settled:
                member.on_commit(settled)


def _ingest_one(
    uow: UnitOfWork,
    statement: Statement,
    position: int,
    now: Callable[[], float],
    config: SettlementConfig,
) -> list[PaymentEvent]:
    return ingest_from_feed(uow, statement, position, now(), config)
