"""How well the compliance checks caught the injected fraud: a detection table per check.

A run with `workload.fraud` labels its fraudulent requests (the `labels` table) and a run with
checks on records each check's decisions (`decisions`), so the record alone says, per check,
which labelled payments it flagged and which legitimate ones it flagged too. Each check is
scored only on the patterns it is meant to catch (`POSITIVES`, docs/compliance.md,
"Detection"): the sanctions screen is not blamed for missing card testing.

A payment's decision by a check is that check's first decision on it (a decision announced
twice is the audit's finding, not a second vote). The population is every payment the traffic
made; a payment a check never decided (rejected before the checks, or timed out) counts as not
flagged by it. "All checks" is what the checks did together: the payment ended `held`, or
`rejected` by a check (its reason names one, a timeout included) or by an operator reviewing a
hold.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from reports.record import RunRecord

CHECKS = ("sanctions", "aml", "fraud")
ALL = "all checks"
POSITIVES: Mapping[str, frozenset[str]] = {
    "sanctions": frozenset({"sanctioned_payee"}),
    "aml": frozenset({"structuring", "mule_chain"}),
    "fraud": frozenset({"account_takeover", "card_testing", "mule_chain"}),
}
"""The label patterns each check is meant to catch; for ALL, any label is a positive."""
FLAGS = frozenset({"review", "reject"})
OPERATOR = "operator"


@dataclass(frozen=True)
class DetectionRow:
    """One check's flags against the labels; amounts in minor units (payments.amount)."""

    check: str
    payments: int
    positives: int
    flagged: int
    true_positives: int
    caught_amount: int
    """The labelled positives it flagged, summed."""
    missed_amount: int
    """The labelled positives it did not flag, summed."""
    held: int
    """Payments it flagged that ended `held` (waiting for an operator)."""

    @property
    def precision(self) -> float:
        return self.true_positives / self.flagged if self.flagged else math.nan

    @property
    def recall(self) -> float:
        return self.true_positives / self.positives if self.positives else math.nan

    @property
    def false_positive_rate(self) -> float:
        negatives = self.payments - self.positives
        return (self.flagged - self.true_positives) / negatives if negatives else math.nan

    def to_json(self) -> dict[str, Any]:
        """The row for summary.json: counts, and the rates (None where undefined)."""
        rates = {
            "precision": self.precision,
            "recall": self.recall,
            "false_positive_rate": self.false_positive_rate,
        }
        return {
            "check": self.check,
            "payments": self.payments,
            "positives": self.positives,
            "flagged": self.flagged,
            "true_positives": self.true_positives,
            "caught_amount": self.caught_amount,
            "missed_amount": self.missed_amount,
            "held": self.held,
            **{k: None if math.isnan(v) else round(v, 6) for k, v in rates.items()},
        }


def detection(record: RunRecord, traffic: np.ndarray | None = None) -> list[DetectionRow]:
    """A row per check that decided anything in the run, then ALL; [] without decisions.

    `traffic`: which payments rows count (reports.metrics.traffic_payments leaves out a load
    run's set-up); all of them when None.
    """
    decisions = record.decisions
    decisions = decisions[decisions["check"].isin((*CHECKS, OPERATOR))]
    present = [c for c in CHECKS if (decisions["check"] == c).any()]
    if not present:
        return []
    payments = record.payments
    if traffic is not None:
        payments = payments[traffic]
    ids = pd.MultiIndex.from_arrays([payments["tenant"], payments["payment_id"]])
    pattern = _patterns(payments, record.labels)
    amount = payments["amount"].to_numpy(dtype=np.int64)
    held = payments["status"].to_numpy() == "held"
    first = decisions.sort_values("at", kind="stable").drop_duplicates(
        ["tenant", "payment_id", "check"]
    )
    rows = []
    for check in present:
        mine = first[(first["check"] == check) & first["verdict"].isin(FLAGS)]
        flagged = ids.isin(pd.MultiIndex.from_arrays([mine["tenant"], mine["payment_id"]]))
        positive = np.isin(pattern, sorted(POSITIVES[check]))
        rows.append(_row(check, flagged, positive, amount, held))
    reviewed = first[first["check"] == OPERATOR]
    by_operator = ids.isin(pd.MultiIndex.from_arrays([reviewed["tenant"], reviewed["payment_id"]]))
    rejected = (payments["status"].to_numpy() == "rejected") & (
        _names_a_check(payments["reason"]) | by_operator
    )
    rows.append(_row(ALL, held | rejected, pattern != "", amount, held))
    return rows


def _patterns(payments: pd.DataFrame, labels: pd.DataFrame) -> np.ndarray:
    """Each payment's label pattern by (tenant, idempotency key); "" for a legitimate one."""
    if labels.empty or payments.empty:
        return np.full(len(payments), "", dtype=object)
    by_key = labels.drop_duplicates(["tenant", "key"]).set_index(["tenant", "key"])["pattern"]
    keys = pd.MultiIndex.from_arrays([payments["tenant"], payments["idempotency_key"]])
    found: np.ndarray = by_key.reindex(keys).fillna("").to_numpy(dtype=object)
    return found


def _names_a_check(reasons: pd.Series) -> np.ndarray:
    """Whether a rejection's reason ("check:rule; check:rule") names one of the checks."""
    pattern = r"(?:^|;)\s*(?:" + "|".join(CHECKS) + "):"
    named: np.ndarray = reasons.str.contains(pattern, regex=True).to_numpy(dtype=bool)
    return named


def _row(
    check: str, flagged: np.ndarray, positive: np.ndarray, amount: np.ndarray, held: np.ndarray
) -> DetectionRow:
    hit = flagged & positive
    return DetectionRow(
        check=check,
        payments=len(flagged),
        positives=int(positive.sum()),
        flagged=int(flagged.sum()),
        true_positives=int(hit.sum()),
        caught_amount=int(amount[hit].sum()),
        missed_amount=int(amount[positive & ~flagged].sum()),
        held=int((flagged & held).sum()),
    )
