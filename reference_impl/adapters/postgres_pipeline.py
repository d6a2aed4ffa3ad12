"""A unit of work's statements on libpq's pipeline, sent in one write with one Sync per round trip.

psycopg's own pipeline mode hands each statement to the socket as it is executed and polls the
socket twice per statement, and it adds two round trips per transaction: a Sync right behind
`BEGIN` (to learn the transaction status) and another when the pipeline is left. For a ledger
transfer that made four round trips, 14 `sendto` and 28 `poll` calls, and psycopg's
per-statement machinery was most of the client's CPU (docs/ledger.md, "PostgreSQL throughput").

Here statements wait in a Python list until the caller needs a result (a read, the COMMIT);
then they go to libpq, prepared once per connection, with a Sync behind the last, and leave in
one flush (a round trip larger than libpq's 64 kB output buffer, batches of hundreds of
transfers, starts to leave while it is handed over, within the same call). Between round trips
the server holds no statement of this client without the Sync behind it, so a client stopped
there is idle in its transaction and the server's idle-in-transaction timeout releases its
locks (docs/consumers.md). Parameters are dumped and
rows loaded by psycopg's own adapters (`Transformer`), as its cursors do, so values cross the
wire exactly as before.
"""

from __future__ import annotations

import re
import select
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg import errors, pq
from psycopg.adapt import PyFormat, Transformer

Row = tuple[Any, ...]
_PLACEHOLDER = re.compile(r"%[sb]")
_FORMATS = {"%s": PyFormat.AUTO, "%b": PyFormat.BINARY}
_PREPARED_MAX = 200
"""Statements prepared per connection; more run unprepared. psycopg's dumpers pick an integer's
type by its size, so one query can take a few prepared forms; the stores' queries are a fixed
set, so this bound only matters for a caller that builds queries on the fly."""
_BEGIN = b"BEGIN"
_COMMIT = b"COMMIT"
_ROLLBACK = b"ROLLBACK"

_FATAL_ERROR = pq.ExecStatus.FATAL_ERROR
_PIPELINE_SYNC = pq.ExecStatus.PIPELINE_SYNC
_IDLE = pq.TransactionStatus.IDLE
_CONNECTION_OK = pq.ConnStatus.OK
_PIPELINE_OFF = pq.PipelineStatus.OFF


class _Query:
    """A query in psycopg's `%s`/`%b` style, as the server takes it: `$n` and a format each."""

    __slots__ = ("formats", "text")

    def __init__(self, query: str) -> None:
        parts = _PLACEHOLDER.split(query)
        if "%" in "".join(parts):
            raise ValueError(f"only %s and %b placeholders are supported: {query!r}")
        self.formats = [_FORMATS[m] for m in _PLACEHOLDER.findall(query)]
        text = parts[0] + "".join(f"${i}{p}" for i, p in enumerate(parts[1:], 1))
        self.text = text.encode()


_queries: dict[str, _Query] = {}


def _query(query: str) -> _Query:
    q = _queries.get(query)
    if q is None:
        q = _queries[query] = _Query(query)
    return q


class Session:
    """A connection with the statements it has prepared and the adapters it dumps and loads with."""

    __slots__ = ("conn", "names", "prepared", "tx")

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.prepared: dict[tuple[bytes, tuple[int, ...]], bytes] = {}
        self.names = 0
        self.tx = Transformer(conn)

    def close(self) -> None:
        self.conn.close()

    @property
    def reusable(self) -> bool:
        """Open (neither closed nor broken), out of pipeline mode, outside a transaction."""
        pgconn = self.conn.pgconn
        return (
            pgconn.status == _CONNECTION_OK
            and pgconn.pipeline_status == _PIPELINE_OFF
            and pgconn.transaction_status == _IDLE
        )


