"""A TCP proxy in front of one link of a load run, through which the run's network faults act.

This machine's kernel has no netem and the run has no network namespaces, so a load run that
has latency, loss or partition faults puts a proxy in front of the links they can act on: the
clients' link to the gateway (the generator connects to the proxy) and, on PostgreSQL, the
services' link to the database (the processes' store URL names the proxy). The proxy forwards
bytes both ways and, while a fault window is open:

- **latency**: holds every chunk `extra` seconds before passing it on (each direction, so a
  round trip gains twice `extra`); chunks keep their order and several are in flight at once;
- **loss**: with `probability` per chunk the chunk is not passed on and the connection is cut
  (both sides reset). On TCP a message cannot vanish from the middle of a stream: what a client
  sees of a lost request or a lost answer is the reset, after which it cannot know whether the
  request was applied: as in the sim, it retries with the same idempotency key;
- **partition**: holds every chunk in the cut direction until the window closes, as a network
  that drops packets does to a TCP connection that outlives the cut (the sender retransmits,
  and it all arrives when the link heals); clients time out meanwhile.

The proxy runs an asyncio loop on a thread of the supervising process; it is only started for a
run that needs it, since it costs the forwarded traffic a hop through Python.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

UP, DOWN = "up", "down"
"""Directions: toward the upstream (client to server), and back."""
CHUNK = 65536
T = TypeVar("T")


@dataclass
class LinkCounters:
    connections: int = 0
    cut: int = 0
    """Connections reset by loss."""
    held: int = 0
    """Chunks held back by a partition."""


class LinkProxy:
    """Forwards 127.0.0.1:`port` to `upstream`; faults are switched from any thread."""

    def __init__(self, name: str, upstream: tuple[str, int], rng: random.Random) -> None:
        self.name = name
        self.upstream = upstream
        self.port = 0
        self.counters = LinkCounters()
        self._rng = rng
        self._extra = 0.0
        self._loss = 0.0
        self._extras: list[float] = []
        self._losses: list[float] = []
        self._holds = {UP: 0, DOWN: 0}
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._open: dict[str, asyncio.Event] = {}
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"proxy-{name}")
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    # -- life -------------------------------------------------------------------------------
    def start(self) -> int:
        """Listen on a free port of 127.0.0.1; the port."""
        self._thread.start()
        self._server = self._call(self._listen())
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> LinkProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults (any thread; overlapping windows add up) ----------------------------------------
    def add_latency(self, extra: float) -> None:
        with self._lock:
            self._extras.append(extra)
            self._extra = sum(self._extras)

    def remove_latency(self, extra: float) -> None:
        with self._lock:
            self._extras.remove(extra)
            self._extra = sum(self._extras)

    def add_loss(self, probability: float) -> None:
        with self._lock:
            self._losses.append(probability)
            self._loss = _either(self._losses)

    def remove_loss(self, probability: float) -> None:
        with self._lock:
            self._losses.remove(probability)
            self._loss = _either(self._losses)

    def hold(self, direction: str) -> None:
        """Stop passing chunks on in `direction` (UP or DOWN) until as many `release`s."""
        with self._lock:
            self._holds[direction] += 1
            if self._holds[direction] == 1:
                self._loop.call_soon_threadsafe(self._open[direction].clear)

    def release(self, direction: str) -> None:
        with self._lock:
            self._holds[direction] -= 1
            if self._holds[direction] == 0:
                self._loop.call_soon_threadsafe(self._open[direction].set)

    # -- the loop -----------------------------------------------------------------------------
    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _listen(self) -> asyncio.Server:
        self._open = {UP: asyncio.Event(), DOWN: asyncio.Event()}
        for event in self._open.values():
            event.set()
        return await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._conns):
            task.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        self.counters.connections += 1
        try:
            try:
                server_r, server_w = await asyncio.open_connection(*self.upstream)
            except OSError:
                _abort(client_w)
                return
            both = (client_w, server_w)
            try:
                await asyncio.gather(
                    self._pipe(client_r, server_w, UP, both),
                    self._pipe(server_r, client_w, DOWN, both),
                )
            finally:
                for writer in both:
                    writer.close()
        finally:
            self._conns.discard(task)

    async def _pipe(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        direction: str,
        both: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        sender = asyncio.create_task(self._send(queue, dst, direction))
        try:
            while data := await src.read(CHUNK):
                if self._loss and self._rng.random() < self._loss:
                    self.counters.cut += 1
                    for writer in both:
                        _abort(writer)
                    return
                queue.put_nowait((loop.time() + self._extra, data))
        except (ConnectionError, OSError):
            for writer in both:
                _abort(writer)
        finally:
            queue.put_nowait((0.0, b""))  # the end: the sender half-closes once the rest is out
            with contextlib.suppress(Exception):
                await sender

    async def _send(
        self, queue: asyncio.Queue[tuple[float, bytes]], dst: asyncio.StreamWriter, direction: str
    ) -> None:
        loop = asyncio.get_running_loop()
        gate = self._open[direction]
        try:
            while True:
                due, data = await queue.get()
                if not data:
                    if dst.can_write_eof():
                        dst.write_eof()
                    return
                if not gate.is_set():
                    self.counters.held += 1
                    await gate.wait()
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError, RuntimeError):
            _abort(dst)


def _either(probabilities: list[float]) -> float:
    """The chance that at least one of independent losses strikes."""
    kept = 1.0
    for p in probabilities:
        kept *= 1.0 - p
    return 1.0 - kept


def _abort(writer: asyncio.StreamWriter) -> None:
    transport = writer.transport
    if not transport.is_closing():
        transport.abort()
