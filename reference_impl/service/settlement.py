"""The settlement worker: batch posted payments, send them at a cut-off, reconcile statements.

Three steps, each inside the caller's unit of work (the caller commits):
- `handle_settlement_events` is the "settlement" consumer group: each PaymentPosted joins the open
  batch of its (tenant, partner, currency); the offset advances in the same commit.
- `close_batches` closes, nets and sends the open batches at a cut-off.
- `ingest_statement` reconciles a partner statement, settles the matched payments (PaymentSettled
  in the outbox) and stores every break.
Every effect is keyed (payment id, batch id, statement id), so a redelivery or a replay is a
no-op. State lives in the store's generic records; the partner-wide ones (cursors of open batches,
payment items, statements) are namespaced by the partner's name instead of a tenant, because a
partner's statement spans tenants. The three steps share those records, so they assume one
settlement writer at a time, as the runtime's single settlement loop provides.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from reference_impl.core.errors import InvariantViolation
from reference_impl.core.events import PaymentEvent, PaymentPosted, PaymentSettled, decode
from reference_impl.core.payments import PaymentStatus
from reference_impl.core.serial import evolve
from reference_impl.core.settlement import (
    BatchStatus,
    Break,
    ItemStatus,
    Reconciliation,
    SettlementBatch,
    SettlementItem,
    Statement,
    batch_id,
    reconcile_statement,
)
from reference_impl.service.payments import append, get_payment, save_payment
from reference_impl.service.ports import ConcurrentUpdate, LoggedEvent, UnitOfWork

SETTLEMENT_GROUP = "settlement"

BATCH = "settlement_batch"
"""(tenant, batch id) -> SettlementBatch."""
CURSOR = "settlement_cursor"
"""(partner, "currency/tenant") -> the lane's sequence, open batch and closed-but-unsent batches."""
ITEM = "settlement_item"
"""(partner, payment id) -> SettlementItem: the lookup of a statement line's EndToEndId."""
OUTSTANDING = "settlement_outstanding"
"""(partner, currency) -> [[tenant, batch id], ...]: sent batches not yet reconciled."""
STATEMENT = "settlement_statement"
"""(partner, statement id) -> the Reconciliation: makes ingesting a statement idempotent."""
BREAK = "settlement_break"
"""(tenant, break id) -> Break; an unknown line belongs to no tenant and is stored under ""."""

_POSTED = PaymentPosted.__name__


class PartnerUnavailable(Exception):
    """The partner cannot be reached: the batch stays closed and goes at the next cut-off."""


class BankPartner(Protocol):
    """What the worker needs from a bank partner (the simulator, or a real file channel)."""

    @property
    def name(self) -> str: ...

    def submit(self, batch: SettlementBatch, now: float) -> None:
        """Send a closed batch; the partner ignores a batch id it has already booked.

        Raises PartnerUnavailable when it cannot be reached.
        """

    def statements(self, now: float) -> list[Statement]:
        """Statements that became due by `now` and were not returned before."""


@dataclass(frozen=True, slots=True)
class SettlementConfig:
    partners: tuple[str, ...] = ("bank-a",)
    partitions: int = 8
    """Event-log partitions, for the PaymentSettled events this worker appends."""


def partner_for(creditor_account: str, partners: Sequence[str]) -> str:
    """The partner that settles payments to `creditor_account`: stable across processes."""
    if not partners:
        raise ValueError("partners: at least one bank partner is needed")
    return partners[zlib.crc32(creditor_account.encode()) % len(partners)]