class Pipeline:
    """One transaction's statements: queued by `execute`, sent and answered by `sync`.

    The first `sync` takes a session from `acquire` and begins the transaction; `end` rolls back
    whatever was not committed and gives the session back.
    """

    def __init__(self, acquire: Callable[[], Session]) -> None:
        self._acquire = acquire
        self.session: Session | None = None
        self._queued: list[tuple[_Query | bytes, Sequence[Any], list[Row]]] = []

    def execute(self, query: str, params: Sequence[Any]) -> list[Row]:
        """Queue a statement; the list it returns holds its rows once `sync` has returned."""
        rows: list[Row] = []
        self._queued.append((_query(query), params, rows))
        return rows

    def commit(self) -> None:
        """COMMIT what was sent and queued, if a transaction was begun or anything is queued."""
        if self.session is None and not self._queued:
            return
        self._queued.append((_COMMIT, (), []))
        self.sync()

    def sync(self) -> None:
        """Send the queued statements and a Sync behind them; wait for every answer.

        Raises the first statement's error after the server has answered the Sync (the
        statements behind a failed one are skipped by the server).
        """
        session = self.session
        if session is None:
            session = self.session = self._acquire()
            session.conn.pgconn.enter_pipeline_mode()
            self._queued.insert(0, (_BEGIN, (), []))
        queued, self._queued = self._queued, []
        pgconn = session.conn.pgconn
        try:
            pending = [self._send(session, q, params) for q, params, _ in queued]
            pgconn.pipeline_sync()
            _flush(pgconn)
            error = self._receive(session, pending, [rows for _, _, rows in queued])
        except BaseException:
            session.close()  # unknown state: an answer half read, a Sync never sent
            raise
        if error is not None:
            raise errors.error_from_result(error, encoding=session.conn.info.encoding)

    def end(self) -> Session | None:
        """Roll back what was not committed, leave pipeline mode; the session, if one was used."""
        session = self.session
        self._queued = []
        if session is None:
            return None
        conn = session.conn
        try:
            if not conn.closed and not conn.broken:
                if conn.pgconn.transaction_status != _IDLE:
                    self._queued.append((_ROLLBACK, (), []))
                    self.sync()
                conn.pgconn.exit_pipeline_mode()
        except psycopg.Error:
            session.close()  # a session in an unknown state never goes back to the pool
        finally:
            self.session = None
        return session

    @staticmethod
    def _send(session: Session, query: _Query | bytes, params: Sequence[Any]) -> bytes | None:
        """Hand one statement to libpq; the name of a statement it prepares first, if any."""
        pgconn = session.conn.pgconn
        if isinstance(query, bytes):  # BEGIN, COMMIT, ROLLBACK
            pgconn.send_query_params(query, None)
            return None
        tx = session.tx
        values = tx.dump_sequence(params, query.formats)
        types = tx.types or ()
        formats = tx.formats
        key = (query.text, types)
        name = session.prepared.get(key)
        new = None
        if name is None:
            if len(session.prepared) >= _PREPARED_MAX:
                pgconn.send_query_params(query.text, values, types, formats)
                return None
            session.names += 1
            name = new = b"tb_%d" % session.names
            session.prepared[key] = name
            pgconn.send_prepare(name, query.text, types)
        pgconn.send_query_prepared(name, values, formats)
        return new

    @staticmethod
    def _receive(
        session: Session, pending: list[bytes | None], rows: list[list[Row]]
    ) -> pq.abc.PGresult | None:
        """Read every statement's results and the Sync's; the first error, if any."""
        pgconn = session.conn.pgconn
        tx = session.tx
        error: pq.abc.PGresult | None = None
        for prepared, into in zip(pending, rows, strict=True):
            if prepared is not None:
                res = _result(pgconn)
                if res.status != pq.ExecStatus.COMMAND_OK:  # not prepared: prepare it next time
                    session.prepared = {k: v for k, v in session.prepared.items() if v != prepared}
                    if error is None and res.status == _FATAL_ERROR:
                        error = res
            res = _result(pgconn)
            status = res.status
            if status == pq.ExecStatus.TUPLES_OK:
                if res.ntuples:
                    tx.set_pgresult(res)
                    into.extend(tx.load_rows(0, res.ntuples, tuple))
            elif error is None and status == _FATAL_ERROR:
                error = res
        res = _result(pgconn, sync=True)
        if res.status != _PIPELINE_SYNC:
            raise psycopg.InternalError(f"expected the answer to a Sync, got {res.status!r}")
        return error


def _wait(fd: int, events: int) -> int:
    poller = select.poll()
    poller.register(fd, events)
    return sum(revents for _, revents in poller.poll())


def _flush(pgconn: pq.abc.PGconn) -> None:
    """Send what libpq holds. While the socket is full, read whatever the server answers
    meanwhile: a server blocked on sending to us would stop reading what we send (libpq's
    advice for non-blocking connections, which psycopg's are)."""
    while pgconn.flush():  # 1: libpq holds more than the socket took
        if _wait(pgconn.socket, select.POLLIN | select.POLLOUT) & select.POLLIN:
            pgconn.consume_input()


def _result(pgconn: pq.abc.PGconn, *, sync: bool = False) -> pq.abc.PGresult:
    """The next result; for a statement, also the end of its results that libpq marks (None)."""
    while pgconn.is_busy():
        _wait(pgconn.socket, select.POLLIN)
        pgconn.consume_input()
    res = pgconn.get_result()
    if res is None:
        raise psycopg.InternalError("the server's answers ran out before the Sync's")
    if not sync and pgconn.get_result() is not None:
        raise psycopg.InternalError("a statement answered with more than one result")
    return res
