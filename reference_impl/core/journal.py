"""The append-only journal: one entry per committed transfer, hash-chained per tenant.

`hash = sha256(prev_hash || canonical(entry))` where canonical(entry) is the compact JSON array
[seq, transfer_id, payment_id, kind, debit_account, credit_account, amount, currency, at,
pending_id]. The
audit recomputes this from the run record alone (docs/run-record.md documents the form), so each
tenant's journal verifies on its own and any edit or gap breaks the chain from there on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from reference_impl.core.serial import dumps

if TYPE_CHECKING:
    from reference_impl.core.ledger import StoredTransfer

GENESIS_HASH = "0" * 64


@dataclass(frozen=True, slots=True)
class JournalHead:
    """The last sequence number and hash of a tenant's journal (0 and GENESIS_HASH when empty)."""

    seq: int = 0
    hash: str = GENESIS_HASH


@dataclass(frozen=True, slots=True)
class JournalEntry:
    seq: int
    transfer_id: str
    payment_id: str
    kind: str
    debit_account: str
    credit_account: str
    amount: int
    currency: str
    at: float
    prev_hash: str
    hash: str
    pending_id: str = ""
    """For post_pending and void: the pending transfer this entry resolves."""


def entry_hash(
    prev_hash: str,
    seq: int,
    transfer_id: str,
    payment_id: str,
    kind: str,
    debit_account: str,
    credit_account: str,
    amount: int,
    currency: str,
    at: float,
    pending_id: str,
) -> str:
    body = dumps(
        [
            seq,
            transfer_id,
            payment_id,
            kind,
            debit_account,
            credit_account,
            amount,
            currency,
            at,
            pending_id,
        ]
    )
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


def chain_entry(head: JournalHead, t: StoredTransfer) -> JournalEntry:
    seq = head.seq + 1
    digest = entry_hash(
        head.hash,
        seq,
        t.id,
        t.payment_id,
        t.kind.value,
        t.debit_account,
        t.credit_account,
        t.amount,
        t.currency,
        t.at,
        t.pending_id,
    )
    return JournalEntry(
        seq,
        t.id,
        t.payment_id,
        t.kind.value,
        t.debit_account,
        t.credit_account,
        t.amount,
        t.currency,
        t.at,
        head.hash,
        digest,
        t.pending_id,
    )


def first_broken_link(entries: Iterable[JournalEntry], head: JournalHead = JournalHead()) -> int:
    """The seq of the first entry that does not chain from the one before, or 0 if all verify."""
    prev = head
    for e in entries:
        expected = entry_hash(
            prev.hash,
            e.seq,
            e.transfer_id,
            e.payment_id,
            e.kind,
            e.debit_account,
            e.credit_account,
            e.amount,
            e.currency,
            e.at,
            e.pending_id,
        )
        if e.seq != prev.seq + 1 or e.prev_hash != prev.hash or e.hash != expected:
            return e.seq
        prev = JournalHead(e.seq, e.hash)
    return 0
