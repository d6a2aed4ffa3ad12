"""Training the fraud model on generated, labelled traffic: what `testbed fraud train` runs.

The data set is the traffic a sim run of the same scenario and seed sends: the legitimate
payments drawn exactly as both runtimes draw them (loadtest/pacing.py's `arrivals`, from the
seed's "arrivals" stream) and the labelled fraud of `scenarios.fraud.fraud_schedule` (from its
"fraud" stream). The payments go through `AccountProfile` and `features` in time order, one
profile per (tenant, debtor account), exactly as the fraud consumer computes them online: a
model never sees a feature the consumer could not have computed at that moment.

`sanctioned_payee` payments are applied to the profiles (they happened) but are neither
positives nor negatives: a variant of a listed name is the sanctions check's to catch, and
nothing in the fraud features can see a name; labelling them either way would only teach the
model noise. The split is by time (the first 70% of the rows train, the rest validate), so
validation asks what deployment asks: does what was learnt from the past hold for what follows.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from reference_impl.core.fraud import (
    DEFAULT_PARAMS,
    FEATURES,
    AccountProfile,
    FeatureParams,
    FraudRules,
    features,
)

if TYPE_CHECKING:
    from reference_impl.adapters.fraud_model import FraudModel
    from scenarios.schema import Workload

NOT_FRAUD = frozenset({"sanctioned_payee"})
"""Patterns the fraud model is neither trained nor judged on (the sanctions check's job)."""
VALIDATION_SHARE = 0.3
EMPTY = AccountProfile()


class TrainingError(ValueError):
    """The data cannot train a model; the message says what to change."""


@dataclass(frozen=True, slots=True)
class LabelledPayment:
    id: str
    at: float
    tenant: str
    debtor: str
    creditor: str
    amount: int
    pattern: str = ""
    """The fraud pattern that made it; "" for a legitimate payment."""


def generated_payments(
    workload: Workload, seed: int, duration: float | None = None, payments: int | None = None
) -> tuple[list[LabelledPayment], float]:
    """(legit and fraud payments in time order, the span they cover) for `duration` seconds,
    or for as long as the first `payments` legitimate payments take (give one of the two)."""
    if (duration is None) == (payments is None):
        raise TypeError("generated_payments: give duration or payments, one of them")
    from loadtest.pacing import arrivals
    from scenarios.fraud import fraud_schedule

    legit_draws = arrivals(workload, math.inf if duration is None else duration,
                           random.Random(f"{seed}/arrivals"))  # fmt: skip
    legit = list(itertools.islice(legit_draws, payments))
    span = duration if duration is not None else (legit[-1].at if legit else 0.0)
    out = [
        LabelledPayment(f"legit-{i}", a.at, a.tenant, a.debtor, a.creditor, a.amount)
        for i, a in enumerate(legit)
    ]
    fraud = fraud_schedule(workload, span, random.Random(f"{seed}/fraud"))
    out += [
        LabelledPayment(f"fraud-{i}", f.at, f.tenant, f.debtor, f.creditor, f.amount, f.pattern)
        for i, f in enumerate(fraud)
    ]
    out.sort(key=lambda p: p.at)
    return out, span


@dataclass(frozen=True, slots=True)
class FeatureTable:
    """One row per payment the model is trained or judged on, in time order."""

    rows: list[list[float]] = field(default_factory=list)
    """Feature values in FEATURES order."""
    patterns: list[str] = field(default_factory=list)

    @property
    def labels(self) -> list[bool]:
        return [p != "" for p in self.patterns]

    def __len__(self) -> int:
        return len(self.rows)

    def slice(self, start: int, end: int | None = None) -> FeatureTable:
        return FeatureTable(self.rows[start:end], self.patterns[start:end])


def feature_table(
    payments: Iterable[LabelledPayment], params: FeatureParams = DEFAULT_PARAMS
) -> FeatureTable:
    """Each payment's online features (before it is applied to its debtor's profile)."""
    profiles: dict[tuple[str, str], AccountProfile] = {}
    table = FeatureTable()
    for p in sorted(payments, key=lambda p: p.at):
        key = (p.tenant, p.debtor)
        profile = profiles.get(key, EMPTY)
        values = features(profile, p.at, p.creditor, p.amount, params)
        profiles[key] = profile.with_payment(p.id, p.at, p.creditor, p.amount)
        if p.pattern not in NOT_FRAUD:
            table.rows.append([values[name] for name in FEATURES])
            table.patterns.append(p.pattern)
    return table


@dataclass(frozen=True, slots=True)
class Rates:
    """A check's flags against the labels."""

    rows: int
    positives: int
    flagged: int
    true_positives: int

    @property
    def false_positives(self) -> int:
        return self.flagged - self.true_positives

    @property
    def precision(self) -> float:
        return self.true_positives / self.flagged if self.flagged else 0.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.positives if self.positives else 0.0

    @property
    def fpr(self) -> float:
        negatives = self.rows - self.positives
        return self.false_positives / negatives if negatives else 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "rows": self.rows,
            "positives": self.positives,
            "flagged": self.flagged,
            "precision": round(self.precision, 6),
            "recall": round(self.recall, 6),
            "fpr": round(self.fpr, 6),
        }


