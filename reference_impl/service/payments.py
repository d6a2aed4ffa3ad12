"""The payments worker's saga steps, and the payment records and events they share.

handle_payment_events is the "payments" consumer group's handler: for a batch of events it
screens and reserves (pending transfer) received payments and posts reserved ones; the consumer
engine (service/consumer.py) commits those effects with the group's offsets in one unit of work.
Every effect is keyed by the payment id, so a redelivered event is a no-op. fail_payment is the
saga's compensation, the group's give-up action. The gateway's side is service/accept.py.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from reference_impl.core.checks import Decision
from reference_impl.core.events import (
    DECISIONS_TOPIC,
    PAYMENTS_TOPIC,
    CheckDecided,
    PaymentEvent,
    PaymentFailed,
    PaymentHeld,
    PaymentPosted,
    PaymentReceived,
    PaymentRejected,
    PaymentReserved,
    PaymentReviewed,
    decode,
    encode,
)
from reference_impl.core.ledger import Transfer, TransferKind, TransferResult
from reference_impl.core.payments import TRANSITIONS, Payment, PaymentStatus
from reference_impl.core.screening import ScreeningDecision
from reference_impl.service import checks
from reference_impl.service.checks import Checker, ChecksConfig, Outcome
from reference_impl.service.ledger import submit_transfers_in
from reference_impl.service.ports import LoggedEvent, NewEvent, UnitOfWork

PAYMENT = "payment"
PAYMENTS_GROUP = "payments"
PAYMENTS_TOPICS = (PAYMENTS_TOPIC,)
PAYMENTS_HANDLES = frozenset({PaymentReceived.__name__, PaymentReserved.__name__})
"""What the payments group reads and acts on (everything else in its topic only moves the
offset)."""
CHECKED_TOPICS = (PAYMENTS_TOPIC, DECISIONS_TOPIC)
CHECKED_HANDLES = PAYMENTS_HANDLES | {CheckDecided.__name__, PaymentReviewed.__name__}
"""With compliance checks on: the group also waits for their decisions and for reviews."""
CHECKED_LIGHT = frozenset({PaymentReceived.__name__, CheckDecided.__name__})
"""Of those, what costs less than a payment's reservation: a PaymentReceived is only screened
and left waiting for the decisions; most decisions only look the others up (the one that
completes the set reserves)."""

_DONE = {TransferResult.OK, TransferResult.EXISTS}


class Screening(Protocol):
    def screen(self, payment: Payment) -> ScreeningDecision: ...


@dataclass(frozen=True, slots=True)
class PaymentsConfig:
    partitions: int = 8
    idempotency_retention: float = 86400.0
    """Seconds an idempotency key is remembered (default 24 h)."""
    bugs: frozenset[str] = frozenset()
    """Bug-zoo variants switched on (reference_impl/bugs.py); empty in any real deployment."""
    checks: ChecksConfig = field(default_factory=ChecksConfig)
    """The compliance checks (service/checks.py); off by default."""


def append(uow: UnitOfWork, events: Sequence[PaymentEvent], partitions: int, at: float) -> None:
    if events:
        uow.append_events([NewEvent(*encode(e)) for e in events], partitions, at)


def get_payment(uow: UnitOfWork, tenant: str, payment_id: str) -> Payment | None:
    text = uow.get_record(PAYMENT, tenant, payment_id)
    return Payment.from_json(text) if text is not None else None


def save_payment(uow: UnitOfWork, payment: Payment) -> None:
    uow.put_record(PAYMENT, payment.tenant, payment.id, payment.to_json())


def handle_payment_events(
    uow: UnitOfWork,
    events: Sequence[LoggedEvent],
    screening: Screening,
    now: float,
    config: PaymentsConfig,
    checkers: Sequence[Checker] = (),
) -> list[PaymentEvent]:
    """The payments group's effects for a batch: screen, reserve, post; emit the events.

    Returns the events it emitted (also appended to the outbox). The caller commits, with the
    offsets (service/consumer.py). With compliance checks on (`config.checks`), a screened
    payment waits for the checks' decisions (parallel: their CheckDecided events; sequential:
    `checkers` decide here) before it is reserved, rejected or held; a held payment moves on
    when an operator's PaymentReviewed comes.

    Bug zoo: `non-idempotent-consumer` applies each event whatever the payment's status, with
    transfer ids drawn per delivery (stamped with the delivery's time), so a redelivered event
    reserves or posts again instead of finding its keyed transfer already there.
    """
    if not events:
        return []
    unkeyed = "non-idempotent-consumer" in config.bugs
    received: list[Payment] = []
    reserved: list[Payment] = []
    reserved_at: list[float] = []
    decided: dict[str, Payment] = {}
    reviewed: list[tuple[Payment, PaymentReviewed]] = []
    handles = CHECKED_HANDLES if config.checks.on else PAYMENTS_HANDLES
    for logged in events:
        if logged.type not in handles:
            continue
        event = decode(logged.type, logged.payload)
        payment = get_payment(uow, event.tenant, event.payment_id)
        if payment is None:
            continue
        if isinstance(event, CheckDecided):
            if payment.status is PaymentStatus.SCREENING:
                decided[payment.id] = payment
            continue
        if isinstance(event, PaymentReviewed):
            if payment.status is PaymentStatus.HELD:
                reviewed.append((payment, event))
            continue
        assert isinstance(event, PaymentReceived | PaymentReserved)
        if unkeyed:
            # The bug: no look at the payment's status, so a repeat is not recognised.
            status = PaymentStatus.RECEIVED
            if isinstance(event, PaymentReserved):
                status = PaymentStatus.RESERVED
                reserved_at.append(event.at)
            (reserved if status is PaymentStatus.RESERVED else received).append(
                replace(payment, status=status)
            )
        elif isinstance(event, PaymentReceived) and payment.status is PaymentStatus.RECEIVED:
            received.append(payment)
        elif isinstance(event, PaymentReserved) and payment.status is PaymentStatus.RESERVED:
            reserved.append(payment)
    emitted, approved = _screen(uow, received, screening, now, config, checkers)
    for payment in decided.values():
        found = checks.decisions_of(uow, payment, config.checks.checks)
        verdict = checks.outcome(found, config.checks)
        if verdict is not None:
            emitted += _conclude(uow, payment, verdict, now, approved)
            _stop_waiting(uow, payment, config)
    for payment, review in reviewed:
        verdict = Outcome("approve" if review.verdict == "approve" else "reject", review.reason)
        emitted += _conclude(uow, payment, verdict, now, approved)
    emitted += _reserve(uow, approved, now, config.bugs)
    emitted += _post(uow, reserved, now, reserved_at if unkeyed else None)
    append(uow, emitted, config.partitions, now)
    return emitted


def _by_tenant(payments: Sequence[Payment]) -> dict[str, list[Payment]]:
    groups: dict[str, list[Payment]] = defaultdict(list)
    for p in payments:
        groups[p.tenant].append(p)
    return groups


def _through_float(amount: int) -> int:
    """The `float-money` bug: minor units to float major units and back, truncated (29 -> 28)."""
    return int(amount / 100 * 100)


def _screen(
    uow: UnitOfWork,
    payments: Sequence[Payment],
    screening: Screening,
    now: float,
    config: PaymentsConfig,
    checkers: Sequence[Checker],
) -> tuple[list[PaymentEvent], list[Payment]]:
    """Screen received payments: (the events, the payments approved for a reservation).

    Checks in sequence decide here; in parallel, a payment waits in `screening` for their
    decisions unless they are all in already (the checks may have read PaymentReceived first)."""
    emitted: list[PaymentEvent] = []
    approved: list[Payment] = []
    mode = config.checks.mode if config.checks.on else "off"
    for p in payments:
        p = p.move(PaymentStatus.SCREENING)
        decision = screening.screen(p)
        if not decision.approved:
            save_payment(uow, p.move(PaymentStatus.REJECTED, reason=decision.reason))
            emitted.append(PaymentRejected(p.id, p.tenant, p.debtor_account, now, decision.reason))
            continue
        if mode == "off":
            approved.append(p)
            continue
        if mode == "sequential":
            for checker in checkers:
                event = checks.decide_once(uow, checker, p, now)
                if event is not None:
                    emitted.append(event)
        found = checks.decisions_of(uow, p, config.checks.checks)
        verdict = checks.outcome(found, config.checks, timed_out=mode == "sequential")
        if verdict is None:
            save_payment(uow, p)
            kind, key = checks.awaiting(p, config.checks, config.partitions)
            uow.put_record(kind, "", key, "")
        else:
            emitted += _conclude(uow, p, verdict, now, approved)
    return emitted, approved


def _conclude(
    uow: UnitOfWork, p: Payment, verdict: Outcome, now: float, approved: list[Payment]
) -> list[PaymentEvent]:
    """Act on what the checks (or an operator) decided: reject or hold now, or add `p` to the
    payments to reserve."""
    if verdict.verdict == "approve":
        approved.append(p)
        return []
    if verdict.verdict == "reject":
        save_payment(uow, p.move(PaymentStatus.REJECTED, reason=verdict.reason))
        return [PaymentRejected(p.id, p.tenant, p.debtor_account, now, verdict.reason)]
    save_payment(uow, p.move(PaymentStatus.HELD, reason=verdict.reason))
    return [PaymentHeld(p.id, p.tenant, p.debtor_account, now, verdict.reason)]


def _stop_waiting(uow: UnitOfWork, p: Payment, config: PaymentsConfig) -> None:
    kind, key = checks.awaiting(p, config.checks, config.partitions)
    uow.delete_records_if_unchanged(kind, "", {key: ""})


def expire_checks(
    uow: UnitOfWork, partitions: Sequence[int], now: float, config: PaymentsConfig
) -> list[PaymentEvent]:
    """The payments of `partitions` still waiting for their checks at the deadline: decide them
    by what is in and the timeout policy for the rest (the payments members' periodic sweep)."""
    emitted: list[PaymentEvent] = []
    approved: list[Payment] = []
    for partition in partitions:
        for kind, key, tenant, payment_id in checks.due(uow, partition, now):
            payment = get_payment(uow, tenant, payment_id)
            uow.delete_records_if_unchanged(kind, "", {key: ""})
            if payment is None or payment.status is not PaymentStatus.SCREENING:
                continue
            found = checks.decisions_of(uow, payment, config.checks.checks)
            policy = config.checks
            if "approve-on-timeout" in config.bugs:
                policy = replace(policy, on_timeout="approve")  # the bug: the policy ignored
            verdict = checks.outcome(found, policy, timed_out=True)
            assert verdict is not None
            emitted += _conclude(uow, payment, verdict, now, approved)
    emitted += _reserve(uow, approved, now, config.bugs)
    append(uow, emitted, config.partitions, now)
    return emitted


def _reserve(
    uow: UnitOfWork, approved: Sequence[Payment], now: float, bugs: frozenset[str]
) -> list[PaymentEvent]:
    emitted: list[PaymentEvent] = []
    for tenant, group in _by_tenant(approved).items():
        batch = [
            Transfer(
                _drawn(p.reserve_transfer_id, now)
                if "non-idempotent-consumer" in bugs
                else p.reserve_transfer_id,
                p.debtor_account,
                p.creditor_account,
                _through_float(p.amount) if "float-money" in bugs else p.amount,
                p.currency,
                TransferKind.PENDING,
                payment_id=p.id,
            )
            for p in group
        ]
        results = submit_transfers_in(uow, tenant, batch, now).results
        for p, code in zip(group, results, strict=True):
            if code in _DONE:
                save_payment(uow, p.move(PaymentStatus.RESERVED))
                emitted.append(PaymentReserved(p.id, tenant, p.debtor_account, now))
            else:
                save_payment(uow, p.move(PaymentStatus.REJECTED, reason=code.value))
                emitted.append(PaymentRejected(p.id, tenant, p.debtor_account, now, code.value))
    return emitted


def _drawn(transfer_id: str, at: float) -> str:
    """A transfer id drawn per delivery or call, not derived from the payment (bug zoo)."""
    return f"{transfer_id}@{at!r}"


def _post(
    uow: UnitOfWork,
    payments: Sequence[Payment],
    now: float,
    reserved_at: Sequence[float] | None = None,
) -> list[PaymentEvent]:
    """Post each reservation; `reserved_at` (only under `non-idempotent-consumer`, one per
    payment) is when the delivery that drew the reservation announced it."""
    emitted: list[PaymentEvent] = []
    # by object: under the bug one payment may come twice in a batch, once per redelivery
    at_of = {id(p): at for p, at in zip(payments, reserved_at or (), strict=False)}
    for tenant, group in _by_tenant(payments).items():
        batch = [
            Transfer(
                p.post_transfer_id,
                kind=TransferKind.POST_PENDING,
                pending_id=p.reserve_transfer_id,
                payment_id=p.id,
            )
            if reserved_at is None
            else Transfer(
                _drawn(p.post_transfer_id, now),
                kind=TransferKind.POST_PENDING,
                pending_id=_drawn(p.reserve_transfer_id, at_of[id(p)]),
                payment_id=p.id,
            )
            for p in group
        ]
        results = submit_transfers_in(uow, tenant, batch, now).results
        for p, code in zip(group, results, strict=True):
            if code in _DONE:
                save_payment(uow, p.move(PaymentStatus.POSTED, posted_at=now))
                emitted.append(
                    PaymentPosted(
                        p.id,
                        tenant,
                        p.debtor_account,
                        now,
                        p.creditor_account,
                        p.amount,
                        p.currency,
                    )
                )
            else:
                save_payment(uow, p.move(PaymentStatus.FAILED, reason=code.value))
                emitted.append(PaymentFailed(p.id, tenant, p.debtor_account, now, code.value))
    return emitted


def fail_payment(
    uow: UnitOfWork, tenant: str, payment_id: str, reason: str, now: float, config: PaymentsConfig
) -> Payment | None:
    """Compensation after retries ran out: void the reservation (if any), mark failed.

    A no-op (returns None) for a payment that is already terminal or posted: that guard, and the
    void keyed by the payment, are what make a repeated compensation harmless.
    Bug zoo: `double-compensation` has neither. A failed payment is compensated again, its
    reservation released by a void drawn per call; the ledger refuses a second void of one
    reservation (`pending_already_voided`), and the bug takes that answer to mean the money
    moved, so it refunds the debtor with a reverse transfer (also drawn per call).
    """
    payment = get_payment(uow, tenant, payment_id)
    if payment is None:
        return None
    again = "double-compensation" in config.bugs and payment.status is PaymentStatus.FAILED
    if not again and PaymentStatus.FAILED not in TRANSITIONS[payment.status]:
        return None
    if again or payment.status is PaymentStatus.RESERVED:
        released = (
            _release_unkeyed(uow, payment, now)
            if "double-compensation" in config.bugs
            else _void(uow, payment, now)
        )
        if not released:
            return None
    failed = (
        replace(payment, reason=reason)
        if again
        else payment.move(PaymentStatus.FAILED, reason=reason)
    )
    save_payment(uow, failed)
    append(
        uow,
        [PaymentFailed(payment.id, tenant, payment.debtor_account, now, reason)],
        config.partitions,
        now,
    )
    return failed


def _void(uow: UnitOfWork, payment: Payment, now: float) -> bool:
    """Void the reservation under its keyed id: a repeat is `exists`, never a second void."""
    void = Transfer(
        payment.void_transfer_id,
        kind=TransferKind.VOID,
        pending_id=payment.reserve_transfer_id,
        payment_id=payment.id,
    )
    return submit_transfers_in(uow, payment.tenant, [void], now).results[0] in _DONE


def _release_unkeyed(uow: UnitOfWork, payment: Payment, now: float) -> bool:
    """`double-compensation`: a void drawn per call, so the ledger cannot answer `exists`; if
    the reservation is already voided, refund the debtor with a reverse transfer."""
    void = Transfer(
        _drawn(payment.void_transfer_id, now),
        kind=TransferKind.VOID,
        pending_id=payment.reserve_transfer_id,
        payment_id=payment.id,
    )
    code = submit_transfers_in(uow, payment.tenant, [void], now).results[0]
    if code is not TransferResult.PENDING_ALREADY_VOIDED:
        return code in _DONE
    refund = Transfer(
        _drawn(f"{payment.id}:refund", now),
        payment.creditor_account,
        payment.debtor_account,
        payment.amount,
        payment.currency,
        payment_id=payment.id,
    )
    return submit_transfers_in(uow, payment.tenant, [refund], now).results[0] in _DONE


class ReviewRefused(Exception):
    """A review of a payment that is not held, or was reviewed already; the message says which."""


def review_payment(
    uow: UnitOfWork,
    tenant: str,
    payment_id: str,
    verdict: str,
    reason: str,
    now: float,
    config: PaymentsConfig,
) -> Payment | None:
    """An operator's decision on a held payment: recorded once (as the `operator` decision) and
    announced to the payments group, which reserves and posts it or rejects it. None when the
    payment does not exist; ReviewRefused when it is not held or was reviewed already."""
    payment = get_payment(uow, tenant, payment_id)
    if payment is None:
        return None
    if payment.status is not PaymentStatus.HELD:
        raise ReviewRefused(f"payment {payment_id!r} is {payment.status.value}, not held")
    decision = Decision("approve" if verdict == "approve" else "reject", reason)
    key = checks.decision_key(payment_id, checks.OPERATOR)
    text = checks.decision_text(decision, now)
    if uow.insert_record_if_absent(checks.DECISION, tenant, key, text) is not None:
        raise ReviewRefused(f"payment {payment_id!r} was reviewed already")
    event = PaymentReviewed(payment.id, tenant, payment.debtor_account, now, verdict, reason)
    append(uow, [event], config.partitions, now)
    return payment
