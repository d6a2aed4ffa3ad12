"""Stage timings of the real processes: where their time went, for `testbed calibrate`.

Off unless the process is started with `TESTBED_TIMINGS=DIR` (the load runtime sets it). Then
each process appends CSV rows to `DIR/<pid>.csv`, buffered and written by a thread once a second
and at exit, so a SIGKILLed process loses at most its last second. Three kinds of row, each
naming what the sim charges for it (sim/service_times.py):

- `request`: one POST /v1/payments answered 202 by the gateway: `seconds` from the handler's
  start to the answer, `commit` the store's commit inside it, `key` the tenant and key (to join
  the client's request row);
- `step`: one consumer engine step that did `Work` (a batch, a cut-off, a statement): `stage`,
  the items it worked on and skipped, `seconds` spent outside commits and external calls (fetch,
  handler, SQL), `commit` its commits' time, `cpu` its thread's CPU time (waiting for a core or
  the disk not included);
- `commit`: one commit of `items` rows (gateway and consumers alike): the ledger's part, and in
  `seconds` how long the store held its write lock for the transaction (SQLite; NaN elsewhere).

Wall-clock `at` (epoch seconds, when the row's work ended) is the run record's clock in load mode.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

ENV = "TESTBED_TIMINGS"
TIMINGS_FILE = "timings.parquet"
"""What a load run keeps of them, next to its run record."""
COLUMNS = ("kind", "stage", "at", "seconds", "commit", "cpu", "items", "skipped", "key")
FLUSH_EVERY_S = 1.0


class Timings:
    """One process's recorder; `enabled` is False (and every call a no-op) without a directory."""

    def __init__(self, directory: str | None) -> None:
        self.enabled = bool(directory)
        self._path = Path(directory or ".") / f"{os.getpid()}.csv"
        self._rows: list[str] = []
        self._lock = threading.Lock()
        self._local = threading.local()
        if self.enabled:
            # A thread, not only atexit: a gateway worker dies with its manager (a lifeline
            # SIGKILL) without running exit handlers.
            threading.Thread(target=self._flush_often, name="timings", daemon=True).start()
            atexit.register(self.flush)

    def _flush_often(self) -> None:
        while self.enabled:
            time.sleep(FLUSH_EVERY_S)
            self.flush()

    def request(self, key: str, seconds: float, commit: float) -> None:
        self._add(f"request,gateway,{time.time():.6f},{seconds:.7f},{commit:.7f},nan,1,0,{key}")

    def step(
        self, stage: str, items: int, skipped: int, seconds: float, commit: float, cpu: float
    ) -> None:
        self._add(
            f"step,{stage},{time.time():.6f},{seconds:.7f},{commit:.7f},{cpu:.7f},"
            f"{items},{skipped},"
        )

    def held(self, seconds: float) -> None:
        """The store held its write lock `seconds` for the transaction this thread just
        committed (SQLite: the whole transaction, since BEGIN IMMEDIATE takes it first)."""
        if self.enabled:
            self._local.held = seconds

    def commit(self, items: int, seconds: float) -> None:
        held = getattr(self._local, "held", math.nan)
        self._local.held = math.nan
        self._add(f"commit,,{time.time():.6f},{held:.7f},{seconds:.7f},nan,{items},0,")

    def _add(self, row: str) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._rows.append(row)

    def flush(self) -> None:
        with self._lock:
            rows, self._rows = self._rows, []
        if not rows:
            return
        try:
            with self._path.open("a") as f:
                f.write("\n".join(rows) + "\n")
        except OSError as e:  # timings are never worth failing a request for
            log.warning("timings: cannot write %s (%s); recording stops", self._path, e)
            self.enabled = False


_timings: Timings | None = None


def timings() -> Timings:
    """This process's recorder, made on first use from the environment."""
    global _timings
    if _timings is None:
        _timings = Timings(os.environ.get(ENV))
    return _timings


def collect(directory: Path) -> pd.DataFrame:
    """Every process's rows from `directory`, ordered by time (a key may hold commas)."""
    import pandas as pd  # the load runtime's side only: the processes never load pandas

    rows = [
        line.split(",", len(COLUMNS) - 1)
        for path in sorted(directory.glob("*.csv"))
        for line in path.read_text().splitlines()
        if line.count(",") >= len(COLUMNS) - 1
    ]
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    for column in ("at", "seconds", "commit", "cpu"):
        frame[column] = frame[column].astype("float64")
    for column in ("items", "skipped"):
        frame[column] = frame[column].astype("int64")
    return frame.sort_values(["at", "kind"], kind="stable", ignore_index=True)
