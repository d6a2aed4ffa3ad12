"""One generator process's record of its attempts: rows, HDR histograms and late-send counts.

While the traffic runs, recording an attempt is a handful of list appends (a column per field of
the run record's requests table, times in schedule seconds). When the process is done, `close`
turns the columns into the table (times in seconds since the run's epoch t0: `offset` is the
traffic start minus t0) and records every value into HDR histograms, so the histogram work never
competes with sending.

Every attempt is recorded exactly once in the `latency` histogram, measured from its intended
send time (wrk2's rule, so a stalled server cannot hide behind the requests it delayed): an
answered attempt at its answer, a timed-out or failed one when the client gave up on it, and one
never answered or never sent before the run ended at that end, a lower bound of its latency.
`service` is the closed-loop view, from the actual send to the answer, for sent attempts only;
`send_lag` is how late each send started.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from hdrh.histogram import HdrHistogram

from loadtest.attempts import Attempt
from loadtest.histogram import new_histogram, record_seconds
from loadtest.pacing import Arrival
from reports.record import OPTIONAL_SCHEMAS, SCHEMAS

HISTOGRAMS = ("latency", "service", "send_lag")


@dataclass(frozen=True)
class Recorded:
    """A closed record: the requests table, the histograms and the late-send counts."""

    table: pa.Table
    labels: pa.Table
    """The run record's labels table: the injected fraud's keys."""
    histograms: dict[str, HdrHistogram]
    sent: int
    unsent: int
    late_idle: int
    """Sends that started late although a user was idle: the generator fell behind."""
    late_waited: int
    """Sends that started late because every user was busy with an earlier attempt."""


class Recorder:
    def __init__(self, late_after: float) -> None:
        self.late_after = late_after
        self.key: list[str] = []
        self.tenant: list[str] = []
        self.attempt: list[int] = []
        self.intended: list[float] = []
        self.sent: list[float] = []
        self.done: list[float] = []
        self.status: list[int] = []
        self.payment_id: list[str] = []
        self.outcome: list[str] = []
        self.waited: list[bool] = []
        self.labels: list[tuple[str, str, str, str]] = []

    def label(self, key: str, arrival: Arrival) -> None:
        """The request `key` is an injected fraud payment."""
        self.labels.append((key, arrival.tenant, arrival.pattern, arrival.case))

    def record(self, a: Attempt) -> None:
        """Add the finished attempt `a` (sent NaN: never sent; done NaN: never answered)."""
        req = a.request
        self.key.append(req.key)
        self.tenant.append(req.arrival.tenant)
        self.attempt.append(a.n)
        self.intended.append(a.intended)
        self.sent.append(a.sent)
        self.done.append(a.done)
        self.status.append(a.status)
        self.payment_id.append(a.payment_id)
        self.outcome.append(a.outcome)
        self.waited.append(a.waited)

    def __len__(self) -> int:
        return len(self.key)

    def close(self, offset: float, end: float) -> Recorded:
        """The record, with schedule time `end` standing in for answers that never came."""
        intended = np.array(self.intended, dtype=np.float64)
        sent = np.array(self.sent, dtype=np.float64)
        done = np.array(self.done, dtype=np.float64)
        waited = np.array(self.waited, dtype=np.bool_)
        closed = np.where(np.isnan(done), end, done)
        was_sent = ~np.isnan(sent)
        histograms = {name: new_histogram() for name in HISTOGRAMS}
        for name, values in (
            ("latency", closed - intended),
            ("service", (closed - sent)[was_sent]),
            ("send_lag", (sent - intended)[was_sent]),
        ):
            histogram = histograms[name]
            for v in values.tolist():
                record_seconds(histogram, v)
        late = np.zeros(len(sent), dtype=np.bool_)
        late[was_sent] = (sent - intended)[was_sent] > self.late_after
        columns = {
            "key": self.key, "tenant": self.tenant, "attempt": self.attempt,
            "intended_at": intended + offset, "sent_at": sent + offset, "done_at": done + offset,
            "status": self.status, "payment_id": self.payment_id, "outcome": self.outcome,
        }  # fmt: skip
        schema = SCHEMAS["requests"]
        table = pa.Table.from_arrays(
            [pa.array(columns[f.name], type=f.type) for f in schema], schema=schema
        )
        labels = OPTIONAL_SCHEMAS["labels"]
        labelled = pa.Table.from_arrays(
            [pa.array([row[i] for row in self.labels], type=pa.string()) for i in range(4)],
            schema=labels,
        )
        return Recorded(
            table, labelled, histograms, int(was_sent.sum()), int((~was_sent).sum()),
            int((late & ~waited).sum()), int((late & waited).sum()),
        )  # fmt: skip
