"""Where a payment's time goes: the stages the run record can tell apart, and only those.

A payment passes the gateway (accepted: `received_at`), the payments worker (screening, then
the ledger reservation: the journal's `pending` entry), the posting (the journal's
`post_pending` entry, `posted_at`) and settlement (`settled_at`).

Screening is timed only when the run had compliance checks (the record's `decisions` table has
rows): it ends at the payment's last decision at or before its reservation (`decisions.at`),
and `reserve` runs from there to the reservation. Without checks the default screening rules
run inline in the payments worker and leave no timestamp, so screening and the reservation are
one stage, the wait for a payments worker included; nothing is estimated to split them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import pandas as pd

from reports.audit_vectors import encode, encode_scoped
from reports.metrics import KeyTimes, key_times

GATEWAY = ("gateway", "first send to accepted (received_at): network, queue, checks, commit")
POST = ("post", "reservation to posting (journal post_pending entry)")
SETTLEMENT = ("settlement", "posted to settled (cut-off, file, statement, reconciliation)")
STAGES = (
    GATEWAY,
    ("screening + reserve", "accepted to the ledger reservation (journal pending entry)"),
    POST,
    SETTLEMENT,
)
"""The stages of a run without compliance checks (no decisions in the record)."""
CHECKED_STAGES = (
    GATEWAY,
    ("screening", "accepted to the last check decision at or before the reservation"),
    ("reserve", "last check decision to the ledger reservation (journal pending entry)"),
    POST,
    SETTLEMENT,
)
"""The stages of a run with compliance checks: screening timed by the checks' decisions."""
NOT_RECORDED = (
    "Screening cannot be timed apart from the reservation in this run: it had no compliance "
    "checks (the record has no decisions), so screening is the default rules, run inline in "
    "the payments worker with no timestamp of their own. 'screening + reserve' includes the "
    "wait for a payments worker, the screening and the reservation's commit."
)
FROM_DECISIONS = (
    "Screening is timed by the compliance checks' decisions: from acceptance to the payment's "
    "last decision at or before its reservation (a payment never reserved: its last decision; "
    "an operator's review of a held payment counts, so a held payment's screening includes the "
    "wait for the review). 'reserve' is from that decision to the reservation: with the checks "
    "in parallel, the wait for a payments worker to act on it (or on the payment, when the "
    "checks decided before a worker read it) and the commit; with the "
    "checks in sequence the decisions and the reservation carry one time, so 'reserve' is 0 "
    "and 'screening' includes the wait for a payments worker. A payment counts in a stage only "
    "when the record times both of its ends."
)


class Stage(NamedTuple):
    name: str
    meaning: str
    seconds: np.ndarray


def has_decisions(tables: Mapping[str, pd.DataFrame]) -> bool:
    """Whether the record can time screening: the run had checks and they decided something."""
    decisions = tables.get("decisions")
    return decisions is not None and len(decisions) > 0


def note(tables: Mapping[str, pd.DataFrame]) -> str:
    """What the breakdown can and cannot tell apart in this record."""
    return FROM_DECISIONS if has_decisions(tables) else NOT_RECORDED


def _entry_time(
    journal: pd.DataFrame, kind: str, journal_payment: np.ndarray, n: int
) -> np.ndarray:
    """Per payment code: the first journal entry of `kind` for it, or NaN."""
    rows = (journal["kind"] == kind).to_numpy() & (journal["payment_id"] != "").to_numpy()
    out = np.full(n, np.inf)
    np.minimum.at(out, journal_payment[rows], journal["at"].to_numpy(dtype=float)[rows])
    out[np.isinf(out)] = np.nan
    return out


def _screened(decisions: pd.DataFrame, codes: np.ndarray, reserved: np.ndarray) -> np.ndarray:
    """Per payment code: its last decision at or before its reservation (never reserved: its
    last decision), or NaN. A decision after the reservation (announced again, or a check that
    answered after the timeout let the payment on) held nothing up."""
    at = decisions["at"].to_numpy(dtype=float)
    until = reserved[codes]
    keep = np.isnan(until) | (at <= until)
    out = np.full(len(reserved), -np.inf)
    np.maximum.at(out, codes[keep], at[keep])
    out[np.isinf(out)] = np.nan
    return out


def stages(tables: Mapping[str, pd.DataFrame], times: KeyTimes | None = None) -> list[Stage]:
    """Per stage, the seconds each payment that completed the stage spent in it; with the
    checks' decisions in `tables`, screening and the reservation apart."""
    payments, journal = tables["payments"], tables["journal"]
    decisions = tables["decisions"] if has_decisions(tables) else None
    times = key_times(tables) if times is None else times
    scoped = [payments, journal] + ([] if decisions is None else [decisions])
    tenants, _ = encode(*(t["tenant"] for t in scoped))
    codes, n = encode_scoped(*((c, t["payment_id"]) for c, t in zip(tenants, scoped, strict=True)))
    pp, pj = codes[0], codes[1]
    sent = times.first_sent[times.payment_key]
    received = payments["received_at"].to_numpy(dtype=float)
    reserved_by_code = _entry_time(journal, "pending", pj, n)
    reserved = reserved_by_code[pp]
    posted = _entry_time(journal, "post_pending", pj, n)[pp]
    settled = payments["settled_at"].to_numpy(dtype=float)
    named: tuple[tuple[str, str], ...] = STAGES
    spans = [(sent, received), (received, reserved), (reserved, posted), (posted, settled)]
    if decisions is not None:
        screened = _screened(decisions, codes[2], reserved_by_code)[pp]
        named = CHECKED_STAGES
        spans[1:2] = [(received, screened), (screened, reserved)]
    out = []
    for (name, meaning), (start, end) in zip(named, spans, strict=True):
        seconds = end - start
        out.append(Stage(name, meaning, seconds[~np.isnan(seconds)]))
    return out
