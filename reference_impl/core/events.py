"""Domain events: what happened to a payment, as frozen values.

They travel through the outbox as JSON (`encode`/`decode`); the event-log key is the tenant and
debtor account, so one account's payments are handled in order by one consumer.
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


def event_key(event: PaymentEvent) -> str:
    return f"{event.tenant}/{event.debtor_account}"


def encode(event: PaymentEvent) -> tuple[str, str, str]:
    """(type, key, payload JSON) for the outbox."""
    return type(event).__name__, event_key(event), to_json(event)


def decode(type_name: str, payload: str) -> PaymentEvent:
    return EVENT_TYPES[type_name](**json.loads(payload))
