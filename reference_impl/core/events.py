"""Domain events: what happened to a payment, as frozen values.

They travel through the outbox as JSON (`encode`/`decode`); the event-log key is the tenant and
debtor account, so one account's payments are handled in order by one consumer. Each event type
goes to one topic, and a consumer group reads only the topics it subscribes to:

- `payments`: what the payment saga acts on (received, reserved);
- `payment-outcomes`: how a payment ended in the ledger (posted, rejected, failed);
- `settlements`: what settlement did with it (settled).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from reference_impl.core.serial import to_json


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


EVENT_TYPES: dict[str, type[PaymentEvent]] = {
    cls.__name__: cls
    for cls in (
        PaymentReceived,
        PaymentReserved,
        PaymentRejected,
        PaymentPosted,
        PaymentFailed,
        PaymentSettled,
    )
}


PAYMENTS_TOPIC = "payments"
OUTCOMES_TOPIC = "payment-outcomes"
SETTLEMENTS_TOPIC = "settlements"
TOPICS = (PAYMENTS_TOPIC, OUTCOMES_TOPIC, SETTLEMENTS_TOPIC)
TOPIC_OF: dict[str, str] = {
    PaymentReceived.__name__: PAYMENTS_TOPIC,
    PaymentReserved.__name__: PAYMENTS_TOPIC,
    PaymentRejected.__name__: OUTCOMES_TOPIC,
    PaymentPosted.__name__: OUTCOMES_TOPIC,
    PaymentFailed.__name__: OUTCOMES_TOPIC,
    PaymentSettled.__name__: SETTLEMENTS_TOPIC,
}


def event_key(event: PaymentEvent) -> str:
    return f"{event.tenant}/{event.debtor_account}"


def encode(event: PaymentEvent) -> tuple[str, str, str, str]:
    """(topic, type, key, payload JSON) for the outbox."""
    name = type(event).__name__
    return TOPIC_OF[name], name, event_key(event), to_json(event)


def decode(type_name: str, payload: str) -> PaymentEvent:
    return EVENT_TYPES[type_name](**json.loads(payload))
