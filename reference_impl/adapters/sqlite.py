"""The SQLite store: the embedded default, one database file in WAL mode.

Concurrency: SQLite has one writer at a time, so every unit of work starts with
`BEGIN IMMEDIATE`, which takes the database's write lock up front. `journal_head` then needs no
lock of its own, and no unit of work can fail half-way on a lock upgrade. Inside one process,
units of work also queue on a store-wide lock before `BEGIN IMMEDIATE`, so threads wait in
order instead of polling SQLite's busy handler; across processes `busy_timeout` makes a writer
wait for the lock (up to `BUSY_TIMEOUT_S`) instead of failing at once. sqlite3 connections are
not safe to share between threads, so each unit of work borrows a connection from a small pool
and gives it back when it ends: a connection is only ever used by one thread at a time.

Durability: `synchronous=FULL`. In WAL mode that fsyncs the WAL before every commit returns, so
a committed unit of work survives a process crash, an OS crash and a power loss (given a disk
that honours fsync); a crash loses only units of work that had not committed, and never
corrupts the file. (`NORMAL` would skip that fsync and could lose the last commits on a power
loss.) The price is one fsync per commit, which is why the ledger batches transfers.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from reference_impl.adapters.pool import ConnectionPool
from reference_impl.adapters.sql_rows import stored_transfer
from reference_impl.core.journal import JournalEntry, JournalHead
from reference_impl.core.ledger import (
    Account,
    LedgerChanges,
    StoredTransfer,
)
from reference_impl.service.ports import (
    SCHEMA_VERSION,
    ConcurrentUpdate,
    GroupMember,
    LoggedEvent,
    NewEvent,
    PartitionClaim,
    SchemaMismatch,
    Store,
    StoreError,
    StoreUnavailable,
    UnitOfWork,
    partition_for,
)
from reference_impl.timings import timings

BUSY_TIMEOUT_S = 30.0
_MAX_IDLE = 8

# WITHOUT ROWID: every table is looked up by its primary key, which then is the table itself.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    tenant TEXT NOT NULL, id TEXT NOT NULL, currency TEXT NOT NULL,
    overdraft INTEGER NOT NULL, holder_name TEXT NOT NULL,
    debits_posted INTEGER NOT NULL, debits_pending INTEGER NOT NULL,
    credits_posted INTEGER NOT NULL, credits_pending INTEGER NOT NULL,
    PRIMARY KEY (tenant, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS transfers (
    tenant TEXT NOT NULL, id TEXT NOT NULL, debit_account TEXT NOT NULL,
    credit_account TEXT NOT NULL, amount INTEGER NOT NULL, currency TEXT NOT NULL,
    kind TEXT NOT NULL, pending_id TEXT NOT NULL, payment_id TEXT NOT NULL, at REAL NOT NULL,
    pending_state TEXT, PRIMARY KEY (tenant, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS journal (
    tenant TEXT NOT NULL, seq INTEGER NOT NULL, transfer_id TEXT NOT NULL,
    payment_id TEXT NOT NULL, kind TEXT NOT NULL, debit_account TEXT NOT NULL,
    credit_account TEXT NOT NULL, amount INTEGER NOT NULL, currency TEXT NOT NULL,
    at REAL NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL,
    pending_id TEXT NOT NULL, PRIMARY KEY (tenant, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS heads (
    tenant TEXT NOT NULL PRIMARY KEY, seq INTEGER NOT NULL, hash TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
    tenant TEXT NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (tenant, kind, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, "offset" INTEGER NOT NULL,
    type TEXT NOT NULL, key TEXT NOT NULL, payload TEXT NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (topic, partition, "offset")) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS offsets (
    "group" TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
    "offset" INTEGER NOT NULL, PRIMARY KEY ("group", topic, partition)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_members (
    "group" TEXT NOT NULL, member TEXT NOT NULL, pid INTEGER NOT NULL, host TEXT NOT NULL,
    joined_at REAL NOT NULL, heartbeat_at REAL NOT NULL, lease_expires REAL NOT NULL,
    PRIMARY KEY ("group", member)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_claims (
    "group" TEXT NOT NULL, partition INTEGER NOT NULL, member TEXT NOT NULL,
    epoch INTEGER NOT NULL, PRIMARY KEY ("group", partition)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS testbed_schema (version INTEGER NOT NULL);
"""

