"""The PostgreSQL store (psycopg 3): the store for real deployments and the load runtime.

Schema: every ledger table's primary key starts with `tenant` (accounts, transfers and the
journal then by id or seq; records by kind and key), so the schema can be distributed with
Citus by tenant unchanged; the event log is keyed by partition, a distribution column of its
own. Key columns use the "C" collation so that ordering by id or key is by code point, as in
the other stores. `?schema=NAME` in the URL puts the tables in that schema (created if absent),
which lets tests and benchmarks isolate themselves.

Concurrency: transactions run at READ COMMITTED; `journal_head` locks the tenant's row in
`heads` (creating it first if needed) until commit, so writers to one tenant serialise and,
holding the lock, read the latest committed balances. Event offsets are allocated from a
locked per-partition counter, so they are gapless and a consumer never skips an offset that
commits late. Serialization failures and deadlocks surface as `ConcurrentUpdate`.

Round trips: each unit of work queues its statements on libpq's pipeline
(`postgres_pipeline.py`): writes wait and go with the next read or with the COMMIT, each round
trip one write to the socket with one Sync. A ledger batch costs two: `lock_and_load` (BEGIN,
the head's lock, then the accounts and transfers it names) and the writes with the COMMIT.
Small batches are written one row per statement, larger ones with one statement per table
(`unnest` of arrays). Lookups by id probe the primary key once per id (`_probe`), so their
cost follows the batch, not the size of the tables.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from reference_impl.adapters import redact_url
from reference_impl.adapters.pool import ConnectionPool
from reference_impl.adapters.postgres_pipeline import Pipeline, Session
from reference_impl.adapters.sql_rows import stored_transfer
from reference_impl.core.journal import GENESIS_HASH, JournalEntry, JournalHead
from reference_impl.core.ledger import (
    Account,
    LedgerChanges,
    StoredTransfer,
)
from reference_impl.service.ports import (
    SCHEMA_VERSION,
    ConcurrentUpdate,
    GroupMember,
    InvalidStoreURL,
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

CONNECT_TIMEOUT_S = 5
IDLE_IN_TRANSACTION_TIMEOUT_MS = 5_000
"""A session that sits in an open transaction this long is ended by the server and its locks
released: a worker stopped (SIGSTOP) or hung mid-transaction must not hold a tenant's journal
head or a partition claim for everyone else until it wakes."""
_MAX_IDLE = 16
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

_TABLES = """
CREATE TABLE IF NOT EXISTS accounts (
    tenant text COLLATE "C" NOT NULL, id text COLLATE "C" NOT NULL, currency text NOT NULL,
    overdraft boolean NOT NULL, holder_name text NOT NULL,
    debits_posted bigint NOT NULL, debits_pending bigint NOT NULL,
    credits_posted bigint NOT NULL, credits_pending bigint NOT NULL,
    PRIMARY KEY (tenant, id));
CREATE TABLE IF NOT EXISTS transfers (
    tenant text COLLATE "C" NOT NULL, id text COLLATE "C" NOT NULL,
    debit_account text NOT NULL, credit_account text NOT NULL, amount bigint NOT NULL,
    currency text NOT NULL, kind text NOT NULL, pending_id text NOT NULL,
    payment_id text NOT NULL, at double precision NOT NULL, pending_state text,
    PRIMARY KEY (tenant, id));
CREATE TABLE IF NOT EXISTS journal (
    tenant text COLLATE "C" NOT NULL, seq bigint NOT NULL, transfer_id text NOT NULL,
    payment_id text NOT NULL, kind text NOT NULL, debit_account text NOT NULL,
    credit_account text NOT NULL, amount bigint NOT NULL, currency text NOT NULL,
    at double precision NOT NULL, prev_hash text NOT NULL, hash text NOT NULL,
    pending_id text NOT NULL, PRIMARY KEY (tenant, seq));
CREATE TABLE IF NOT EXISTS heads (
    tenant text COLLATE "C" PRIMARY KEY, seq bigint NOT NULL, hash text NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    tenant text COLLATE "C" NOT NULL, kind text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL, value text NOT NULL,
    PRIMARY KEY (tenant, kind, key));
CREATE TABLE IF NOT EXISTS event_heads (
    topic text COLLATE "C" NOT NULL, partition integer NOT NULL, "offset" bigint NOT NULL,
    PRIMARY KEY (topic, partition));
