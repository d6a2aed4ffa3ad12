"""The journal: one entry per committed transfer, hash-chained per tenant, any edit detected."""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import replace

import pytest
from ledger_harness import Ledger

from reference_impl.core.journal import (
    GENESIS_HASH,
    JournalEntry,
    JournalHead,
    first_broken_link,
)
from reference_impl.core.ledger import Transfer, TransferKind, TransferResult
from reference_impl.service.ledger import read_journal

K = TransferKind


def busy_ledger(tenant: str = "acme") -> Ledger:
    """A ledger whose journal has every kind of entry: 3 fundings + 6 transfers."""
    led = Ledger(tenant)
    led.open("alice", funds=10_000)
    led.open("bob", funds=500)
    led.open("shop", "JPY", funds=300)
    results = led.submit(
        Transfer("t1", "alice", "bob", 100, "EUR", payment_id="pay-1"),
        Transfer("p1", "alice", "bob", 400, "EUR", kind=K.PENDING),
        Transfer("p2", "bob", "alice", 50, "EUR", kind=K.PENDING),
    )
    results += led.submit(
        Transfer("pp1", kind=K.POST_PENDING, pending_id="p1", amount=150),
        Transfer("v2", kind=K.VOID, pending_id="p2"),
        Transfer("t2", "bob", "alice", 1, "EUR"),
    )
    assert results == [TransferResult.OK] * 6
    return led


def canonical_hash(prev_hash: str, e: JournalEntry) -> str:
    """The documented form, written out independently of the core (the audit does the same)."""
    body = [
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
    ]
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256((prev_hash + text).encode()).hexdigest()


def test_entries_chain_from_genesis() -> None:
    entries = busy_ledger().journal()
    assert [e.seq for e in entries] == list(range(1, 10))
    assert entries[0].prev_hash == GENESIS_HASH
    for prev, e in itertools.pairwise(entries):
        assert e.prev_hash == prev.hash
    for e in entries:
        assert e.hash == canonical_hash(e.prev_hash, e)
    assert len({e.hash for e in entries}) == len(entries)
    assert first_broken_link(entries) == 0


def test_one_entry_per_transfer_with_its_kind() -> None:
    entries = busy_ledger().journal()[3:]
    assert [(e.transfer_id, e.kind, e.amount) for e in entries] == [
        ("t1", "post", 100),
        ("p1", "pending", 400),
        ("p2", "pending", 50),
        ("pp1", "post_pending", 150),
        ("v2", "void", 50),
        ("t2", "post", 1),
    ]
    assert (entries[3].debit_account, entries[3].credit_account) == ("alice", "bob")
    assert entries[0].payment_id == "pay-1"
    assert [e.at for e in entries] == [1004.0] * 3 + [1005.0] * 3


def test_the_head_is_the_last_entry() -> None:
    led = busy_ledger()
    last = led.journal()[-1]
    with led.store.unit_of_work() as uow:
        assert uow.journal_head(led.tenant) == JournalHead(last.seq, last.hash)


def test_an_empty_journal_verifies() -> None:
    assert first_broken_link([]) == 0
    assert Ledger().journal() == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", 101),
        ("transfer_id", "t9"),
        ("payment_id", "pay-2"),
        ("kind", "pending"),
        ("debit_account", "mallory"),
        ("credit_account", "mallory"),
        ("currency", "USD"),
        ("at", 0.5),
        ("hash", "f" * 64),
    ],
)
def test_an_edited_entry_breaks_the_chain_there(field: str, value: object) -> None:
    entries = busy_ledger().journal()
    edited = entries[3]
    assert getattr(edited, field) != value
    entries[3] = replace(edited, **{field: value})  # type: ignore[arg-type]
    assert first_broken_link(entries) == edited.seq


def test_an_edited_and_rehashed_entry_breaks_the_chain_at_the_next() -> None:
    entries = busy_ledger().journal()
    forged = replace(entries[3], amount=1)
    entries[3] = replace(forged, hash=canonical_hash(forged.prev_hash, forged))
    assert first_broken_link(entries) == entries[4].seq


