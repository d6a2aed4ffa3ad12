"""One thread that runs a store's units of work in order, for a store that runs them one at a
time anyway (SQLite: one store-wide lock in front of `BEGIN IMMEDIATE`).

The threadpool hands each request to a thread of its own: a wake-up per request, and up to 40
threads queueing on that one lock and taking turns at the GIL. Here one thread takes every unit
of work queued since its last wake-up and runs them one after the other (each its own
transaction and commit, as before), answering each as soon as its own is done. Under
`python -m reference_impl.api_bench --workers 2` on SQLite this cut the gateway's CPU per
payment by a fifth to a quarter (docs/serve.md). The gateway uses it only when its deps say so
(`GatewayDeps.store_thread`).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

import anyio

T = TypeVar("T")

IDLE_S = 10.0
"""The thread ends after this long without work; the next unit of work starts a new one."""

_Outcome = tuple["asyncio.Future[Any]", Any, BaseException | None]


class StoreThread:
    def __init__(self, name: str = "store") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._queued = threading.Condition(self._lock)
        self._pending: deque[tuple[Callable[[], Any], asyncio.Future[Any]]] = deque()
        self._running = False

    async def run(self, work: Callable[[], T]) -> T:
        """`work()`'s result (or exception) once the thread has run it, after everything
        queued before it.

        As with the threadpool's hop (anyio's `to_thread`), a cancel scope's cancellation
        reaches the caller only once its work has ended: queued work always runs, and may
        commit, so the caller must not go on as if it had not.
        """
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        with self._lock:
            self._pending.append((work, future))
            if self._running:
                self._queued.notify()
            else:
                self._running = True
                threading.Thread(target=self._serve, name=self._name, daemon=True).start()
        with anyio.CancelScope(shield=True):
            result = await future
        return result

    def _serve(self) -> None:
        while True:
            with self._lock:
                if not self._pending:
                    self._queued.wait(IDLE_S)
                if not self._pending:
                    self._running = False
                    return
                jobs = list(self._pending)
                self._pending.clear()
            for work, future in jobs:
                try:
                    outcome: _Outcome = (future, work(), None)
                except BaseException as e:  # the caller's to handle, whatever it is
                    outcome = (future, None, e)
                # Each answer as soon as its own work is done: the next one may wait seconds
                # for another process's write lock. A closed loop raises RuntimeError: nobody
                # is waiting for this answer.
                with contextlib.suppress(RuntimeError):
                    future.get_loop().call_soon_threadsafe(_settle, outcome)


def _settle(outcome: _Outcome) -> None:
    future, result, error = outcome
    if future.done():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)
