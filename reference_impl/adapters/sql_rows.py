"""Rows of the SQL stores (SQLite, PostgreSQL) back into ledger objects: both keep a transfer
in the same columns, `_TRANSFER_COLUMNS` order."""

from __future__ import annotations

from typing import Any

from reference_impl.core.ledger import PendingState, StoredTransfer, TransferKind


def stored_transfer(row: tuple[Any, ...]) -> StoredTransfer:
    id_, debit, credit, amount, cur, kind, pending_id, payment_id, at, state = row
    pending_state = PendingState(state) if state is not None else None
    return StoredTransfer(
        id_, debit, credit, amount, cur, TransferKind(kind), pending_id, payment_id, at,
        pending_state,
    )  # fmt: skip
