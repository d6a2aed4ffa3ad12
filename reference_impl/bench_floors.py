"""The floors the store benchmark measures the ledger against, in the same run on the same machine.

A transfers/s figure alone says more about the CPU than about the code. So next to each store
the benchmark measures the least a hash-chained double-entry ledger must do for the same
transfers, written directly against the same engine:

- `plain_memory`: Python dicts. Per transfer: a duplicate-id check, two balance updates, and a
  journal entry whose hash chains sha256 over its compact JSON, as the real journal's does.
- `plain_sqlite`: the sqlite3 module on a file with the store's durability (WAL,
  synchronous=FULL). Per batch, one transaction: the two balance updates and the transfer and
  journal rows of each transfer, hashed as above, then COMMIT.

Neither validates anything, returns result codes, reads an account before writing it, or keeps a
unit of work's write set: that is the overhead the ratio prices.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from hashlib import sha256

from reference_impl.core.ledger import Transfer

Batches = Callable[[int], list[Transfer]]
"""The n-th batch of transfers (the same generator the store's cells use)."""

_GENESIS = "0" * 64


def _entry_hash(prev: str, seq: int, t: Transfer, at: float) -> str:
    body = json.dumps(
        [seq, t.id, "", "post", t.debit_account, t.credit_account, t.amount, t.currency, at, ""],
        separators=(",", ":"),
    )
    return sha256((prev + body).encode()).hexdigest()


def plain_memory(accounts: list[str], batches: Batches, seconds: float) -> float:
    """Transfers/s of the plain-Python floor over `seconds` of its own busy time."""
    balances = {a: [0, 0] for a in accounts}  # debits posted, credits posted
    seen: set[str] = set()
    journal: list[tuple[int, str, str]] = []
    head, seq, n, done, busy = _GENESIS, 0, 0, 0, 0.0
    while busy < seconds:
        transfers = batches(n)
        n += 1
        started = time.perf_counter()
        at = time.time()
        for t in transfers:
            if t.id in seen:
                continue
            seen.add(t.id)
            balances[t.debit_account][0] += t.amount
            balances[t.credit_account][1] += t.amount
            seq += 1
            head = _entry_hash(head, seq, t, at)
            journal.append((seq, t.id, head))
        busy += time.perf_counter() - started
        done += len(transfers)
    return done / busy


_SQLITE_SCHEMA = """
CREATE TABLE accounts (id TEXT PRIMARY KEY, debits INTEGER NOT NULL, credits INTEGER NOT NULL)
    WITHOUT ROWID;
CREATE TABLE transfers (id TEXT PRIMARY KEY, debit_account TEXT NOT NULL,
    credit_account TEXT NOT NULL, amount INTEGER NOT NULL, currency TEXT NOT NULL,
    at REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE journal (seq INTEGER PRIMARY KEY, transfer_id TEXT NOT NULL,
    prev_hash TEXT NOT NULL, hash TEXT NOT NULL) WITHOUT ROWID;
"""


def plain_sqlite(path: str, accounts: list[str], batches: Batches, seconds: float) -> float:
    """Transfers/s of the raw-sqlite3 floor (a new database at `path`), one commit per batch."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(_SQLITE_SCHEMA)
        conn.executemany("INSERT INTO accounts VALUES (?, 0, 0)", [(a,) for a in accounts])
        head, seq, n, done, busy = _GENESIS, 0, 0, 0, 0.0
        while busy < seconds:
            transfers = batches(n)
            n += 1
            started = time.perf_counter()
            at = time.time()
            journal = []
            for t in transfers:
                seq += 1
                new = _entry_hash(head, seq, t, at)
                journal.append((seq, t.id, head, new))
                head = new
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "UPDATE accounts SET debits = debits + ? WHERE id = ?",
                [(t.amount, t.debit_account) for t in transfers],
            )
            conn.executemany(
                "UPDATE accounts SET credits = credits + ? WHERE id = ?",
                [(t.amount, t.credit_account) for t in transfers],
            )
            conn.executemany(
                "INSERT INTO transfers VALUES (?, ?, ?, ?, ?, ?)",
                [(t.id, t.debit_account, t.credit_account, t.amount, t.currency, at)
                 for t in transfers],
            )  # fmt: skip
            conn.executemany("INSERT INTO journal VALUES (?, ?, ?, ?)", journal)
            conn.execute("COMMIT")
            busy += time.perf_counter() - started
            done += len(transfers)
        return done / busy
    finally:
        conn.close()
