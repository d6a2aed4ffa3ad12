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

from reports.metrics import first_sent

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


def _entry_time(journal: pd.DataFrame, kind: str, keys: pd.MultiIndex) -> np.ndarray:
    """Per payment (tenant, payment id) in `keys`: the first journal entry of `kind`, or NaN."""
    rows = journal[(journal["kind"] == kind) & (journal["payment_id"] != "")]
    at = rows.groupby(["tenant", "payment_id"], sort=False)["at"].min()
    return at.reindex(keys).to_numpy(dtype=float)


def stages(tables: Mapping[str, pd.DataFrame]) -> list[Stage]:
    """Per stage, the seconds each payment that completed the stage spent in it."""
    payments, journal = tables["payments"], tables["journal"]
    by_key = pd.MultiIndex.from_arrays([payments["tenant"], payments["idempotency_key"]])
    by_id = pd.MultiIndex.from_arrays([payments["tenant"], payments["payment_id"]])
    sent = first_sent(tables["requests"]).reindex(by_key).to_numpy(dtype=float)
    received = payments["received_at"].to_numpy(dtype=float)
    reserved = _entry_time(journal, "pending", by_id)
    posted = _entry_time(journal, "post_pending", by_id)
    settled = payments["settled_at"].to_numpy(dtype=float)
    spans = [(sent, received), (received, reserved), (reserved, posted), (posted, settled)]
    out = []
    for (name, meaning), (start, end) in zip(STAGES, spans, strict=True):
        seconds = end - start
        out.append(Stage(name, meaning, seconds[~np.isnan(seconds)]))
    return out
