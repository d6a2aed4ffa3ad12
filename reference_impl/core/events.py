"""Domain events: what happened to a payment, as frozen values.

They travel through the outbox as JSON (`encode`/`decode`); the event-log key is the tenant and
debtor account, so one account's payments are handled in order by one consumer. Each event type
goes to one topic, and a consumer group reads only the topics it subscribes to:

- `payments`: what the payment saga acts on (received, reserved);
- `payment-outcomes`: how a payment ended in the ledger (posted, rejected, failed);
- `settlements`: what settlement did with it (settled);
- `check-decisions`: each compliance check's decision on a payment (sanctions, AML, fraud), which
  the payments group waits for when the checks run in parallel (service/checks.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from reference_impl.core.serial import Memo, to_json


@dataclass(frozen=True, slots=True)
class PaymentEvent:
    payment_id: str
    tenant: str
    debtor_account: str
    at: float


@dataclass(frozen=True, slots=True)
class PaymentReceived(PaymentEvent):
    pass


@dataclass(frozen=True, slots=True)
class PaymentReserved(PaymentEvent):
    pass


@dataclass(frozen=True, slots=True)
class PaymentRejected(PaymentEvent):
    reason: str = ""


@dataclass(frozen=True, slots=True)
class PaymentPosted(PaymentEvent):
    creditor_account: str = ""
    amount: int = 0
    currency: str = ""


@dataclass(frozen=True, slots=True)
class PaymentFailed(PaymentEvent):
    reason: str = ""


@dataclass(frozen=True, slots=True)
class PaymentSettled(PaymentEvent):
    batch_id: str = ""


@dataclass(frozen=True, slots=True)
class CheckDecided(PaymentEvent):
    """A compliance check's one decision on a payment (`verdict`: approve, reject or review)."""

    check: str = ""
    verdict: str = ""
    reason: str = ""
    score: float = 0.0


@dataclass(frozen=True, slots=True)
class PaymentHeld(PaymentEvent):
    """The checks neither all approved nor any rejected: the payment waits for an operator."""

    reason: str = ""


@dataclass(frozen=True, slots=True)
class PaymentReviewed(PaymentEvent):
    """An operator approved or rejected a held payment (`POST /v1/payments/{id}/review`)."""

    verdict: str = ""
    reason: str = ""


EVENT_TYPES: dict[str, type[PaymentEvent]] = {
    cls.__name__: cls
    for cls in (
        PaymentReceived,
        PaymentReserved,
        PaymentRejected,
        PaymentPosted,
        PaymentFailed,
        PaymentSettled,
        CheckDecided,
        PaymentHeld,
        PaymentReviewed,
    )
}


PAYMENTS_TOPIC = "payments"
OUTCOMES_TOPIC = "payment-outcomes"
SETTLEMENTS_TOPIC = "settlements"
DECISIONS_TOPIC = "check-decisions"
TOPICS = (PAYMENTS_TOPIC, OUTCOMES_TOPIC, SETTLEMENTS_TOPIC, DECISIONS_TOPIC)
TOPIC_OF: dict[str, str] = {
    PaymentReceived.__name__: PAYMENTS_TOPIC,
    PaymentReserved.__name__: PAYMENTS_TOPIC,
    PaymentRejected.__name__: OUTCOMES_TOPIC,
    PaymentPosted.__name__: OUTCOMES_TOPIC,
    PaymentFailed.__name__: OUTCOMES_TOPIC,
    PaymentSettled.__name__: SETTLEMENTS_TOPIC,
    CheckDecided.__name__: DECISIONS_TOPIC,
    PaymentHeld.__name__: OUTCOMES_TOPIC,
    PaymentReviewed.__name__: PAYMENTS_TOPIC,
}


def event_key(event: PaymentEvent) -> str:
    return f"{event.tenant}/{event.debtor_account}"


_DECODED: Memo[tuple[str, str], PaymentEvent] = Memo(1 << 15)
"""Events by (type, payload): each event is read by several groups (and encoded just before)."""


def encode(event: PaymentEvent) -> tuple[str, str, str, str]:
    """(topic, type, key, payload JSON) for the outbox."""
    name = type(event).__name__
    payload = to_json(event)
    _DECODED.put((name, payload), event)
    return TOPIC_OF[name], name, event_key(event), payload


def decode(type_name: str, payload: str) -> PaymentEvent:
    key = (type_name, payload)
    event = _DECODED.get(key)
    if event is None:
        event = EVENT_TYPES[type_name](**json.loads(payload))
        _DECODED.put(key, event)
    return event
