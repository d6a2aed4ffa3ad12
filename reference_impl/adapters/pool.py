"""A small connection pool shared by the SQL stores.

Each unit of work takes a connection and gives it back; a connection serves one thread at a
time. One that cannot be reused (closed, broken, or left inside a transaction) is closed instead
of going back to the pool, so the next unit of work never inherits another's state.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar


class _Connection(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=_Connection)


class ConnectionPool(Generic[C]):
    def __init__(
        self,
        connect: Callable[[], C],
        reusable: Callable[[C], bool],
        on_closed: Callable[[], Exception],
        max_idle: int,
    ) -> None:
        self._connect = connect
        self._reusable = reusable
        self._on_closed = on_closed
        self._max_idle = max_idle
        self._lock = threading.Lock()
        self._idle: list[C] = []
        self._closed = False

    def acquire(self) -> C:
        with self._lock:
            if self._closed:
                raise self._on_closed()
            while self._idle:
                conn = self._idle.pop()
                if self._reusable(conn):
                    return conn
                conn.close()
        return self._connect()

    def release(self, conn: C) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self._max_idle and self._reusable(conn):
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
