"""The gateway's command: accept a payment request exactly once per idempotency key.

accept_payment validates the request and commits {idempotency record, payment(received),
outbox: PaymentReceived} in the caller's unit of work, so the 202 is only sent for what is
committed; a repeat of the key answers with the stored response instead of a second payment.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reference_impl.core.errors import InvalidInput
from reference_impl.core.events import PaymentReceived
from reference_impl.core.money import MAX_AMOUNT, is_currency
from reference_impl.core.payments import Payment
from reference_impl.core.serial import dumps
from reference_impl.service.payments import PaymentsConfig, append, save_payment
from reference_impl.service.ports import UnitOfWork

IDEMPOTENCY = "idempotency"


class InvalidPayment(InvalidInput):
    """A payment request breaks a rule; nothing was stored. `field` names the culprit."""

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field
        self.rule = rule


class IdempotencyKeyReused(InvalidInput):
    """The key was used before with a different request body."""


@dataclass(frozen=True, slots=True)
class PaymentRequest:
    debtor_account: str
    creditor_account: str
    amount: int
    currency: str
    reference: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    debtor_name: str = ""
    """The names the payer gives (as in a credit transfer); "" for the account holders'."""
    creditor_name: str = ""


@dataclass(frozen=True, slots=True)
class Acceptance:
    status_code: int
    body: dict[str, Any]
    replayed: bool


def request_hash(body: Mapping[str, Any]) -> str:
    """The sha256 of a request body's canonical JSON (sorted keys, no spaces), which a key's
    stored answer is matched against: a retry that re-serialises the same request (other key
    order, other spacing) still matches, and any other body does not."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _validate(uow: UnitOfWork, tenant: str, req: PaymentRequest) -> tuple[str, str]:
    """The debtor and creditor holder names, or InvalidPayment naming the field and rule."""
    if isinstance(req.amount, bool) or not isinstance(req.amount, int):
        raise InvalidPayment("amount", "must be an integer number of minor units")
    if not 1 <= req.amount <= MAX_AMOUNT:
        raise InvalidPayment("amount", "must be between 1 and 2^63-1 minor units")
    if not is_currency(req.currency):
        raise InvalidPayment("currency", "must be an ISO 4217 currency code")
    if req.debtor_account == req.creditor_account:
        raise InvalidPayment("creditor_account", "must differ from debtor_account")
    accounts = uow.get_accounts(tenant, (req.debtor_account, req.creditor_account))
    for name, account_id in (
        ("debtor_account", req.debtor_account),
        ("creditor_account", req.creditor_account),
    ):
        account = accounts.get(account_id)
        if account is None:
            raise InvalidPayment(name, f"account {account_id!r} does not exist")
        if account.currency != req.currency:
            raise InvalidPayment(
                name, f"account currency is {account.currency}, not {req.currency}"
            )
    return accounts[req.debtor_account].holder_name, accounts[req.creditor_account].holder_name


def accept_payment(
    uow: UnitOfWork,
    tenant: str,
    key: str,
    req: PaymentRequest,
    request_hash: str,
    payment_id: str,
    now: float,
    config: PaymentsConfig,
) -> Acceptance:
    """The gateway's command: a 202 with the new payment, or the stored answer for a replay.

    The caller commits. Raises InvalidPayment (nothing stored) or IdempotencyKeyReused.
    Bug zoo: `skip-idempotency` neither looks the key up nor keeps it exclusive;
    `idempotency-race` leaves the lookup to the caller, in an earlier unit of work
    (`replay_for`); `publish-before-commit` leaves the idempotency record to a later one
    (`record_answer`), after the payment is already published to the workers.
    """
    bugs = config.bugs
    if not bugs & {"skip-idempotency", "idempotency-race"}:
        replay = replay_for(uow, tenant, key, request_hash, now)
        if replay is not None:
            return replay
    debtor_holder, creditor_holder = _validate(uow, tenant, req)
    payment = Payment(
        payment_id,
        tenant,
        key,
        req.debtor_account,
        req.creditor_account,
        req.amount,
        req.currency,
        now,
        reference=req.reference,
        metadata=req.metadata,
        debtor_name=req.debtor_name or debtor_holder,
        creditor_name=req.creditor_name or creditor_holder,
    )
    acceptance = Acceptance(202, payment.public(), False)
    if "publish-before-commit" not in bugs:
        answer = record_answer(uow, tenant, key, request_hash, acceptance, now, config)
        if answer is not acceptance:
            return answer
    save_payment(uow, payment)
    event = PaymentReceived(payment.id, tenant, payment.debtor_account, now)
    append(uow, [event], config.partitions, now)
    return acceptance


def replay_for(
    uow: UnitOfWork, tenant: str, key: str, request_hash: str, now: float
) -> Acceptance | None:
    """The stored answer for a live key (IdempotencyKeyReused for another body), or None."""
    stored = uow.get_record(IDEMPOTENCY, tenant, key)
    return _replay(stored, request_hash, now) if stored is not None else None


def record_answer(
    uow: UnitOfWork,
    tenant: str,
    key: str,
    request_hash: str,
    acceptance: Acceptance,
    now: float,
    config: PaymentsConfig,
) -> Acceptance:
    """Remember `acceptance` as the key's answer; returns it, or the answer stored first."""
    record = dumps(
        {
            "request_hash": request_hash,
            "status_code": acceptance.status_code,
            "body": acceptance.body,
            "expires_at": now + config.idempotency_retention,
        }
    )
    if config.bugs & {"skip-idempotency", "idempotency-race"}:
        # The bug: a blind write, so a concurrent request with the key overwrites the answer.
        uow.put_record(IDEMPOTENCY, tenant, key, record)
        return acceptance
    # Insert-if-absent, not put: a concurrent request with the same key that got here first
    # wins, and this one answers with its stored response instead of creating a second payment.
    raced = uow.insert_record_if_absent(IDEMPOTENCY, tenant, key, record)
    if raced is not None:
        replay = _replay(raced, request_hash, now)
        if replay is not None:
            return replay
        uow.put_record(IDEMPOTENCY, tenant, key, record)
    return acceptance


def _replay(stored: str, request_hash: str, now: float) -> Acceptance | None:
    """The stored answer for a live key; None when the key has expired."""
    record = json.loads(stored)
    if record["expires_at"] <= now:
        return None
    if record["request_hash"] != request_hash:
        raise IdempotencyKeyReused("Idempotency-Key: already used with a different request body")
    return Acceptance(record["status_code"], record["body"], True)
