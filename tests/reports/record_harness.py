"""Tiny run-record tables written by hand, so a test knows every latency it should find."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from reports.record import SCHEMAS, empty_table

NAN = math.nan


def table(name: str, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """`rows` as table `name`, columns in schema order and dtypes as the record wants them."""
    if not rows:
        return empty_table(name)
    frame = pd.DataFrame(rows, columns=SCHEMAS[name].names)
    for field in SCHEMAS[name]:
        kind = str(field.type)
        dtype = {"int64": "int64", "double": "float64", "bool": "bool"}.get(kind, "object")
        frame[field.name] = frame[field.name].astype(dtype)
    return frame


def request(key: str, attempt: int, intended: float, done: float, status: int, pid: str = "",
            tenant: str = "t1") -> dict[str, Any]:  # fmt: skip
    outcome = {202: "accepted", 0: "timeout", 503: "error", 422: "rejected"}[status]
    return {
        "key": key, "tenant": tenant, "attempt": attempt, "intended_at": intended,
        "sent_at": intended, "done_at": done, "status": status, "payment_id": pid,
        "outcome": outcome,
    }  # fmt: skip


def payment(pid: str, key: str, status: str, received: float, posted: float = NAN,
            settled: float = NAN, tenant: str = "t1") -> dict[str, Any]:  # fmt: skip
    return {
        "payment_id": pid, "tenant": tenant, "idempotency_key": key, "debtor_account": "a",
        "creditor_account": "b", "amount": 100, "currency": "EUR", "status": status,
        "reason": "", "received_at": received, "posted_at": posted, "settled_at": settled,
    }  # fmt: skip


def tables(**given: list[dict[str, Any]]) -> dict[str, pd.DataFrame]:
    """Every table of the record: the given rows, the rest empty."""
    return {name: table(name, given.get(name, [])) for name in SCHEMAS}