CREATE TABLE IF NOT EXISTS events (
    topic text COLLATE "C" NOT NULL, partition integer NOT NULL, "offset" bigint NOT NULL,
    type text NOT NULL, key text NOT NULL, payload text NOT NULL,
    at double precision NOT NULL, PRIMARY KEY (topic, partition, "offset"));
CREATE TABLE IF NOT EXISTS offsets (
    "group" text COLLATE "C" NOT NULL, topic text COLLATE "C" NOT NULL,
    partition integer NOT NULL, "offset" bigint NOT NULL,
    PRIMARY KEY ("group", topic, partition));
CREATE TABLE IF NOT EXISTS group_members (
    "group" text COLLATE "C" NOT NULL, member text COLLATE "C" NOT NULL,
    pid integer NOT NULL, host text NOT NULL, joined_at double precision NOT NULL,
    heartbeat_at double precision NOT NULL, lease_expires double precision NOT NULL,
    PRIMARY KEY ("group", member));
CREATE TABLE IF NOT EXISTS group_claims (
    "group" text COLLATE "C" NOT NULL, partition integer NOT NULL,
    member text COLLATE "C" NOT NULL, epoch bigint NOT NULL,
    PRIMARY KEY ("group", partition));
CREATE TABLE IF NOT EXISTS testbed_schema (version integer NOT NULL);
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
_SELECT_HEAD = "SELECT seq, hash FROM heads WHERE tenant = %s FOR UPDATE"


def _probe(table: str, columns: str) -> str:
    """Rows of `table` by (tenant, id): one primary-key probe per id, whatever the statistics.

    `WHERE tenant = %s AND id = ANY(%s)` leaves the plan to the planner, and its custom plan for
    a large array reads every row of the tenant: without statistics (autovacuum off, a table
    never analysed) it assumes `tenant = ...` matches a hundred rows and filters them by id;
    with statistics it picks a sequential scan. Only the generic plan of the prepared statement
    probes the index with the array, and the server stops choosing it once the statement's
    history is mostly small arrays (their custom plans are cheaper than the generic one). So
    after batches of 1 to 100, every batch of 1,000 scanned the tenant's whole history: 27-55 ms
    for 100,000-120,000 transfers against about 3 ms by the index. The lateral subquery, fenced
    by OFFSET 0 so it is not flattened into a join the planner could hash, can only run as a
    nested loop over the ids with an index scan on the full primary key inside.
    """
    return (
        f"SELECT r.* FROM unnest(%b::text[]) AS k(id) CROSS JOIN LATERAL"
        f" (SELECT {columns} FROM {table} AS t WHERE t.tenant = %s AND t.id = k.id OFFSET 0) AS r"
    )


_GET_ACCOUNTS = _probe("accounts", _ACCOUNT_COLUMNS)
_GET_TRANSFERS = _probe("transfers", _TRANSFER_COLUMNS)

# Each batch write has two forms: one row per statement for small batches (dumping arrays
# costs more client CPU than it saves there), one statement over arrays (`unnest`) for large
# ones. Arrays go in binary (`%b`): the text form quotes every element with a regex, which cost
# twice the client CPU of the binary one. Rows list columns in placeholder order: the tenant
# goes first in inserts, last in updates.
_UPDATE_ACCOUNT_ROW = """
UPDATE accounts SET debits_posted = %s, debits_pending = %s, credits_posted = %s,
    credits_pending = %s WHERE id = %s AND tenant = %s"""
_UPDATE_ACCOUNTS = """
UPDATE accounts AS a SET debits_posted = v.dp, debits_pending = v.dpe,
    credits_posted = v.cp, credits_pending = v.cpe
FROM unnest(%b::bigint[], %b::bigint[], %b::bigint[], %b::bigint[], %b::text[])
    AS v(dp, dpe, cp, cpe, id)
WHERE a.tenant = %s AND a.id = v.id"""
_INSERT_TRANSFER_ROW = f"""
INSERT INTO transfers (tenant, {_TRANSFER_COLUMNS})
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"""
_INSERT_TRANSFERS = f"""
INSERT INTO transfers (tenant, {_TRANSFER_COLUMNS})
SELECT %s, * FROM unnest(%b::text[], %b::text[], %b::text[], %b::bigint[], %b::text[],
    %b::text[], %b::text[], %b::text[], %b::float8[], %b::text[])"""
