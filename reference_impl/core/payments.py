"""The payment aggregate and its saga as a state table.

received -> screening -> rejected | reserved -> posted -> settled; a technical failure moves a
payment to failed (after compensation voids its reservation). When the compliance checks neither
all approve nor any reject, screening -> held, and an operator's review moves it on to reserved
or rejected; a held payment has moved no money. An illegal move raises
IllegalTransition and leaves the payment unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from reference_impl.core.errors import IllegalTransition
from reference_impl.core.serial import Memo, evolve, to_json


class PaymentStatus(StrEnum):
    RECEIVED = "received"
    SCREENING = "screening"
    REJECTED = "rejected"
    RESERVED = "reserved"
    POSTED = "posted"
    SETTLED = "settled"
    FAILED = "failed"
    HELD = "held"


S = PaymentStatus
TRANSITIONS: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    S.RECEIVED: frozenset({S.SCREENING, S.FAILED}),
    S.SCREENING: frozenset({S.REJECTED, S.RESERVED, S.FAILED, S.HELD}),
    S.HELD: frozenset({S.REJECTED, S.RESERVED, S.FAILED}),
    S.RESERVED: frozenset({S.POSTED, S.FAILED}),
    S.POSTED: frozenset({S.SETTLED}),
    S.REJECTED: frozenset(),
    S.SETTLED: frozenset(),
    S.FAILED: frozenset(),
}
TERMINAL = frozenset({S.REJECTED, S.SETTLED, S.FAILED})
"""No further move. POSTED is not terminal for settlement, but is final for the ledger."""
AT_REST = TERMINAL | {S.HELD}
"""Where a payment stays unless someone acts: terminal, or held for an operator's review (what a
drain waits for)."""

_STATUS_OF = {s.value: s for s in PaymentStatus}
"""A dict lookup is ten times cheaper than PaymentStatus(value), paid on every payment read."""
_DECODED: Memo[str, Payment] = Memo(1 << 15)
"""Payments by their record's text: a record is read several times (each saga step, settlement,
the sim's drain check) and most often just after it was written."""


@dataclass(frozen=True, slots=True)
class Payment:
    id: str
    tenant: str
    idempotency_key: str
    debtor_account: str
    creditor_account: str
    amount: int
    currency: str
    received_at: float
    status: PaymentStatus = S.RECEIVED
    reason: str = ""
    reference: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    debtor_name: str = ""
    creditor_name: str = ""
    posted_at: float | None = None
    settled_at: float | None = None

    @property
    def reserve_transfer_id(self) -> str:
        return f"{self.id}:reserve"

    @property
    def post_transfer_id(self) -> str:
        return f"{self.id}:post"

    @property
    def void_transfer_id(self) -> str:
        return f"{self.id}:void"

    def move(self, to: PaymentStatus, **changes: Any) -> Payment:
        """The payment in state `to`, or IllegalTransition if the table forbids the move."""
        if to not in TRANSITIONS[self.status]:
            raise IllegalTransition(f"payment {self.id}: {self.status} -> {to} is not allowed")
        return evolve(self, status=to, **changes)

    def to_json(self) -> str:
        text = to_json(self)
        _DECODED.put(text, self)
        return text

    @classmethod
    def from_json(cls, text: str) -> Payment:
        return _DECODED.decoded(text, cls._parse)

    @classmethod
    def _parse(cls, text: str) -> Payment:
        data = json.loads(text)
        status = data["status"]
        data["status"] = _STATUS_OF.get(status) or PaymentStatus(status)
        return cls(**data)

    def public(self) -> dict[str, Any]:
        """The payment as the HTTP API shows it (absent optional fields left out)."""
        body: dict[str, Any] = {
            "id": self.id,
            "idempotency_key": self.idempotency_key,
            "status": self.status.value,
            "amount": self.amount,
            "currency": self.currency,
            "debtor_account": self.debtor_account,
            "creditor_account": self.creditor_account,
            "debtor_name": self.debtor_name,
            "creditor_name": self.creditor_name,
            "reference": self.reference,
            "metadata": self.metadata,
            "received_at": self.received_at,
        }
        if self.reason:
            body["reason"] = self.reason
        if self.posted_at is not None:
            body["posted_at"] = self.posted_at
        if self.settled_at is not None:
            body["settled_at"] = self.settled_at
        return body
