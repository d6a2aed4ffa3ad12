"""What a store of the reference system holds, as run-record tables (docs/run-record.md).

Both runtimes read the ledger, payments and settlement tables from the store the handlers
wrote, not from their own bookkeeping, so the audit checks what the reference implementation
did. Each runtime collects the domain objects its own way (the sim straight from its memory
store, the load runtime through the store's read interface); the rows are built here, once.
Times are as the system wrote them (simulated seconds, or the wall clock in real processes: the
journal's hash covers them), rows sorted on stable keys, and "no value" is NaN or "", as the
record wants, so the same content always gives the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from typing import Any

import pandas as pd

from reference_impl.core.events import (
    DECISIONS_TOPIC,
    PAYMENTS_TOPIC,
    CheckDecided,
    PaymentReviewed,
    decode,
)
from reference_impl.core.journal import JournalEntry
from reference_impl.core.ledger import Account
from reference_impl.core.payments import Payment
from reference_impl.core.settlement import Break, SettlementBatch, SettlementItem, Statement
from reference_impl.service.ports import LoggedEvent

NAN = math.nan
_EMPTY_DTYPES = {
    **dict.fromkeys(
        ["attempt", "status", "amount", "seq", "queue_length", "busy_workers", "lag", "partition"],
        "int64",
    ),
    **dict.fromkeys(
        ["intended_at", "sent_at", "done_at", "received_at", "posted_at", "settled_at", "at"],
        "float64",
    ),
    **dict.fromkeys(
        ["cutoff_at", "booking_at", "value_at", "start", "end", "utilization", "cpu", "headroom"],
        "float64",
    ),
    **dict.fromkeys(
        ["debits_posted", "debits_pending", "credits_posted", "credits_pending"], "int64"
    ),
    "score": "float64",
    "overdraft": "bool",
}


def time_or_nan(value: float | None) -> float:
    return NAN if value is None else float(value)


def frame(
    rows: list[dict[str, Any]],
    columns: list[str],
    sort: list[str],
    text: Collection[str] = (),
) -> pd.DataFrame:
    """Rows as a table with `columns`, sorted stably on `sort`; typed even when empty (`text`:
    columns that are strings here although another table's column of that name is not)."""
    if not rows:
        # Typed columns even with no rows (an empty frame would be all `object`).
        return pd.DataFrame(
            {
                c: pd.Series(dtype="object" if c in text else _EMPTY_DTYPES.get(c, "object"))
                for c in columns
            }
        )
    df = pd.DataFrame(rows, columns=columns)
    return df.sort_values(sort, kind="stable").reset_index(drop=True)


def payments(found: Iterable[Payment]) -> pd.DataFrame:
    rows = [
        {
            "payment_id": p.id,
            "tenant": p.tenant,
            "idempotency_key": p.idempotency_key,
            "debtor_account": p.debtor_account,
            "creditor_account": p.creditor_account,
            "amount": p.amount,
            "currency": p.currency,
            "status": p.status.value,
            "reason": p.reason,
            "received_at": p.received_at,
            "posted_at": time_or_nan(p.posted_at),
            "settled_at": time_or_nan(p.settled_at),
        }
        for p in found
    ]
    cols = ["payment_id", "tenant", "idempotency_key", "debtor_account", "creditor_account"]
    cols += ["amount", "currency", "status", "reason", "received_at", "posted_at", "settled_at"]
    return frame(rows, cols, ["received_at", "tenant", "payment_id"], text=["status"])


def journal(entries: Iterable[tuple[str, JournalEntry]]) -> pd.DataFrame:
    """(tenant, entry) pairs; `at` is shifted, the hashed fields stay as written."""
    rows = [
        {
            "tenant": tenant,
            "seq": e.seq,
            "transfer_id": e.transfer_id,
            "payment_id": e.payment_id,
            "kind": e.kind,
            "pending_id": e.pending_id,
            "debit_account": e.debit_account,
            "credit_account": e.credit_account,
            "amount": e.amount,
            "currency": e.currency,
            "at": e.at,
            "prev_hash": e.prev_hash,
            "hash": e.hash,
        }
        for tenant, e in entries
    ]
    cols = ["tenant", "seq", "transfer_id", "payment_id", "kind", "pending_id", "debit_account"]
    cols += ["credit_account", "amount", "currency", "at", "prev_hash", "hash"]
    return frame(rows, cols, ["tenant", "seq"])


def accounts(found: Iterable[tuple[str, Account]]) -> pd.DataFrame:
    rows = [
        {
            "tenant": tenant,
            "id": a.id,
            "currency": a.currency,
            "overdraft": a.overdraft,
            "debits_posted": a.debits_posted,
            "debits_pending": a.debits_pending,
            "credits_posted": a.credits_posted,
            "credits_pending": a.credits_pending,
        }
        for tenant, a in found
    ]
    cols = ["tenant", "id", "currency", "overdraft", "debits_posted", "debits_pending"]
    return frame(rows, [*cols, "credits_posted", "credits_pending"], ["tenant", "id"])


def settlements(batches: Iterable[SettlementBatch]) -> pd.DataFrame:
    rows = []
    for b in batches:
        if b.sent_at is None:
            continue  # open, or closed but not sent: nothing settles until the partner has it
        for pid, amount in zip(b.payment_ids, b.amounts, strict=True):
            rows.append(
                {
                    "batch_id": b.id,
                    "tenant": b.tenant,
                    "partner": b.partner,
                    "currency": b.currency,
                    "payment_id": pid,
                    "amount": amount,
                    "cutoff_at": time_or_nan(b.closed_at),
                    "sent_at": b.sent_at,
                }
            )
    cols = ["batch_id", "tenant", "partner", "currency", "payment_id", "amount", "cutoff_at"]
    return frame(rows, [*cols, "sent_at"], ["batch_id", "payment_id"])


def statements(
    issued: Iterable[Statement],
    items: Mapping[tuple[str, str], SettlementItem],
) -> pd.DataFrame:
    """Every line of every statement the partners issued; `items` maps (partner, payment id) to
    the settlement item that names the line's batch."""
    rows = []
    for st in issued:
        for line in st.lines:
            item = items.get((st.partner, line.end_to_end_id))
            rows.append(
                {
                    "partner": st.partner,
                    "statement_id": st.id,
                    "batch_id": item.batch_id if item is not None else "",
                    "end_to_end_id": line.end_to_end_id,
                    "amount": abs(line.amount),
                    "currency": line.currency,
                    "booking_at": line.booking_at,
                    "value_at": line.value_at,
                    "entry_kind": line.kind.value,
                }
            )
    cols = ["partner", "statement_id", "batch_id", "end_to_end_id", "amount", "currency"]
    cols += ["booking_at", "value_at", "entry_kind"]
    return frame(rows, cols, ["partner", "statement_id"])


def breaks(found: Iterable[Break]) -> pd.DataFrame:
    rows = [
        {
            "break_id": b.id,
            "partner": b.partner,
            "batch_id": b.batch_id,
            "payment_id": b.payment_id,
            "kind": b.kind.value,
            "detail": b.detail,
        }
        for b in found
    ]
    cols = ["break_id", "partner", "batch_id", "payment_id", "kind", "detail"]
    return frame(rows, cols, ["break_id"])


def decisions(events: Iterable[LoggedEvent]) -> pd.DataFrame:
    """Every decision announced in the event log: each check's CheckDecided, and an operator's
    review (check `operator`). From the log, not from the keyed decision records, so a decision
    announced twice shows twice (the audit counts them)."""
    rows: list[dict[str, Any]] = []
    for logged in events:
        if logged.type not in _DECISION_TYPES:
            continue
        e = decode(logged.type, logged.payload)
        if isinstance(e, CheckDecided):
            check, verdict, reason, score = e.check, e.verdict, e.reason, e.score
        else:
            assert isinstance(e, PaymentReviewed)
            check, verdict, reason, score = "operator", e.verdict, e.reason, 0.0
        rows.append(
            {
                "payment_id": e.payment_id,
                "tenant": e.tenant,
                "check": check,
                "verdict": verdict,
                "reason": reason,
                "score": float(score),
                "at": float(e.at),
            }
        )
    cols = ["payment_id", "tenant", "check", "verdict", "reason", "score", "at"]
    return frame(rows, cols, ["at", "payment_id", "check"])


_DECISION_TYPES = frozenset({CheckDecided.__name__, PaymentReviewed.__name__})
DECISION_TOPICS = (DECISIONS_TOPIC, PAYMENTS_TOPIC)
"""Where decisions are announced (reviews go to the payments topic, for the payments group)."""