def rates(flags: Sequence[bool], labels: Sequence[bool]) -> Rates:
    return Rates(
        rows=len(labels),
        positives=sum(labels),
        flagged=sum(flags),
        true_positives=sum(f and y for f, y in zip(flags, labels, strict=True)),
    )


def threshold_for_recall(scores: Sequence[float], labels: Sequence[bool], recall: float) -> float:
    """The highest threshold at which `score >= threshold` flags at least `recall` of the
    positives."""
    positives = sorted((s for s, y in zip(scores, labels, strict=True) if y), reverse=True)
    if not positives:
        raise TrainingError("the validation part has no fraud to set a threshold on")
    return positives[max(1, math.ceil(recall * len(positives) - 1e-9)) - 1]


@dataclass(frozen=True, slots=True)
class Training:
    model: FraudModel
    fitted: Rates
    """The training part: rows and positives (flags at the threshold, for over-fitting)."""
    validation: Rates
    """The model at its threshold on the validation part."""
    rules: Rates
    """The rules baseline on the same validation part."""
    recall_by_pattern: Mapping[str, tuple[int, float, float]]
    """Per fraud pattern in the validation part: (payments, model recall, rules recall)."""
    score_seconds: tuple[float, float]
    """Wall time of `FraudModel.score` on one payment, median and 99th percentile, measured
    here with one OpenMP thread (as a consumer should score: see docs/compliance.md)."""


def train(
    table: FeatureTable,
    seed: int,
    recall: float,
    params: FeatureParams = DEFAULT_PARAMS,
    rules: FraudRules | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Training:
    """Fit on the first 70% of `table`, choose the threshold that reaches `recall` on the rest."""
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier

    from reference_impl.adapters.fraud_model import FraudModel

    cut = round(len(table) * (1 - VALIDATION_SHARE))
    fit_part, check_part = table.slice(0, cut), table.slice(cut)
    for name, part in (("training", fit_part), ("validation", check_part)):
        positives = sum(part.labels)
        if positives == 0 or positives == len(part):
            raise TrainingError(
                f"the {name} part ({len(part)} payments) has {positives} fraud payments: it "
                "needs both fraud and legitimate ones (a longer --duration, more --payments, "
                "or a scenario with more workload.fraud)"
            )
    classifier = HistGradientBoostingClassifier(random_state=seed)
    classifier.fit(np.array(fit_part.rows), np.array(fit_part.labels))
    train_scores = classifier.predict_proba(np.array(fit_part.rows))[:, 1]
    scores = classifier.predict_proba(np.array(check_part.rows))[:, 1].tolist()
    labels = check_part.labels
    threshold = threshold_for_recall(scores, labels, recall)
    flags = [s >= threshold for s in scores]
    baseline = rules or FraudRules()
    rule_flags = [
        baseline.decide(dict(zip(FEATURES, row, strict=True))).verdict != "approve"
        for row in check_part.rows
    ]
    by_pattern: dict[str, tuple[int, float, float]] = {}
    for pattern in sorted(set(check_part.patterns) - {""}):
        picked = [i for i, p in enumerate(check_part.patterns) if p == pattern]
        by_pattern[pattern] = (
            len(picked),
            sum(flags[i] for i in picked) / len(picked),
            sum(rule_flags[i] for i in picked) / len(picked),
        )
    validation = rates(flags, labels)
    training = {
        **(metadata or {}),
        "seed": seed,
        "rows": len(table),
        "positives": sum(table.labels),
        "train_rows": len(fit_part),
        "validation_rows": len(check_part),
        "recall_target": recall,
        "validation": validation.as_dict(),
        "rules_validation": rates(rule_flags, labels).as_dict(),
        "excluded_patterns": sorted(NOT_FRAUD),
    }
    score_seconds = _score_seconds(FraudModel(classifier, threshold, params), check_part.rows)
    training["score_seconds"] = {"p50": score_seconds[0], "p99": score_seconds[1], "threads": 1}
    return Training(
        model=FraudModel(classifier, threshold, params, training),
        fitted=rates([bool(s >= threshold) for s in train_scores], fit_part.labels),
        validation=validation,
        rules=rates(rule_flags, labels),
        recall_by_pattern=by_pattern,
        score_seconds=score_seconds,
    )


def _score_seconds(model: FraudModel, rows: Sequence[Sequence[float]]) -> tuple[float, float]:
    """What scoring one payment costs, as the consumer scores: one features dict at a time,
    (median, 99th percentile) over 500 payments. One OpenMP thread: scikit-learn predicts
    with all cores by default, and waking them for one row costs more than it saves (on a busy
    2-core machine the p99 went from ~1 ms to tens of ms)."""
    from threadpoolctl import threadpool_limits

    samples = []
    with threadpool_limits(1):
        for row in itertools.islice(itertools.cycle(rows), 500):
            values = dict(zip(FEATURES, row, strict=True))
            start = time.perf_counter()
            model.score(values)
            samples.append(time.perf_counter() - start)
    samples.sort()
    return samples[len(samples) // 2], samples[len(samples) * 99 // 100]