@pytest.mark.parametrize("index", [0, 4, 7])
def test_a_removed_entry_is_found(index: int) -> None:
    entries = busy_ledger().journal()
    after = entries[index + 1]
    del entries[index]
    assert first_broken_link(entries) == after.seq


def test_a_removed_and_renumbered_entry_is_found() -> None:
    entries = busy_ledger().journal()
    renumbered = [replace(e, seq=e.seq - 1) for e in entries[5:]]
    assert first_broken_link(entries[:4] + renumbered) == renumbered[0].seq


@pytest.mark.parametrize("index", [0, 3, 7])
def test_a_reordered_pair_is_found(index: int) -> None:
    entries = busy_ledger().journal()
    entries[index], entries[index + 1] = entries[index + 1], entries[index]
    assert first_broken_link(entries) == entries[index].seq


def test_a_reordered_pair_with_swapped_seqs_is_found() -> None:
    entries = busy_ledger().journal()
    a, b = entries[3], entries[4]
    entries[3], entries[4] = replace(b, seq=a.seq), replace(a, seq=b.seq)
    assert first_broken_link(entries) == a.seq


def test_a_journal_verifies_from_a_known_head() -> None:
    entries = busy_ledger().journal()
    head = JournalHead(entries[4].seq, entries[4].hash)
    assert first_broken_link(entries[5:], head) == 0
    assert first_broken_link(entries[5:]) == entries[5].seq
    assert first_broken_link(entries[6:], head) == entries[6].seq


def test_each_tenants_journal_verifies_on_its_own() -> None:
    acme = busy_ledger("acme")
    globex = Ledger("globex")
    globex.store = acme.store
    globex.now = acme.now
    globex.open("alice", funds=70)
    assert globex.submit(Transfer("t1", "funding-EUR", "alice", 5, "EUR")) == [TransferResult.OK]
    assert acme.submit(Transfer("t3", "alice", "bob", 5, "EUR")) == [TransferResult.OK]

    mine, theirs = acme.journal(), globex.journal()
    assert [e.seq for e in mine] == list(range(1, 11))
    assert [e.seq for e in theirs] == [1, 2]
    assert theirs[0].prev_hash == GENESIS_HASH
    assert first_broken_link(mine) == 0
    assert first_broken_link(theirs) == 0
    assert theirs[0].credit_account == "alice" and theirs[1].transfer_id == "t1"
    # One tenant's entry does not verify inside the other's chain.
    assert first_broken_link([*mine[:1], theirs[1]]) == theirs[1].seq


def test_read_journal_pages() -> None:
    led = busy_ledger()
    everything = led.journal()
    pages = []
    after = 0
    while page := read_journal(led.store, led.tenant, after, 4):
        pages.append(page)
        after = page[-1].seq
    assert [len(p) for p in pages] == [4, 4, 1]
    assert [e for p in pages for e in p] == everything
    assert read_journal(led.store, led.tenant, 9, 10) == []


def test_pending_balances_replay_from_the_journal_alone() -> None:
    led = Ledger()
    led.open("alice", funds=1_000)
    led.open("bob")
    assert (
        led.submit(
            Transfer("p1", "alice", "bob", 100, "EUR", kind=K.PENDING),
            Transfer("p2", "alice", "bob", 50, "EUR", kind=K.PENDING),
            Transfer("pp", kind=K.POST_PENDING, pending_id="p1", amount=30),
        )
        == [TransferResult.OK] * 3
    )
    amounts: dict[str, int] = {}
    debits_pending = 0
    for e in led.journal():
        if e.debit_account != "alice":
            continue
        if e.kind == "pending":
            amounts[e.transfer_id] = e.amount
            debits_pending += e.amount
        elif e.kind in ("post_pending", "void"):
            debits_pending -= amounts[e.pending_id]
    assert debits_pending == led.balances("alice")[1] == 50
