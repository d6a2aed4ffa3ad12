"""A load run's record, read from the real system after the drain.

From the reference system's store, through its read interface (units of work, never a store's
internals): payments, the journal, accounts, settlement batches and breaks per tenant, and the
statements the bank partner issued (its durable feed). From a system someone else runs
(`--target`), through the public HTTP API instead (docs/api.md): payments, journal, accounts,
settlements and breaks; a target's bank statements are not visible, so that table stays empty
and the audit's statement checks have nothing to check.

Times stay as the system wrote them, on the wall clock (the journal's hash covers them).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pandas as pd

from reference_impl.adapters import open_store
from reference_impl.adapters import record_tables as rt
from reference_impl.adapters.bank_partner import StoreBook
from reference_impl.core.journal import JournalEntry
from reference_impl.core.ledger import Account
from reference_impl.core.payments import Payment, PaymentStatus
from reference_impl.core.settlement import Break, BreakKind, SettlementBatch, SettlementItem
from reference_impl.service.payments import PAYMENT
from reference_impl.service.ports import LoggedEvent, UnitOfWork
from reference_impl.service.settlement import BATCH, BREAK, ITEM

PAGE = 1000


def _records(uow: UnitOfWork, kind: str, tenant: str) -> Iterator[tuple[str, str]]:
    after = ""
    while page := uow.list_records(kind, tenant, after, PAGE):
        yield from page
        after = page[-1][0]


def _events(uow: UnitOfWork, topic: str, partition: int) -> Iterator[LoggedEvent]:
    after = 0
    while page := uow.read_events(topic, partition, after, PAGE):
        yield from page
        after = page[-1].offset


def _journal(uow: UnitOfWork, tenant: str) -> Iterator[JournalEntry]:
    after = 0
    while page := uow.read_journal(tenant, after, PAGE):
        yield from page
        after = page[-1].seq


def from_store(
    store_url: str, tenants: Sequence[str], partners: Sequence[str], partitions: int = 8
) -> dict[str, pd.DataFrame]:
    """The ledger, payment and settlement tables of the reference system's store, and the
    checks' decisions from its event log (an empty table with the checks off)."""
    store = open_store(store_url)
    try:
        with store.unit_of_work() as uow:
            payments = [
                Payment.from_json(text) for t in tenants for _, text in _records(uow, PAYMENT, t)
            ]
            journal = [(t, e) for t in tenants for e in _journal(uow, t)]
            accounts = [(t, a) for t in tenants for a in uow.list_accounts(t)]
            batches = [
                SettlementBatch.from_json(text)
                for t in tenants
                for _, text in _records(uow, BATCH, t)
            ]
            items = {
                (p, key): SettlementItem.from_json(text)
                for p in partners
                for key, text in _records(uow, ITEM, p)
            }
            breaks = [
                Break.from_json(text) for t in [*tenants, ""] for _, text in _records(uow, BREAK, t)
            ]
            decided = [
                e
                for topic in rt.DECISION_TOPICS
                for p in range(partitions)
                for e in _events(uow, topic, p)
            ]
        issued = [st for p in partners for st in StoreBook(store, p).feed(0)]
    finally:
        store.close()
    return {
        "payments": rt.payments(payments),
        "journal": rt.journal(journal),
        "accounts": rt.accounts(accounts),
        "settlements": rt.settlements(batches),
        "statements": rt.statements(issued, items),
        "breaks": rt.breaks(breaks),
        "decisions": rt.decisions(decided),
    }


def from_api(
    base_url: str, api_keys: dict[str, str], accounts: Sequence[str]
) -> dict[str, pd.DataFrame]:
    """The same tables from a system's public API (`api_keys`: tenant -> key)."""
    payments: list[Payment] = []
    journal: list[tuple[str, JournalEntry]] = []
    found: list[tuple[str, Account]] = []
    batches: list[SettlementBatch] = []
    breaks: list[Break] = []
    for tenant, key in api_keys.items():
        with httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30.0
        ) as http:
            payments += [
                _payment(tenant, body) for body in _pages(http, "/v1/payments", "payments")
            ]
            journal += [
                (tenant, JournalEntry(**{k: e[k] for k in _JOURNAL_FIELDS}))
                for e in _journal_pages(http)
            ]
            for account_id in accounts:
                r = http.get(f"/v1/accounts/{account_id}")
                if r.status_code == 200:
                    found.append((tenant, _account(r.json())))
            batches += [_batch(b) for b in _pages(http, "/v1/settlements", "settlements")]
            breaks += [_break(b) for b in _pages(http, "/v1/reconciliation", "breaks")]
    return {
        "payments": rt.payments(payments),
        "journal": rt.journal(journal),
        "accounts": rt.accounts(found),
        "settlements": rt.settlements(batches),
        "statements": rt.statements([], {}),
        "breaks": rt.breaks(breaks),
    }


_JOURNAL_FIELDS = (
    "seq", "transfer_id", "payment_id", "kind", "debit_account", "credit_account", "amount",
    "currency", "at", "prev_hash", "hash", "pending_id",
)  # fmt: skip


def _pages(http: httpx.Client, path: str, key: str) -> Iterator[dict[str, Any]]:
    after = ""
    while True:
        r = http.get(path, params={"after": after, "limit": 100})
        r.raise_for_status()
        page: list[dict[str, Any]] = r.json()[key]
        if not page:
            return
        yield from page
        after = str(page[-1]["id"])


def _journal_pages(http: httpx.Client) -> Iterator[dict[str, Any]]:
    after = 0
    while True:
        r = http.get("/v1/journal", params={"after": after, "limit": 1000})
        r.raise_for_status()
        page: list[dict[str, Any]] = r.json()["entries"]
        if not page:
            return
        yield from page
        after = int(page[-1]["seq"])


def _payment(tenant: str, body: dict[str, Any]) -> Payment:
    return Payment(
        body["id"],
        tenant,
        body["idempotency_key"],
        body["debtor_account"],
        body["creditor_account"],
        body["amount"],
        body["currency"],
        body["received_at"],
        PaymentStatus(body["status"]),
        reason=body.get("reason", ""),
        posted_at=body.get("posted_at"),
        settled_at=body.get("settled_at"),
    )


def _account(body: dict[str, Any]) -> Account:
    balance = body["balance"]
    return Account(
        body["id"],
        body["currency"],
        body["overdraft"],
        body.get("holder_name", ""),
        balance["debits_posted"],
        balance["debits_pending"],
        balance["credits_posted"],
        balance["credits_pending"],
    )


def _batch(body: dict[str, Any]) -> SettlementBatch:
    fields = {k: body[k] for k in SettlementBatch.__dataclass_fields__ if k in body}
    return SettlementBatch.from_json(json.dumps(fields))


def _break(body: dict[str, Any]) -> Break:
    fields = {k: body[k] for k in Break.__dataclass_fields__ if k in body}
    return Break(**{**fields, "kind": BreakKind(body["kind"])})
