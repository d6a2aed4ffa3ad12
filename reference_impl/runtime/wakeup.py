"""Waking idle consumers when new events commit, instead of polling the log in a tight loop.

`Wakeup` is the in-process signal: a generation counter under a condition variable, so a
notify that lands between a consumer's empty poll and its wait is never missed (the consumer
waits only while the generation is still the one it saw before polling).

Across processes, PostgreSQL's LISTEN/NOTIFY carries the signal: `PgSignal` relays local
notifies to `NOTIFY` (coalesced by one sender thread, so a burst of commits costs one round trip,
not one per payment) and a listener connection turns every `NOTIFY` on the channel back into a
local notify. A NOTIFY is delivered only to listeners that are connected, so consumers never rely
on it alone: they still poll at an idle interval, and a missed signal costs latency, not data.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger(__name__)


class Wakeup:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._generation = 0
        self._relay: PgSignal | None = None

    @property
    def generation(self) -> int:
        return self._generation

    def notify(self) -> None:
        """New events committed: wake the local consumers and, if bridged, other processes."""
        self.notify_local()
        if self._relay is not None:
            self._relay.send()

    def notify_local(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def wait(self, seen: int, timeout: float) -> None:
        """Return when the generation moves past `seen`, or after `timeout` seconds."""
        with self._cond:
            self._cond.wait_for(lambda: self._generation != seen, timeout)

    def bridge(self, relay: PgSignal) -> None:
        self._relay = relay


def channel_for(schema: str | None) -> str:
    """One channel per schema, so isolated test schemas do not wake each other's consumers."""
    return f"testbed_events_{schema}" if schema else "testbed_events"


class PgSignal:
    """LISTEN/NOTIFY on one channel, relayed to and from a local `Wakeup`."""

    def __init__(self, conninfo: str, channel: str, wakeup: Wakeup) -> None:
        self._conninfo = conninfo
        self._channel = channel
        self._wakeup = wakeup
        self._pending = threading.Event()
        self._stopped = threading.Event()
        self._threads = [
            threading.Thread(target=self._send_loop, name="pg-notify", daemon=True),
            threading.Thread(target=self._listen_loop, name="pg-listen", daemon=True),
        ]

    def start(self) -> None:
        self._wakeup.bridge(self)
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stopped.set()
        self._pending.set()

    def send(self) -> None:
        self._pending.set()

    def _connect(self) -> Any:
        import psycopg

        return psycopg.connect(self._conninfo, autocommit=True)

    def _send_loop(self) -> None:
        conn: Any = None
        while not self._stopped.is_set():
            self._pending.wait()
            if self._stopped.is_set():
                break
            self._pending.clear()
            try:
                if conn is None or conn.closed:
                    conn = self._connect()
                conn.execute(f"NOTIFY {self._channel}")
            except Exception as e:  # the database is down: consumers fall back to polling
                log.warning("NOTIFY %s failed: %s", self._channel, e)
                conn = None
                self._stopped.wait(1.0)
        if conn is not None:
            conn.close()

    def _listen_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                with self._connect() as conn:
                    conn.execute(f"LISTEN {self._channel}")
                    while not self._stopped.is_set():
                        # The timeout lets the loop see `stop()`; each batch of NOTIFYs is one wake.
                        for _ in conn.notifies(timeout=0.5, stop_after=1):
                            self._wakeup.notify_local()
            except Exception as e:
                log.warning("LISTEN %s failed: %s", self._channel, e)
                self._stopped.wait(1.0)
