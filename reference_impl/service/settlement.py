"""The settlement worker: batch posted payments, send them at a cut-off, reconcile statements.

The steps, each inside the caller's unit of work (the caller commits):
- `handle_settlement_events` is the "settlement" consumer group's handler: each PaymentPosted
  joins the open batch of its (tenant, partner, currency); the consumer engine commits the
  offset in the same unit of work.
- `close_batches` closes the open batches at a cut-off and returns every closed, unsent batch;
  the worker submits each to the partner (outside any unit of work: the partner is another
  system) and then `mark_sent` records it. A crash between the two resends the batch at the next
  cut-off under the same id, which the partner ignores.
- `ingest_statement` reconciles a partner statement, settles the matched payments (PaymentSettled
  in the outbox), stores every break, and advances the worker's position in the partner's
  statement feed, so each statement of the feed is ingested exactly once, after any restart.
Every effect is keyed (payment id, batch id, statement id), so a redelivery or a replay is a
no-op. State lives in the store's generic records; the partner-wide ones (cursors of open batches,
payment items, statements) are namespaced by the partner's name instead of a tenant, because a
partner's statement spans tenants. The steps share those records, so they assume one settlement
writer at a time: the settlement group is exclusive (one member holds every partition), and its
member runs the cut-off and the ingestion as its tasks (settlement_tasks).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from reference_impl.core.errors import InvariantViolation
from reference_impl.core.events import (
    OUTCOMES_TOPIC,
    PaymentEvent,
    PaymentPosted,
    PaymentSettled,
    decode,
)
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
FEED = "settlement_feed"
"""(partner, "position") -> how many statements of the partner's feed have been ingested."""
BREAK = "settlement_break"
"""(tenant, break id) -> Break; an unknown line belongs to no tenant and is stored under ""."""

_POSTED = PaymentPosted.__name__
_AWAITING_LINE = frozenset({ItemStatus.SENT, ItemStatus.MISSING})
SETTLEMENT_TOPICS = (OUTCOMES_TOPIC,)
SETTLEMENT_HANDLES = frozenset({_POSTED})


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

    def statements_after(self, position: int, now: float) -> list[Statement]:
        """The partner's statement feed from `position` on: every statement it has issued by
        `now`, in issue order. Issued statements are kept, so a reader that restarts can read
        them again from the position it had ingested up to."""


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
) -> list[PaymentEvent]:
    """The settlement group's effects: batch each posted payment once (emits nothing)."""
    if not events:
        return []
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
    return []


def close_batches(uow: UnitOfWork, now: float, partner: str) -> list[SettlementBatch]:
    """The cut-off for one partner: close every open batch; returns every batch that is closed
    and not sent yet (those of earlier cut-offs too), to submit and then `mark_sent`."""
    unsent: list[SettlementBatch] = []
    for key, text in list(_all_records(uow, CURSOR, partner)):
        cursor = _Cursor.from_json(text)
        if not cursor.open_batch and not cursor.unsent:
            continue
        if cursor.open_batch:
            batch = _load_batch(uow, cursor.tenant, cursor.open_batch)
            _save_batch(uow, batch.move(BatchStatus.CLOSED, closed_at=now))
            cursor.unsent.append(batch.id)
            cursor.open_batch = ""
            uow.put_record(CURSOR, partner, key, cursor.to_json())
        unsent += [_load_batch(uow, cursor.tenant, bid) for bid in cursor.unsent]
    return unsent


def mark_sent(uow: UnitOfWork, batch: SettlementBatch, now: float) -> SettlementBatch | None:
    """The partner accepted the closed `batch`: it is sent (None if it was already)."""
    current = _load_batch(uow, batch.tenant, batch.id)
    if current.status is not BatchStatus.CLOSED:
        return None
    key = _Cursor.key(batch.tenant, batch.currency)
    text = uow.get_record(CURSOR, batch.partner, key)
    if text is None:
        raise InvariantViolation(f"batch {batch.id} has no settlement cursor")
    cursor = _Cursor.from_json(text)
    cursor.unsent = [bid for bid in cursor.unsent if bid != batch.id]
    uow.put_record(CURSOR, batch.partner, key, cursor.to_json())
    return _mark_sent(uow, current, now)


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


def feed_position(uow: UnitOfWork, partner: str) -> int:
    """How many statements of `partner`'s feed have been ingested."""
    text = uow.get_record(FEED, partner, "position")
    return int(text) if text is not None else 0


def ingest_from_feed(
    uow: UnitOfWork, statement: Statement, position: int, now: float, config: SettlementConfig
) -> list[PaymentEvent]:
    """Ingest the statement at `position` of its partner's feed (0-based) and move the
    position past it, in the caller's unit of work: each statement of the feed once.
    Returns the PaymentSettled events it appended."""
    if feed_position(uow, statement.partner) > position:
        return []
    _, settled = _ingest(uow, statement, now, config)
    uow.put_record(FEED, statement.partner, "position", str(position + 1))
    return settled


def ingest_statement(
    uow: UnitOfWork, statement: Statement, now: float, config: SettlementConfig
) -> Reconciliation:
    """Reconcile one statement; a statement ingested before returns its stored outcome."""
    return _ingest(uow, statement, now, config)[0]


def _ingest(
    uow: UnitOfWork, statement: Statement, now: float, config: SettlementConfig
) -> tuple[Reconciliation, list[PaymentEvent]]:
    done = uow.get_record(STATEMENT, statement.partner, statement.id)
    if done is not None:
        return evolve(Reconciliation.from_json(done), replayed=True), []
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
    settled = _settle_payments(uow, result, now, config)

    # A batch is reconciled once every payment of it has its line (settled or reversed); one
    # declared missing keeps it open, since a later statement may still carry that line.
    still: list[tuple[str, str]] = []
    for tenant, bid in outstanding:
        batch = batches[bid]
        if any(items[p].status in _AWAITING_LINE for p in batch.payment_ids):
            still.append((tenant, bid))
        else:
            _save_batch(uow, batch.move(BatchStatus.RECONCILED, reconciled_at=now))
    if still != outstanding:
        _save_outstanding(uow, partner, currency, still)

    if uow.insert_record_if_absent(STATEMENT, partner, statement.id, result.to_json()):
        # Another worker ingested it concurrently (a store without serialisable units of work).
        raise ConcurrentUpdate(f"statement {statement.id} was ingested concurrently")
    return result, settled


def _settle_payments(
    uow: UnitOfWork, result: Reconciliation, now: float, config: SettlementConfig
) -> list[PaymentEvent]:
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
    return events


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
