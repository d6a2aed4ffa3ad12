"""The compliance consumer groups ("sanctions", "aml", "fraud"): one decision per payment each.

Each group reads PaymentReceived from the payments topic, in parallel with the others and with
the payments group, and records its check's decision in the unit of work that commits its
offsets (service/checks.py `decide_once`): a redelivered event finds the decision there and
decides nothing twice. The payments group waits for the CheckDecided events
(service/payments.py). Each group is built as a consumer-engine member in service/members.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from reference_impl.core.events import PAYMENTS_TOPIC, PaymentEvent, PaymentReceived, decode
from reference_impl.core.payments import Payment
from reference_impl.service.checks import Checker, decide_once
from reference_impl.service.payments import append, get_payment
from reference_impl.service.ports import LoggedEvent, UnitOfWork

CHECK_TOPICS = (PAYMENTS_TOPIC,)
CHECK_HANDLES = frozenset({PaymentReceived.__name__})


def handle_check_events(
    uow: UnitOfWork,
    events: Sequence[LoggedEvent],
    checker: Checker,
    now: float,
    partitions: int,
) -> list[PaymentEvent]:
    """`checker`'s decision on each received payment of the batch that has none yet."""
    emitted: list[PaymentEvent] = []
    for payment in _received(uow, events):
        decided = decide_once(uow, checker, payment, now)
        if decided is not None:
            emitted.append(decided)
    append(uow, emitted, partitions, now)
    return emitted


def _received(uow: UnitOfWork, events: Sequence[LoggedEvent]) -> list[Payment]:
    """The stored payments of the batch's PaymentReceived events (one that is gone skipped)."""
    found = []
    for logged in events:
        if logged.type in CHECK_HANDLES:
            event = decode(logged.type, logged.payload)
            payment = get_payment(uow, event.tenant, event.payment_id)
            if payment is not None:
                found.append(payment)
    return found


def prepare_batch(
    uow: UnitOfWork, events: Sequence[LoggedEvent], checkers: Sequence[Checker]
) -> Callable[[], int] | None:
    """What the checks need from outside before a batch is applied (a screening provider's
    answers for its payments' names): one call for the batch, or None."""
    payments = _received(uow, events)
    calls = [
        call
        for checker in checkers
        if (prepare := getattr(checker, "prepare", None)) is not None
        and (call := prepare(payments)) is not None
    ]
    if not calls:
        return None
    return lambda: sum(call() for call in calls)