_UPDATE_PENDING_ROW = "UPDATE transfers SET pending_state = %s WHERE id = %s AND tenant = %s"
_UPDATE_PENDING = """
UPDATE transfers AS t SET pending_state = v.state
FROM unnest(%b::text[], %b::text[]) AS v(state, id)
WHERE t.tenant = %s AND t.id = v.id"""
_INSERT_JOURNAL_ROW = f"""
INSERT INTO journal (tenant, {_JOURNAL_COLUMNS})
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"""
_INSERT_JOURNAL = f"""
INSERT INTO journal (tenant, {_JOURNAL_COLUMNS})
SELECT %s, * FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::text[], %b::text[],
    %b::text[], %b::bigint[], %b::text[], %b::float8[], %b::text[], %b::text[],
    %b::text[])"""
_UPSERT_HEAD = """
INSERT INTO heads (tenant, seq, hash) VALUES (%s, %s, %s)
ON CONFLICT (tenant) DO UPDATE SET seq = excluded.seq, hash = excluded.hash"""
_ROWS_PER_STATEMENT_MAX = 4
_ALLOCATE_OFFSETS = """
INSERT INTO event_heads AS h (topic, partition, "offset")
SELECT * FROM unnest(%b::text[], %b::int[], %b::bigint[])
ON CONFLICT (topic, partition) DO UPDATE SET "offset" = h."offset" + excluded."offset"
RETURNING topic, partition, "offset\""""
_INSERT_EVENTS = """
INSERT INTO events (topic, partition, "offset", type, key, payload, at)
SELECT *, %s FROM unnest(%b::text[], %b::int[], %b::bigint[], %b::text[], %b::text[],
    %b::text[])"""
_MEMBER_COLUMNS = '"group", member, pid, host, joined_at, heartbeat_at, lease_expires'
_CLAIM_COLUMNS = '"group", partition, member, epoch'


def _one_line(e: BaseException) -> str:
    return "; ".join(line.strip() for line in str(e).splitlines() if line.strip())


def _parse_url(url: str) -> tuple[str, str | None]:
    """The libpq connection string and the schema named by `?schema=`, or InvalidStoreURL."""
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is what validates it
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as e:
        raise InvalidStoreURL(f"invalid store URL {shown!r}: {e}") from None
    schema = None
    rest = []
    for name, value in query:
        if name == "schema":
            if not _SCHEMA_NAME.fullmatch(value):
                raise InvalidStoreURL(
                    f"invalid store URL {shown!r}: schema {value!r} must be a lower-case SQL"
                    " identifier (letters, digits, _; at most 63)"
                )
            schema = value
        else:
            rest.append((name, value))
    try:
        query_rest = urlencode(rest, quote_via=quote)  # libpq reads %20, not +, as a space
        params = conninfo_to_dict(urlunsplit(parts._replace(query=query_rest)))
    except psycopg.Error as e:
        raise InvalidStoreURL(f"invalid store URL {shown!r}: {_one_line(e)}") from None
    params.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
    options: list[str] = [str(params.get("options") or "")]
    options.append(f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_TIMEOUT_MS}")
    if schema:
        options.append(f"-c search_path={schema}")
    params["options"] = " ".join(o for o in options if o)
    return make_conninfo("", **params), schema


@contextmanager
def _mapped_errors(url: str) -> Iterator[None]:
    try:
        yield
    except errors.TransactionRollback as e:  # serialization failure, deadlock
        raise ConcurrentUpdate(f"{url}: {_one_line(e)}") from e
    except psycopg.OperationalError as e:
        raise StoreUnavailable(f"{url}: {_one_line(e)}") from e
    except psycopg.Error as e:
        raise StoreError(f"{url}: {_one_line(e)}") from e


def _write_rows(
    pipe: Pipeline,
    row_sql: str,
    array_sql: str,
    tenant: str,
    rows: list[tuple[Any, ...]],
) -> None:
    if not rows:
        return
    tenant_last = row_sql.lstrip().startswith("UPDATE")
    if len(rows) <= _ROWS_PER_STATEMENT_MAX:
        for r in rows:
            pipe.execute(row_sql, (*r, tenant) if tenant_last else (tenant, *r))
        return
    columns = [list(c) for c in zip(*rows, strict=True)]
    pipe.execute(array_sql, (*columns, tenant) if tenant_last else (tenant, *columns))


def _stored_transfers(rows: list[tuple[Any, ...]]) -> dict[str, StoredTransfer]:
    return {t.id: t for t in map(stored_transfer, rows)}


