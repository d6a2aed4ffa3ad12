"""Where a payment's time goes: the stages the run record can tell apart, and only those.

A payment passes the gateway (accepted: `received_at`), the payments worker (screening, then
the ledger reservation: the journal's `pending` entry), the posting (the journal's
`post_pending` entry, `posted_at`) and settlement (`settled_at`). The record has no timestamp
for the screening decisions, so screening and the reservation are one stage here, and the wait
for a payments worker is part of it; nothing is estimated to split them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import pandas as pd

from reports.audit_vectors import encode, encode_scoped
from reports.metrics import KeyTimes, key_times

STAGES = (
    ("gateway", "first send to accepted (received_at): network, queue, checks, commit"),
    ("screening + reserve", "accepted to the ledger reservation (journal pending entry)"),
    ("post", "reservation to posting (journal post_pending entry)"),
    ("settlement", "posted to settled (cut-off, file, statement, reconciliation)"),
)
NOT_RECORDED = (
    "Screening is not timed apart from the reservation: the run record has no timestamp for "
    "the screening decisions, so 'screening + reserve' includes the wait for a payments worker, "
    "the screening and the reservation's commit."
)


class Stage(NamedTuple):
    name: str
    meaning: str
    seconds: np.ndarray


def _entry_time(
    journal: pd.DataFrame, kind: str, journal_payment: np.ndarray, n: int
) -> np.ndarray:
    """Per payment code: the first journal entry of `kind` for it, or NaN."""
    rows = (journal["kind"] == kind).to_numpy() & (journal["payment_id"] != "").to_numpy()
    out = np.full(n, np.inf)
    np.minimum.at(out, journal_payment[rows], journal["at"].to_numpy(dtype=float)[rows])
    out[np.isinf(out)] = np.nan
    return out


def stages(tables: Mapping[str, pd.DataFrame], times: KeyTimes | None = None) -> list[Stage]:
    """Per stage, the seconds each payment that completed the stage spent in it."""
    payments, journal = tables["payments"], tables["journal"]
    times = key_times(tables) if times is None else times
    (tp, tj), _ = encode(payments["tenant"], journal["tenant"])
    (pp, pj), n = encode_scoped((tp, payments["payment_id"]), (tj, journal["payment_id"]))
    sent = times.first_sent[times.payment_key]
    received = payments["received_at"].to_numpy(dtype=float)
    reserved = _entry_time(journal, "pending", pj, n)[pp]
    posted = _entry_time(journal, "post_pending", pj, n)[pp]
    settled = payments["settled_at"].to_numpy(dtype=float)
    spans = [(sent, received), (received, reserved), (reserved, posted), (posted, settled)]
    out = []
    for (name, meaning), (start, end) in zip(STAGES, spans, strict=True):
        seconds = end - start
        out.append(Stage(name, meaning, seconds[~np.isnan(seconds)]))
    return out