_ACCOUNT_COLUMNS = (
    "id, currency, overdraft, holder_name, debits_posted, debits_pending, credits_posted, "
    "credits_pending"
)
_TRANSFER_COLUMNS = (
    "id, debit_account, credit_account, amount, currency, kind, pending_id, payment_id, at, "
    "pending_state"
)
_JOURNAL_COLUMNS = (
    "seq, transfer_id, payment_id, kind, debit_account, credit_account, amount, currency, at, "
    "prev_hash, hash, pending_id"
)
# One bound parameter (a JSON array) instead of an IN list of varying length, so the statement
# text is constant and stays in sqlite3's statement cache.
_IN_IDS = "IN (SELECT value FROM json_each(?))"

T = TypeVar("T")


def _account(row: tuple[Any, ...]) -> Account:
    id_, cur, overdraft, holder, dp, dpe, cp, cpe = row
    return Account(id_, cur, bool(overdraft), holder, dp, dpe, cp, cpe)


class SqliteStore(Store):
    """A SQLite database file; `url` is `sqlite:///relative.db` or `sqlite:////abs/path.db`."""

    serial = True  # every unit of work holds `_writer`, the store-wide lock, until it ends

    def __init__(self, path: str, url: str) -> None:
        self.url = url
        self._path = path
        self._pool = ConnectionPool(
            self._connect,
            lambda conn: not conn.in_transaction,
            lambda: StoreError(f"store {url} is closed"),
            _MAX_IDLE,
        )
        self._writer = threading.Lock()
        conn = self._connect()
        try:
            # journal_mode is stored in the file; setting it needs no other connection open.
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise StoreUnavailable(f"cannot open {url}: WAL mode refused (got {mode!r})")
            _create_schema(conn, url)
        except sqlite3.Error as e:
            conn.close()
            raise StoreUnavailable(f"cannot open {url}: {e}") from None
        except SchemaMismatch:
            conn.close()
            raise
        self._pool.release(conn)

    def _connect(self) -> sqlite3.Connection:
        try:
            # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves.
            # check_same_thread=False: the pool hands a connection to one thread at a time.
            conn = sqlite3.connect(
                self._path,
                timeout=BUSY_TIMEOUT_S,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as e:
            raise StoreUnavailable(f"cannot open {self.url}: {e}") from None
        return conn

    def unit_of_work(self) -> SqliteUnitOfWork:
        return SqliteUnitOfWork(self)

    def close(self) -> None:
        self._pool.close()


def _create_schema(conn: sqlite3.Connection, url: str) -> None:
    """Create the tables in a new file; refuse a file laid out by another version."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "testbed_schema" in tables:
            found = conn.execute("SELECT version FROM testbed_schema").fetchone()
            version = found[0] if found else 0
        else:
            version = 1 if "events" in tables else None
        if version is not None and version != SCHEMA_VERSION:
            raise SchemaMismatch(
                f"cannot open {url}: its tables are schema version {version}, this testbed"
                f" needs version {SCHEMA_VERSION}; use a new database file"
            )
        if version is None:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT INTO testbed_schema (version) VALUES (?)", (SCHEMA_VERSION,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


@contextmanager
def _mapped_errors(url: str) -> Iterator[None]:
    try:
        yield
    except sqlite3.OperationalError as e:
        if "locked" in str(e) or "busy" in str(e):
            raise ConcurrentUpdate(f"{url}: {e} (waited {BUSY_TIMEOUT_S:g} s)") from e
        raise StoreUnavailable(f"{url}: {e}") from e
    except sqlite3.Error as e:
        raise StoreError(f"{url}: {e}") from e


class SqliteUnitOfWork(UnitOfWork):
    """One `BEGIN IMMEDIATE` transaction, begun at the first statement."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self._conn: sqlite3.Connection | None = None
        self._done = False
        self._locked_at = 0.0
        """When BEGIN IMMEDIATE got the database's write lock (for calibration's timings)."""

    def _db(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        if self._done:
            raise RuntimeError("unit of work already finished")
        store = self._store
        store._writer.acquire()
        try:
            conn = store._pool.acquire()
        except BaseException:
            store._writer.release()
            raise
        try:
            with _mapped_errors(store.url):
                conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            store._pool.release(conn)
            store._writer.release()
            raise
        self._conn = conn
        self._locked_at = time.perf_counter()
        return conn

    def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._db()
        with _mapped_errors(self._store.url):
            return work(conn)

    # -- ledger ---------------------------------------------------------------------------
    def journal_head(self, tenant: str) -> JournalHead:
        # BEGIN IMMEDIATE already holds the database's only write lock.
        sql = "SELECT seq, hash FROM heads WHERE tenant = ?"
        row = self._run(lambda c: c.execute(sql, (tenant,)).fetchone())
        return JournalHead(row[0], row[1]) if row else JournalHead()

    def get_accounts(self, tenant: str, ids: Collection[str]) -> dict[str, Account]:
        sql = f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE tenant = ? AND id {_IN_IDS}"
        rows = self._run(lambda c: c.execute(sql, (tenant, json.dumps(list(ids)))).fetchall())
        return {a.id: a for a in map(_account, rows)}

    def list_accounts(self, tenant: str) -> list[Account]:
        sql = f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE tenant = ? ORDER BY id"
        return [_account(r) for r in self._run(lambda c: c.execute(sql, (tenant,)).fetchall())]

    def insert_accounts(self, tenant: str, accounts: Sequence[Account]) -> None:
        rows = [
            (
                tenant,
                a.id,
                a.currency,
                int(a.overdraft),
                a.holder_name,
                a.debits_posted,
                a.debits_pending,
                a.credits_posted,
                a.credits_pending,
            )
            for a in accounts
        ]
        sql = f"INSERT INTO accounts (tenant, {_ACCOUNT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)"
        self._run(lambda c: c.executemany(sql, rows))

    def get_transfers(self, tenant: str, ids: Collection[str]) -> dict[str, StoredTransfer]:
        sql = f"SELECT {_TRANSFER_COLUMNS} FROM transfers WHERE tenant = ? AND id {_IN_IDS}"
        rows = self._run(lambda c: c.execute(sql, (tenant, json.dumps(list(ids)))).fetchall())
        return {t.id: t for t in map(stored_transfer, rows)}

    def write_ledger(self, tenant: str, changes: LedgerChanges) -> None:
        accounts = [
            (a.debits_posted, a.debits_pending, a.credits_posted, a.credits_pending, tenant, a.id)
            for a in changes.accounts.values()
        ]
        transfers = [
            (tenant, t.id, t.debit_account, t.credit_account, t.amount, t.currency, t.kind.value,
             t.pending_id, t.payment_id, t.at, t.pending_state.value if t.pending_state else None)
            for t in changes.transfers
        ]  # fmt: skip
        states = [(s.value, tenant, tid) for tid, s in changes.pending_states.items()]
        journal = [
            (tenant, e.seq, e.transfer_id, e.payment_id, e.kind, e.debit_account,
             e.credit_account, e.amount, e.currency, e.at, e.prev_hash, e.hash, e.pending_id)
            for e in changes.journal
        ]  # fmt: skip
        head = changes.head

        def write(c: sqlite3.Connection) -> None:
            c.executemany(
                "UPDATE accounts SET debits_posted = ?, debits_pending = ?, credits_posted = ?,"
                " credits_pending = ? WHERE tenant = ? AND id = ?",
                accounts,
            )
            c.executemany(
                f"INSERT INTO transfers (tenant, {_TRANSFER_COLUMNS})"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                transfers,
            )
            c.executemany(
                "UPDATE transfers SET pending_state = ? WHERE tenant = ? AND id = ?", states
            )
            c.executemany(
                f"INSERT INTO journal (tenant, {_JOURNAL_COLUMNS})"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                journal,
            )
            if head is not None:
                c.execute(
                    "INSERT INTO heads (tenant, seq, hash) VALUES (?, ?, ?) ON CONFLICT (tenant)"
                    " DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                    (tenant, head.seq, head.hash),
                )

        self._run(write)

    def read_journal(self, tenant: str, after: int, limit: int) -> list[JournalEntry]:
        sql = (
            f"SELECT {_JOURNAL_COLUMNS} FROM journal WHERE tenant = ? AND seq > ?"
            " ORDER BY seq LIMIT ?"
        )
        rows = self._run(lambda c: c.execute(sql, (tenant, after, limit)).fetchall())
        return [JournalEntry(*r) for r in rows]

    # -- records --------------------------------------------------------------------------
    def get_record(self, kind: str, tenant: str, key: str) -> str | None:
        sql = "SELECT value FROM records WHERE tenant = ? AND kind = ? AND key = ?"
        row = self._run(lambda c: c.execute(sql, (tenant, kind, key)).fetchone())
        return str(row[0]) if row else None

    def put_record(self, kind: str, tenant: str, key: str, value: str) -> None:
        sql = (
            "INSERT INTO records (tenant, kind, key, value) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (tenant, kind, key) DO UPDATE SET value = excluded.value"
        )
        self._run(lambda c: c.execute(sql, (tenant, kind, key, value)))

    def insert_record_if_absent(self, kind: str, tenant: str, key: str, value: str) -> str | None:
        # Race-free without more: this unit of work holds the database's write lock.
        existing = self.get_record(kind, tenant, key)
        if existing is None:
            sql = "INSERT INTO records (tenant, kind, key, value) VALUES (?, ?, ?, ?)"
            self._run(lambda c: c.execute(sql, (tenant, kind, key, value)))
        return existing

    def list_records(
        self, kind: str, tenant: str, after_key: str = "", limit: int = 1000
    ) -> list[tuple[str, str]]:
        sql = (
            "SELECT key, value FROM records WHERE tenant = ? AND kind = ? AND key > ?"
            " ORDER BY key LIMIT ?"
        )
        rows = self._run(lambda c: c.execute(sql, (tenant, kind, after_key, limit)).fetchall())
        return [(str(k), str(v)) for k, v in rows]

    def delete_records_if_unchanged(
        self, kind: str, tenant: str, values: Mapping[str, str]
    ) -> None:
        sql = "DELETE FROM records WHERE tenant = ? AND kind = ? AND key = ? AND value = ?"
        rows = [(tenant, kind, key, value) for key, value in values.items()]
        self._run(lambda c: c.executemany(sql, rows))

    # -- event log ------------------------------------------------------------------------
    def append_events(self, events: Sequence[NewEvent], partitions: int, at: float) -> None:
        def append(c: sqlite3.Connection) -> None:
            # Offsets are gapless per topic partition; the write lock makes max()+1 safe.
            heads: dict[tuple[str, int], int] = {}
            rows = []
            for ev in events:
                head = (ev.topic, partition_for(ev.key, partitions))
                if head not in heads:
                    heads[head] = c.execute(
                        'SELECT coalesce(max("offset"), 0) FROM events'
                        " WHERE topic = ? AND partition = ?",
                        head,
                    ).fetchone()[0]
                heads[head] += 1
                rows.append((*head, heads[head], ev.type, ev.key, ev.payload, at))
            c.executemany(
                'INSERT INTO events (topic, partition, "offset", type, key, payload, at)'
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

        self._run(append)

    def read_events(self, topic: str, partition: int, after: int, limit: int) -> list[LoggedEvent]:
        sql = (
            'SELECT topic, partition, "offset", type, key, payload, at FROM events'
            ' WHERE topic = ? AND partition = ? AND "offset" > ? ORDER BY "offset" LIMIT ?'
        )
        rows = self._run(lambda c: c.execute(sql, (topic, partition, after, limit)).fetchall())
        return [LoggedEvent(*r) for r in rows]

    def log_heads(self, topic: str) -> dict[int, int]:
        sql = 'SELECT partition, max("offset") FROM events WHERE topic = ? GROUP BY partition'
        rows = self._run(lambda c: c.execute(sql, (topic,)).fetchall())
        return {int(p): int(o) for p, o in sorted(rows)}

    def get_offset(self, group: str, topic: str, partition: int) -> int:
        sql = 'SELECT "offset" FROM offsets WHERE "group" = ? AND topic = ? AND partition = ?'
        row = self._run(lambda c: c.execute(sql, (group, topic, partition)).fetchone())
        return int(row[0]) if row else 0

    def set_offset(self, group: str, topic: str, partition: int, offset: int) -> None:
        sql = (
            'INSERT INTO offsets ("group", topic, partition, "offset") VALUES (?, ?, ?, ?)'
            ' ON CONFLICT ("group", topic, partition) DO UPDATE SET "offset" = excluded."offset"'
        )
        self._run(lambda c: c.execute(sql, (group, topic, partition, offset)))

    # -- consumer groups ------------------------------------------------------------------
    def lock_group(self, group: str) -> None:
        self._db()  # BEGIN IMMEDIATE already holds the database's only write lock

    def list_members(self, group: str) -> list[GroupMember]:
        sql = (
            'SELECT "group", member, pid, host, joined_at, heartbeat_at, lease_expires'
            ' FROM group_members WHERE "group" = ? ORDER BY member'
        )
        return [GroupMember(*r) for r in self._run(lambda c: c.execute(sql, (group,)).fetchall())]

    def put_member(self, member: GroupMember) -> None:
        sql = (
            'INSERT OR REPLACE INTO group_members ("group", member, pid, host, joined_at,'
            " heartbeat_at, lease_expires) VALUES (?, ?, ?, ?, ?, ?, ?)"
        )
        m = member
        row = (m.group, m.member, m.pid, m.host, m.joined_at, m.heartbeat_at, m.lease_expires)
        self._run(lambda c: c.execute(sql, row))

    def delete_members(self, group: str, members: Collection[str]) -> None:
        sql = f'DELETE FROM group_members WHERE "group" = ? AND member {_IN_IDS}'
        self._run(lambda c: c.execute(sql, (group, json.dumps(list(members)))))

    def list_claims(self, group: str) -> list[PartitionClaim]:
        sql = (
            'SELECT "group", partition, member, epoch FROM group_claims WHERE "group" = ?'
            " ORDER BY partition"
        )
        rows = self._run(lambda c: c.execute(sql, (group,)).fetchall())
        return [PartitionClaim(*r) for r in rows]

    def put_claims(self, claims: Sequence[PartitionClaim]) -> None:
        sql = (
            'INSERT OR REPLACE INTO group_claims ("group", partition, member, epoch)'
            " VALUES (?, ?, ?, ?)"
        )
        rows = [(c.group, c.partition, c.member, c.epoch) for c in claims]
        self._run(lambda c: c.executemany(sql, rows))

    def fence_claims(self, group: str, partitions: Collection[int]) -> dict[int, PartitionClaim]:
        # The write lock this unit of work holds keeps every claim as read until it ends.
        sql = (
            'SELECT "group", partition, member, epoch FROM group_claims WHERE "group" = ?'
            f" AND partition {_IN_IDS}"
        )
        params = (group, json.dumps(list(partitions)))
        rows = self._run(lambda c: c.execute(sql, params).fetchall())
        return {r[1]: PartitionClaim(*r) for r in rows}

    def list_groups(self) -> list[str]:
        sql = (
            'SELECT "group" FROM group_members UNION SELECT "group" FROM group_claims'
            ' UNION SELECT "group" FROM offsets ORDER BY 1'
        )
        return [str(r[0]) for r in self._run(lambda c: c.execute(sql).fetchall())]

    # -- transaction ----------------------------------------------------------------------
    def commit(self) -> None:
        if self._done:
            raise RuntimeError("unit of work already finished")
        conn = self._conn
        try:
            if conn is not None:
                with _mapped_errors(self._store.url):
                    conn.execute("COMMIT")
                timings().held(time.perf_counter() - self._locked_at)
        finally:
            self._finish()

    def rollback(self) -> None:
        if not self._done:
            self._finish()

    def _finish(self) -> None:
        self._done = True
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            conn.close()
            return
        finally:
            self._store._writer.release()
        self._store._pool.release(conn)
