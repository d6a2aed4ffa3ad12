"""A finished sim run as the run record's tables (reports/record.py owns the schema).

The ledger, payments and settlement tables are read from the store the handlers wrote, not from
the sim's own bookkeeping, so the audit checks what the reference implementation did. Rows are
sorted on stable keys and "no value" is NaN or "", as the record wants, so the same run always
gives the same bytes.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from reference_impl.core.journal import JournalEntry
from reference_impl.core.ledger import Account
from reference_impl.core.payments import Payment
from reference_impl.core.settlement import Break, SettlementBatch, SettlementItem
from reference_impl.service.payments import PAYMENT
from reference_impl.service.settlement import BATCH, BREAK, ITEM
from sim.run import SimRun

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
    "overdraft": "bool",
}


def _t(value: float | None) -> float:
    return NAN if value is None else float(value)


def _frame(rows: list[dict[str, Any]], columns: list[str], sort: list[str]) -> pd.DataFrame:
    if not rows:
        # Typed columns even with no rows (an empty frame would be all `object`).
        return pd.DataFrame({c: pd.Series(dtype=_EMPTY_DTYPES.get(c, "object")) for c in columns})
    df = pd.DataFrame(rows, columns=columns)
    return df.sort_values(sort, kind="stable").reset_index(drop=True)


def _records(run: SimRun, kind: str) -> list[tuple[str, str, str]]:
    return run.system.ledger.store.records(kind)


def requests(run: SimRun) -> pd.DataFrame:
    rows = [
        {
            "key": a.request.key,
            "tenant": a.request.tenant,
            "attempt": a.n,
            "intended_at": a.sent_at,  # open model: every attempt is sent when intended
            "sent_at": a.sent_at,
            "done_at": _t(a.done_at),
            "status": a.status,
            "payment_id": a.payment_id,
            "outcome": a.outcome or "timeout",  # still unanswered when the run ended
        }
        for a in run.system.clients.attempts
    ]
    cols = ["key", "tenant", "attempt", "intended_at", "sent_at", "done_at", "status"]
    return _frame(rows, [*cols, "payment_id", "outcome"], ["sent_at", "key", "attempt"])


def payments(run: SimRun) -> pd.DataFrame:
    rows = []
    for _tenant, _key, text in _records(run, PAYMENT):
        p = Payment.from_json(text)
        rows.append(
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
                "posted_at": _t(p.posted_at),
                "settled_at": _t(p.settled_at),
            }
        )
    cols = ["payment_id", "tenant", "idempotency_key", "debtor_account", "creditor_account"]
    cols += ["amount", "currency", "status", "reason", "received_at", "posted_at", "settled_at"]
    return _frame(rows, cols, ["received_at", "tenant", "payment_id"])


def journal(run: SimRun) -> pd.DataFrame:
    store = run.system.ledger.store
    rows = []
    entries: dict[tuple[str, int], JournalEntry] = store.table("journal")
    for (tenant, _seq), e in entries.items():
        rows.append(
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
        )
    cols = ["tenant", "seq", "transfer_id", "payment_id", "kind", "pending_id", "debit_account"]
    cols += ["credit_account", "amount", "currency", "at", "prev_hash", "hash"]
    return _frame(rows, cols, ["tenant", "seq"])


def accounts(run: SimRun) -> pd.DataFrame:
    table: dict[tuple[str, str], Account] = run.system.ledger.store.table("accounts")
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
        for (tenant, _id), a in table.items()
    ]
    cols = ["tenant", "id", "currency", "overdraft", "debits_posted", "debits_pending"]
    return _frame(rows, [*cols, "credits_posted", "credits_pending"], ["tenant", "id"])


def settlements(run: SimRun) -> pd.DataFrame:
    rows = []
    for _tenant, _bid, text in _records(run, BATCH):
        b = SettlementBatch.from_json(text)
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
                    "cutoff_at": _t(b.closed_at),
                    "sent_at": b.sent_at,
                }
            )
    cols = ["batch_id", "tenant", "partner", "currency", "payment_id", "amount", "cutoff_at"]
    return _frame(rows, [*cols, "sent_at"], ["batch_id", "payment_id"])


def statements(run: SimRun) -> pd.DataFrame:
    items = {(p, k): SettlementItem.from_json(v) for p, k, v in _records(run, ITEM)}
    rows = []
    for partner in run.system.settlement.partners:
        for st in partner.issued:
            for line in st.lines:
                item = items.get((partner.name, line.end_to_end_id))
                rows.append(
                    {
                        "partner": partner.name,
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
    return _frame(rows, cols, ["partner", "statement_id"])


def breaks(run: SimRun) -> pd.DataFrame:
    rows = []
    for _tenant, _bid, text in _records(run, BREAK):
        b = Break.from_json(text)
        rows.append(
            {
                "break_id": b.id,
                "partner": b.partner,
                "batch_id": b.batch_id,
                "payment_id": b.payment_id,
                "kind": b.kind.value,
                "detail": b.detail,
            }
        )
    cols = ["break_id", "partner", "batch_id", "payment_id", "kind", "detail"]
    return _frame(rows, cols, ["break_id"])


def faults(run: SimRun) -> pd.DataFrame:
    rows = [
        {"start": f.start, "end": f.end, "kind": f.kind, "target": f.target, "detail": f.detail}
        for f in run.system.faults.rows
    ]
    return _frame(rows, ["start", "end", "kind", "target", "detail"], ["start", "target"])


def nodes(run: SimRun) -> pd.DataFrame:
    rows = [
        {
            "at": s.at,
            "node": s.node,
            "utilization": s.utilization,
            "cpu": s.cpu,
            "queue_length": s.queue,
            "busy_workers": s.busy,
            "lag": s.lag,
            "headroom": s.headroom,
        }
        for s in run.samples
    ]
    cols = ["at", "node", "utilization", "cpu", "queue_length", "busy_workers", "lag"]
    return _frame(rows, [*cols, "headroom"], ["at", "node"])


def partitions(run: SimRun) -> pd.DataFrame:
    rows = [
        {"at": x.at, "group": x.group, "partition": x.partition, "member": x.member, "lag": x.lag}
        for x in run.lags
    ]
    cols = ["at", "group", "partition", "member", "lag"]
    return _frame(rows, cols, ["at", "group", "partition"])


def tables(run: SimRun) -> dict[str, pd.DataFrame]:
    return {
        "requests": requests(run),
        "payments": payments(run),
        "journal": journal(run),
        "accounts": accounts(run),
        "settlements": settlements(run),
        "statements": statements(run),
        "breaks": breaks(run),
        "faults": faults(run),
        "nodes": nodes(run),
        "partitions": partitions(run),
    }


def meta(run: SimRun, scenario_name: str) -> dict[str, Any]:
    """Deterministic facts about the run (no wall clock, no host: those break replay)."""
    system = run.system
    return {
        "mode": "sim",
        "seed": system.seed,
        "scenario": scenario_name,
        "duration": run.duration,
        "drained_at": run.drained_at,
        "drained": run.drained,
        "sim": {
            "deliveries": {g.name: g.deliveries for g in system.groups},
            "redeliveries": {g.name: g.redeliveries for g in system.groups},
            "lost_jobs": {n.name: n.lost_jobs for n in system.nodes},
        },
    }