Connection = psycopg.Connection[tuple[Any, ...]]


class PostgresStore(Store):
    """A pool of connections to one database (and schema); opening it creates the tables."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._shown = redact_url(url)
        self._conninfo, self._schema = _parse_url(url)
        self._pool = ConnectionPool(
            self._open_session,
            lambda session: session.reusable,
            lambda: StoreError(f"store {self._shown} is closed"),
            _MAX_IDLE,
        )
        session = self._open_session()
        conn = session.conn
        try:
            with _mapped_errors(self._shown), conn.transaction():
                # Concurrent openers would race on CREATE ... IF NOT EXISTS: serialise them.
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('payments-testbed-schema'))")
                if self._schema:
                    conn.execute(
                        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                            sql.Identifier(self._schema)
                        )
                    )
                self._create_tables(conn)
        except BaseException:
            conn.close()
            raise
        self._pool.release(session)

    def _create_tables(self, conn: Connection) -> None:
        """Create the tables in a new schema; refuse one laid out by another version."""
        found = conn.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = current_schema()"
            " AND table_name IN ('testbed_schema', 'events')"
        ).fetchall()
        tables = {r[0] for r in found}
        version: int | None = None
        if "testbed_schema" in tables:
            row = conn.execute("SELECT version FROM testbed_schema").fetchone()
            version = row[0] if row else 0
        elif "events" in tables:
            version = 1
        if version is not None and version != SCHEMA_VERSION:
            raise SchemaMismatch(
                f"cannot open {self._shown}: its tables are schema version {version}, this"
                f" testbed needs version {SCHEMA_VERSION}; use a new database or ?schema=NAME"
            )
        if version is None:
            conn.execute(_TABLES)
            conn.execute("INSERT INTO testbed_schema (version) VALUES (%s)", (SCHEMA_VERSION,))

    def _open_session(self) -> Session:
        try:
            return Session(psycopg.connect(self._conninfo))
        except psycopg.Error as e:
            raise StoreUnavailable(f"cannot connect to {self._shown}: {_one_line(e)}") from None

    @property
    def conninfo(self) -> str:
        """The libpq connection string (for a LISTEN connection of the runtime's own)."""
        return self._conninfo

    @property
    def schema(self) -> str | None:
        return self._schema

    def unit_of_work(self) -> PostgresUnitOfWork:
        return PostgresUnitOfWork(self)

    def close(self) -> None:
        self._pool.close()


class PostgresUnitOfWork(UnitOfWork):
    """One READ COMMITTED transaction on a pooled connection, begun at the first round trip."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store
        self._pipe = Pipeline(store._pool.acquire)
        self._done = False

    @property
    def _conn(self) -> Connection | None:
        """The connection, once the first round trip has taken one."""
        session = self._pipe.session
        return session.conn if session is not None else None

    # The server arms its idle-in-transaction timeout only once it has answered a Sync: while
    # statements it received are not followed by one, the session counts as active, however
    # long its client is gone. A client stopped (SIGSTOP, a frozen VM) after a write and
    # before the next Sync would hold that write's row locks (a tenant's journal head, a
    # group's claims) for as long as it is stopped, and every other writer, and every other
    # member's heartbeat, would wait behind them. So writes wait in the pipeline's queue and
    # go out together with the next read, or with the COMMIT, a Sync behind the last.

    def _query(self, query: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        if self._done:
            raise RuntimeError("unit of work already finished")
        rows = self._pipe.execute(query, params)
        with _mapped_errors(self._store._shown):
            self._pipe.sync()
        return rows

    def _send(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Writes: sent with the next read or the COMMIT."""
        if self._done:
            raise RuntimeError("unit of work already finished")
        for query, params in statements:
            self._pipe.execute(query, params)

    # -- ledger ---------------------------------------------------------------------------
    def journal_head(self, tenant: str) -> JournalHead:
        rows = self._query(_SELECT_HEAD, (tenant,))
        if not rows:
            # A new tenant: create its row (or wait for a concurrent creator), then lock it.
            self._send(
                [
                    (
                        "INSERT INTO heads (tenant, seq, hash) VALUES (%s, 0, %s)"
                        " ON CONFLICT (tenant) DO NOTHING",
                        (tenant, GENESIS_HASH),
                    )
                ]
            )
            rows = self._query(_SELECT_HEAD, (tenant,))
        seq, digest = rows[0]
        return JournalHead(seq, digest)

    def get_accounts(self, tenant: str, ids: Collection[str]) -> dict[str, Account]:
        rows = self._query(_GET_ACCOUNTS, (list(ids), tenant))
        return {r[0]: Account(*r) for r in rows}

    def list_accounts(self, tenant: str) -> list[Account]:
        rows = self._query(
            f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE tenant = %s ORDER BY id", (tenant,)
        )
        return [Account(*r) for r in rows]

    def insert_accounts(self, tenant: str, accounts: Sequence[Account]) -> None:
        cols = (
            [a.id for a in accounts],
            [a.currency for a in accounts],
            [a.overdraft for a in accounts],
            [a.holder_name for a in accounts],
            [a.debits_posted for a in accounts],
            [a.debits_pending for a in accounts],
            [a.credits_posted for a in accounts],
            [a.credits_pending for a in accounts],
        )
        self._send(
            [
                (
                    f"INSERT INTO accounts (tenant, {_ACCOUNT_COLUMNS}) SELECT %s, * FROM"
                    " unnest(%b::text[], %b::text[], %b::bool[], %b::text[], %b::bigint[],"
                    " %b::bigint[], %b::bigint[], %b::bigint[])",
                    (tenant, *cols),
                )
            ]
        )

    def get_transfers(self, tenant: str, ids: Collection[str]) -> dict[str, StoredTransfer]:
        return _stored_transfers(self._query(_GET_TRANSFERS, (list(ids), tenant)))

    def lock_and_load(
        self, tenant: str, account_ids: Collection[str], transfer_ids: Collection[str]
    ) -> tuple[JournalHead, dict[str, Account], dict[str, StoredTransfer]]:
        # One round trip: the server runs a pipeline's statements in order, and each read takes
        # its snapshot when it starts (READ COMMITTED), so the reads queued behind the FOR
        # UPDATE run once the lock is held and see whatever its previous holder committed.
        if self._done:
            raise RuntimeError("unit of work already finished")
        head_rows = self._pipe.execute(_SELECT_HEAD, (tenant,))
        account_rows = self._pipe.execute(_GET_ACCOUNTS, (list(account_ids), tenant))
        transfer_rows = self._pipe.execute(_GET_TRANSFERS, (list(transfer_ids), tenant))
        with _mapped_errors(self._store._shown):
            self._pipe.sync()
        if not head_rows:  # a new tenant: the reads ran without its lock; take it, read again
            return super().lock_and_load(tenant, account_ids, transfer_ids)
        seq, digest = head_rows[0]
        return (
            JournalHead(seq, digest),
            {r[0]: Account(*r) for r in account_rows},
            _stored_transfers(transfer_rows),
        )

    def write_ledger(self, tenant: str, changes: LedgerChanges) -> None:
        accounts = [
            (a.debits_posted, a.debits_pending, a.credits_posted, a.credits_pending, a.id)
            for a in changes.accounts.values()
        ]
        transfers = [
            (t.id, t.debit_account, t.credit_account, t.amount, t.currency, t.kind.value,
             t.pending_id, t.payment_id, t.at, t.pending_state.value if t.pending_state else None)
            for t in changes.transfers
        ]  # fmt: skip
        journal = [
            (e.seq, e.transfer_id, e.payment_id, e.kind, e.debit_account, e.credit_account,
             e.amount, e.currency, e.at, e.prev_hash, e.hash, e.pending_id)
            for e in changes.journal
        ]  # fmt: skip
        states = [(s.value, tid) for tid, s in changes.pending_states.items()]
        head = changes.head

        if self._done:
            raise RuntimeError("unit of work already finished")
        pipe = self._pipe
        _write_rows(pipe, _UPDATE_ACCOUNT_ROW, _UPDATE_ACCOUNTS, tenant, accounts)
        _write_rows(pipe, _INSERT_TRANSFER_ROW, _INSERT_TRANSFERS, tenant, transfers)
        _write_rows(pipe, _UPDATE_PENDING_ROW, _UPDATE_PENDING, tenant, states)
        _write_rows(pipe, _INSERT_JOURNAL_ROW, _INSERT_JOURNAL, tenant, journal)
        if head is not None:
            pipe.execute(_UPSERT_HEAD, (tenant, head.seq, head.hash))

    def read_journal(self, tenant: str, after: int, limit: int) -> list[JournalEntry]:
        rows = self._query(
            f"SELECT {_JOURNAL_COLUMNS} FROM journal WHERE tenant = %s AND seq > %s"
            " ORDER BY seq LIMIT %s",
            (tenant, after, limit),
        )
        return [JournalEntry(*r) for r in rows]

    # -- records --------------------------------------------------------------------------
    def get_record(self, kind: str, tenant: str, key: str) -> str | None:
        rows = self._query(
            "SELECT value FROM records WHERE tenant = %s AND kind = %s AND key = %s",
            (tenant, kind, key),
        )
        return str(rows[0][0]) if rows else None

    def put_record(self, kind: str, tenant: str, key: str, value: str) -> None:
        self._send(
            [
                (
                    "INSERT INTO records (tenant, kind, key, value) VALUES (%s, %s, %s, %s)"
                    " ON CONFLICT (tenant, kind, key) DO UPDATE SET value = excluded.value",
                    (tenant, kind, key, value),
                )
            ]
        )

    def insert_record_if_absent(self, kind: str, tenant: str, key: str, value: str) -> str | None:
        # ON CONFLICT waits for a concurrent inserter of the same key to finish; if it
        # committed, its row is visible to the next statement (READ COMMITTED).
        inserted = self._query(
            "INSERT INTO records (tenant, kind, key, value) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (tenant, kind, key) DO NOTHING RETURNING 1",
            (tenant, kind, key, value),
        )
        if inserted:
            return None
        existing = self.get_record(kind, tenant, key)
        if existing is None:
            raise StoreError(f"{self._store._shown}: record {kind}/{tenant}/{key} vanished")
        return existing

    def list_records(
        self, kind: str, tenant: str, after_key: str = "", limit: int = 1000
    ) -> list[tuple[str, str]]:
        rows = self._query(
            "SELECT key, value FROM records WHERE tenant = %s AND kind = %s AND key > %s"
            " ORDER BY key LIMIT %s",
            (tenant, kind, after_key, limit),
        )
        return [(str(k), str(v)) for k, v in rows]

    def delete_records_if_unchanged(
        self, kind: str, tenant: str, values: Mapping[str, str]
    ) -> None:
        # READ COMMITTED re-checks `value` against a row a concurrent writer changed meanwhile.
        sql = "DELETE FROM records WHERE tenant = %s AND kind = %s AND key = %s AND value = %s"
        self._send([(sql, (tenant, kind, key, value)) for key, value in values.items()])

    # -- event log ------------------------------------------------------------------------
    def append_events(self, events: Sequence[NewEvent], partitions: int, at: float) -> None:
        if not events:
            return
        heads = [(ev.topic, partition_for(ev.key, partitions)) for ev in events]
        counts: dict[tuple[str, int], int] = {}
        for head in heads:
            counts[head] = counts.get(head, 0) + 1
        # Lock the counters in one order, so two appenders cannot deadlock on them.
        order = sorted(counts)
        rows = self._query(
            _ALLOCATE_OFFSETS,
            ([t for t, _ in order], [p for _, p in order], [counts[h] for h in order]),
        )
        next_offset = {(t, p): last - counts[(t, p)] + 1 for t, p, last in rows}
        offsets = []
        for head in heads:
            offsets.append(next_offset[head])
            next_offset[head] += 1
        self._send(
            [
                (
                    _INSERT_EVENTS,
                    (
                        at,
                        [t for t, _ in heads],
                        [p for _, p in heads],
                        offsets,
                        [ev.type for ev in events],
                        [ev.key for ev in events],
                        [ev.payload for ev in events],
                    ),
                )
            ]
        )

    def read_events(self, topic: str, partition: int, after: int, limit: int) -> list[LoggedEvent]:
        rows = self._query(
            'SELECT topic, partition, "offset", type, key, payload, at FROM events'
            ' WHERE topic = %s AND partition = %s AND "offset" > %s ORDER BY "offset" LIMIT %s',
            (topic, partition, after, limit),
        )
        return [LoggedEvent(*r) for r in rows]

    def log_heads(self, topic: str) -> dict[int, int]:
        rows = self._query(
            'SELECT partition, "offset" FROM event_heads WHERE topic = %s ORDER BY partition',
            (topic,),
        )
        return {int(p): int(o) for p, o in rows}

    def get_offset(self, group: str, topic: str, partition: int) -> int:
        rows = self._query(
            'SELECT "offset" FROM offsets WHERE "group" = %s AND topic = %s AND partition = %s',
            (group, topic, partition),
        )
        return int(rows[0][0]) if rows else 0

    def set_offset(self, group: str, topic: str, partition: int, offset: int) -> None:
        self._send(
            [
                (
                    'INSERT INTO offsets ("group", topic, partition, "offset")'
                    ' VALUES (%s, %s, %s, %s) ON CONFLICT ("group", topic, partition)'
                    ' DO UPDATE SET "offset" = excluded."offset"',
                    (group, topic, partition, offset),
                )
            ]
        )

    # -- consumer groups ------------------------------------------------------------------
    def lock_group(self, group: str) -> None:
        # A transaction-scoped advisory lock per (schema, group): no row needs to exist first.
        self._query(
            "SELECT pg_advisory_xact_lock(hashtext(%s))",
            (f"{self._store.schema or ''}/consumer-group/{group}",),
        )

    def list_members(self, group: str) -> list[GroupMember]:
        rows = self._query(
            f'SELECT {_MEMBER_COLUMNS} FROM group_members WHERE "group" = %s ORDER BY member',
            (group,),
        )
        return [GroupMember(*r) for r in rows]

    def put_member(self, member: GroupMember) -> None:
        m = member
        self._send(
            [
                (
                    f"INSERT INTO group_members ({_MEMBER_COLUMNS})"
                    ' VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT ("group", member)'
                    " DO UPDATE SET pid = excluded.pid, host = excluded.host,"
                    " joined_at = excluded.joined_at, heartbeat_at = excluded.heartbeat_at,"
                    " lease_expires = excluded.lease_expires",
                    (
                        m.group,
                        m.member,
                        m.pid,
                        m.host,
                        m.joined_at,
                        m.heartbeat_at,
                        m.lease_expires,
                    ),
                )
            ]
        )

    def delete_members(self, group: str, members: Collection[str]) -> None:
        if members:
            self._send(
                [
                    (
                        'DELETE FROM group_members WHERE "group" = %s AND member = ANY(%b)',
                        (group, list(members)),
                    )
                ]
            )

    def list_claims(self, group: str) -> list[PartitionClaim]:
        rows = self._query(
            f'SELECT {_CLAIM_COLUMNS} FROM group_claims WHERE "group" = %s ORDER BY partition',
            (group,),
        )
        return [PartitionClaim(*r) for r in rows]

    def put_claims(self, claims: Sequence[PartitionClaim]) -> None:
        if claims:
            self._send(
                [
                    (
                        f"INSERT INTO group_claims ({_CLAIM_COLUMNS})"
                        " SELECT * FROM unnest(%b::text[], %b::int[], %b::text[], %b::bigint[])"
                        ' ON CONFLICT ("group", partition) DO UPDATE'
                        " SET member = excluded.member, epoch = excluded.epoch",
                        (
                            [c.group for c in claims],
                            [c.partition for c in claims],
                            [c.member for c in claims],
                            [c.epoch for c in claims],
                        ),
                    )
                ]
            )

    def fence_claims(self, group: str, partitions: Collection[int]) -> dict[int, PartitionClaim]:
        # FOR SHARE: a heartbeat that would move one of these claims waits for this commit, so
        # a commit that passed the check cannot race a claim's move to another member.
        rows = self._query(
            f'SELECT {_CLAIM_COLUMNS} FROM group_claims WHERE "group" = %s'
            " AND partition = ANY(%b) FOR SHARE",
            (group, list(partitions)),
        )
        return {r[1]: PartitionClaim(*r) for r in rows}

    def list_groups(self) -> list[str]:
        rows = self._query(
            'SELECT "group" FROM group_members UNION SELECT "group" FROM group_claims'
            ' UNION SELECT "group" FROM offsets ORDER BY 1',
            (),
        )
        return [str(r[0]) for r in rows]

    # -- transaction ----------------------------------------------------------------------
    def commit(self) -> None:
        if self._done:
            raise RuntimeError("unit of work already finished")
        try:
            with _mapped_errors(self._store._shown):
                self._pipe.commit()  # the queued writes, COMMIT and a Sync: one round trip
        finally:
            self._finish()

    def rollback(self) -> None:
        if not self._done:
            self._finish()

    def _finish(self) -> None:
        self._done = True
        session = self._pipe.end()
        if session is not None:
            self._store._pool.release(session)