@dataclass(slots=True)
class _Cursor:
    """One (tenant, partner, currency) lane: its batch sequence and its batches in flight."""

    tenant: str
    currency: str
    sequence: int = 0
    open_batch: str = ""
    unsent: list[str] = field(default_factory=list)

    @staticmethod
    def key(tenant: str, currency: str) -> str:
        # Currency first: it has no "/", so the key is unambiguous whatever the tenant holds.
        return f"{currency}/{tenant}"

    def to_json(self) -> str:
        return json.dumps(
            {
                "tenant": self.tenant,
                "currency": self.currency,
                "sequence": self.sequence,
                "open_batch": self.open_batch,
                "unsent": self.unsent,
            },
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> _Cursor:
        return cls(**json.loads(text))


def _load_batch(uow: UnitOfWork, tenant: str, bid: str) -> SettlementBatch:
    text = uow.get_record(BATCH, tenant, bid)
    if text is None:
        raise InvariantViolation(f"settlement batch {bid} of tenant {tenant} is not stored")
    return SettlementBatch.from_json(text)


def _save_batch(uow: UnitOfWork, batch: SettlementBatch) -> None:
    uow.put_record(BATCH, batch.tenant, batch.id, batch.to_json())


def _load_item(uow: UnitOfWork, partner: str, payment_id: str) -> SettlementItem | None:
    text = uow.get_record(ITEM, partner, payment_id)
    return SettlementItem.from_json(text) if text is not None else None


def _all_records(uow: UnitOfWork, kind: str, namespace: str) -> Iterator[tuple[str, str]]:
    after = ""
    while page := uow.list_records(kind, namespace, after, 1000):
        yield from page
        after = page[-1][0]


def handle_settlement_events(
    uow: UnitOfWork, events: Sequence[LoggedEvent], now: float, config: SettlementConfig
) -> None:
    """The settlement consumer: batch each posted payment once, advance the offset."""
    if not events:
        return
    cursors: dict[tuple[str, str], _Cursor] = {}
    batches: dict[str, SettlementBatch] = {}
    for logged in events:
        # Most of the log is other payment events: skip them before paying for their JSON.
        if logged.type != _POSTED:
            continue
        event = decode(logged.type, logged.payload)
        if not isinstance(event, PaymentPosted):
            continue
        partner = partner_for(event.creditor_account, config.partners)
        key = _Cursor.key(event.tenant, event.currency)
        cursor = cursors.get((partner, key))
        if cursor is None:
            text = uow.get_record(CURSOR, partner, key)
            cursor = _Cursor.from_json(text) if text else _Cursor(event.tenant, event.currency)
            cursors[(partner, key)] = cursor
        existing = uow.get_record(ITEM, partner, event.payment_id)
        if existing is not None:
            if SettlementItem.from_json(existing).tenant != event.tenant:
                raise InvariantViolation(f"payment id {event.payment_id} is used by two tenants")
            continue  # redelivered: already in a batch
        if not cursor.open_batch:
            # A batch is opened by its first payment, so an open batch is never empty.
            cursor.sequence += 1
            cursor.open_batch = batch_id(event.tenant, partner, event.currency, cursor.sequence)
            batches[cursor.open_batch] = SettlementBatch(
                cursor.open_batch, event.tenant, partner, event.currency, opened_at=now
            )
        item = SettlementItem(
            event.payment_id,
            event.tenant,
            partner,
            event.currency,
            event.amount,
            cursor.open_batch,
        )
        if uow.insert_record_if_absent(ITEM, partner, item.payment_id, item.to_json()):
            # Another consumer batched it since the read above (a store that is not serialisable).
            raise ConcurrentUpdate(f"payment {item.payment_id} was batched concurrently")
        batch = batches.get(cursor.open_batch) or _load_batch(uow, event.tenant, cursor.open_batch)
        batches[batch.id] = batch.add(item.payment_id, item.amount)
    # Written once per batch, not once per payment: a batch record grows with its payments.
    for batch in batches.values():
        _save_batch(uow, batch)
    for (partner, key), cursor in cursors.items():
        uow.put_record(CURSOR, partner, key, cursor.to_json())
    last = events[-1]
    uow.set_offset(SETTLEMENT_GROUP, last.partition, last.offset)


def close_batches(
    uow: UnitOfWork, now: float, partner: BankPartner, config: SettlementConfig
) -> list[SettlementBatch]:
    """The cut-off for one partner: close every open batch, send every closed one.

    Returns the batches this call changed: sent, or closed and left for the next cut-off when
    the partner is unavailable. A batch is marked sent in this unit of work, so it is sent at
    most once once committed; if the commit fails after `submit`, the resend carries the same
    batch id, which the partner ignores.
    """
    changed: dict[str, SettlementBatch] = {}
    for key, text in list(_all_records(uow, CURSOR, partner.name)):
        cursor = _Cursor.from_json(text)
        if not cursor.open_batch and not cursor.unsent:
            continue
        if cursor.open_batch:
            batch = _load_batch(uow, cursor.tenant, cursor.open_batch)
            batch = batch.move(BatchStatus.CLOSED, closed_at=now)
            _save_batch(uow, batch)
            changed[batch.id] = batch
            cursor.unsent.append(batch.id)
            cursor.open_batch = ""
        still_unsent: list[str] = []
        for bid in cursor.unsent:
            batch = changed.get(bid) or _load_batch(uow, cursor.tenant, bid)
            try:
                partner.submit(batch, now)
            except PartnerUnavailable:
                still_unsent.append(bid)
                continue
            changed[bid] = _mark_sent(uow, batch, now)
        cursor.unsent = still_unsent
        uow.put_record(CURSOR, partner.name, key, cursor.to_json())
    return list(changed.values())


def _mark_sent(uow: UnitOfWork, batch: SettlementBatch, now: float) -> SettlementBatch:
    sent = batch.move(BatchStatus.SENT, sent_at=now)
    _save_batch(uow, sent)
    for pid in sent.payment_ids:
        item = _load_item(uow, sent.partner, pid)
        if item is None:
            raise InvariantViolation(f"payment {pid} of batch {sent.id} has no settlement item")
        sent_item = evolve(item, status=ItemStatus.SENT, sent_at=now)
        uow.put_record(ITEM, sent.partner, pid, sent_item.to_json())
    outstanding = _outstanding(uow, sent.partner, sent.currency)
    outstanding.append((sent.tenant, sent.id))
    _save_outstanding(uow, sent.partner, sent.currency, outstanding)
    return sent


def _outstanding(uow: UnitOfWork, partner: str, currency: str) -> list[tuple[str, str]]:
    text = uow.get_record(OUTSTANDING, partner, currency)
    return [(t, b) for t, b in json.loads(text)] if text else []


def _save_outstanding(
    uow: UnitOfWork, partner: str, currency: str, batches: list[tuple[str, str]]
) -> None:
    uow.put_record(OUTSTANDING, partner, currency, json.dumps(batches, separators=(",", ":")))


def ingest_statement(
    uow: UnitOfWork, statement: Statement, now: float, config: SettlementConfig
) -> Reconciliation:
    """Reconcile one statement; a statement ingested before returns its stored outcome."""
    done = uow.get_record(STATEMENT, statement.partner, statement.id)
    if done is not None:
        return evolve(Reconciliation.from_json(done), replayed=True)
    partner, currency = statement.partner, statement.currency
    outstanding = _outstanding(uow, partner, currency)
    batches = {bid: _load_batch(uow, tenant, bid) for tenant, bid in outstanding}
    items: dict[str, SettlementItem] = {}
    for pid in [p for b in batches.values() for p in b.payment_ids] + [
        ln.end_to_end_id for ln in statement.lines
    ]:
        if pid not in items and (item := _load_item(uow, partner, pid)) is not None:
            items[pid] = item
    result = reconcile_statement(statement, items)

    for item in result.items:
        items[item.payment_id] = item
        uow.put_record(ITEM, partner, item.payment_id, item.to_json())
    for brk in result.breaks:
        uow.put_record(BREAK, brk.tenant, brk.id, brk.to_json())
    tenant_of = {brk.id: brk.tenant for brk in result.breaks}
    for missing_id, timing_id in result.resolved:
        tenant = tenant_of[timing_id]
        text = uow.get_record(BREAK, tenant, missing_id)
        if text is not None:
            resolved = evolve(Break.from_json(text), resolved_by=timing_id)
            uow.put_record(BREAK, tenant, missing_id, resolved.to_json())
    _settle_payments(uow, result, now, config)

    # A batch is reconciled once no payment of it still waits for a statement line.
    still: list[tuple[str, str]] = []
    for tenant, bid in outstanding:
        batch = batches[bid]
        if any(items[p].status is ItemStatus.SENT for p in batch.payment_ids):
            still.append((tenant, bid))
        else:
            _save_batch(uow, batch.move(BatchStatus.RECONCILED, reconciled_at=now))
    if still != outstanding:
        _save_outstanding(uow, partner, currency, still)

    if uow.insert_record_if_absent(STATEMENT, partner, statement.id, result.to_json()):
        # Another worker ingested it concurrently (a store without serialisable units of work).
        raise ConcurrentUpdate(f"statement {statement.id} was ingested concurrently")
    return result


def _settle_payments(
    uow: UnitOfWork, result: Reconciliation, now: float, config: SettlementConfig
) -> None:
    events: list[PaymentEvent] = []
    for s in result.settled:
        payment = get_payment(uow, s.tenant, s.payment_id)
        if payment is None:
            raise InvariantViolation(f"settled payment {s.payment_id} of {s.tenant} is not stored")
        if payment.status is not PaymentStatus.POSTED:
            continue  # settled already: a payment is never settled twice
        save_payment(uow, payment.move(PaymentStatus.SETTLED, settled_at=s.value_at))
        events.append(PaymentSettled(payment.id, s.tenant, payment.debtor_account, now, s.batch_id))
    append(uow, events, config.partitions, now)


def list_settlements(
    uow: UnitOfWork, tenant: str, after: str = "", limit: int = 100
) -> list[dict[str, Any]]:
    """The tenant's settlement batches ordered by id, after the id `after`."""
    return [
        SettlementBatch.from_json(text).public()
        for _, text in uow.list_records(BATCH, tenant, after, limit)
    ]


def list_breaks(
    uow: UnitOfWork, tenant: str, after: str = "", limit: int = 100
) -> list[dict[str, Any]]:
    """The tenant's reconciliation breaks ordered by id, after the id `after`."""
    return [
        Break.from_json(text).public() for _, text in uow.list_records(BREAK, tenant, after, limit)
    ]
