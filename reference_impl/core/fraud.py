"""Fraud scoring's pure half: a per-account profile kept online, the features, a rules baseline.

The fraud consumer keeps one `AccountProfile` per debtor account in the store (as JSON) and, for
each payment, computes `features` from the profile as it was BEFORE the payment, decides (the
rules baseline `FraudRules` or the trained model of reference_impl/adapters/fraud_model.py,
both a `FraudScorer`), then stores
`profile.with_payment(...)`. Training (`testbed fraud train`) feeds generated payments
through the very same two functions in time order, so the model sees online features exactly as
the consumer computes them.

Everything is bounded so a profile stays a few KB whatever the account does: the last
`MAX_PAYEES` distinct payees, the payments of the last `WINDOW` seconds (at most `MAX_RECENT`),
the last `MAX_APPLIED` payment ids. Redelivery is at-least-once, so `with_payment` is a no-op for
a payment id it has applied among the last `MAX_APPLIED`.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from reference_impl.core.checks import APPROVE, Decision
from reference_impl.core.errors import InvalidInput
from reference_impl.core.serial import dumps, evolve

MAX_PAYEES = 50
MAX_RECENT = 100
MAX_APPLIED = 32
WINDOW = 3600.0
"""Seconds of payment history kept for velocity."""
SHORT_WINDOW = 60.0
IDLE_CAP = 86_400.0
"""`seconds_since_last` of an account's first payment, and its ceiling."""
MIN_LOG_STD = 0.25
"""Floor of the log-amount spread, so an account that always pays the same amount does not
turn a cent's difference into an infinite z-score."""
Z_CAP = 20.0

FEATURES: tuple[str, ...] = (
    "log_amount",
    "amount_z",
    "amount_ratio",
    "history_count",
    "new_payee",
    "payments_60s",
    "usual_payments_60s",
    "amount_60s",
    "payments_1h",
    "amount_1h",
    "payees_1h",
    "new_payees_1h",
    "near_threshold_1h",
    "seconds_since_last",
    "tiny_amount",
    "near_threshold",
)
"""The features' fixed order: a model's input columns, saved with it and checked on load."""


@dataclass(frozen=True, slots=True)
class RecentPayment:
    at: float
    amount: int
    creditor: str
    new_payee: bool
    """The creditor was not among the account's known payees when it was paid."""


@dataclass(frozen=True, slots=True)
class AccountProfile:
    """What fraud scoring remembers of one debtor account; empty for an account never seen."""

    count: int = 0
    mean_log: float = 0.0
    m2_log: float = 0.0
    """Welford's running sum of squared deviations of log(amount)."""
    payees: tuple[str, ...] = ()
    """The last MAX_PAYEES distinct creditors, least recently paid first."""
    recent: tuple[RecentPayment, ...] = ()
    """The payments of the last WINDOW seconds, in time order, at most MAX_RECENT."""
    first_at: float | None = None
    last_at: float | None = None
    applied: tuple[str, ...] = ()
    """The ids of the last MAX_APPLIED payments applied, oldest first."""

    @property
    def log_std(self) -> float:
        if self.count < 2:
            return 0.0
        return math.sqrt(self.m2_log / (self.count - 1))

    def with_payment(
        self, payment_id: str, at: float, creditor: str, amount: int
    ) -> AccountProfile:
        """The profile after the payment; this very profile if the payment was applied already."""
        if payment_id in self.applied:
            return self
        _check_payment(at, amount)
        x = math.log(amount)
        count = self.count + 1
        delta = x - self.mean_log
        mean = self.mean_log + delta / count
        new_payee = creditor not in self.payees
        payees = (*(p for p in self.payees if p != creditor), creditor)
        latest = at if self.last_at is None else max(self.last_at, at)
        first = at if self.first_at is None else min(self.first_at, at)
        recent = list(self.recent)
        bisect.insort(recent, RecentPayment(at, amount, creditor, new_payee), key=_at)
        start = bisect.bisect_right(recent, latest - WINDOW, key=_at)
        recent = recent[max(start, len(recent) - MAX_RECENT) :]
        return evolve(
            self,
            count=count,
            mean_log=mean,
            m2_log=self.m2_log + delta * (x - mean),
            payees=payees[-MAX_PAYEES:],
            recent=tuple(recent),
            first_at=first,
            last_at=latest,
            applied=(*self.applied, payment_id)[-MAX_APPLIED:],
        )

    def to_json(self) -> str:
        return dumps(
            {
                "count": self.count,
                "mean_log": self.mean_log,
                "m2_log": self.m2_log,
                "payees": list(self.payees),
                "recent": [[r.at, r.amount, r.creditor, r.new_payee] for r in self.recent],
                "first_at": self.first_at,
                "last_at": self.last_at,
                "applied": list(self.applied),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> AccountProfile:
        try:
            data = json.loads(text)
            profile = cls(
                count=_typed(data, "count", int),
                mean_log=float(_typed(data, "mean_log", (int, float))),
                m2_log=float(_typed(data, "m2_log", (int, float))),
                payees=tuple(_strings(data, "payees")),
                recent=tuple(
                    RecentPayment(float(at), amount, creditor, new)
                    for at, amount, creditor, new in _typed(data, "recent", list)
                ),
                first_at=_time(data, "first_at"),
                last_at=_time(data, "last_at"),
                applied=tuple(_strings(data, "applied")),
            )
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise InvalidInput(f"account profile: not a profile's JSON: {e}") from None
        return profile


def _at(r: RecentPayment) -> float:
    return r.at


def _typed(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"{key}: wrong type {type(value).__name__}")
    return value


def _time(data: Mapping[str, Any], key: str) -> float | None:
    value = data[key]
    return None if value is None else float(_typed(data, key, (int, float)))


def _strings(data: Mapping[str, Any], key: str) -> list[str]:
    values: list[Any] = _typed(data, key, list)
    if not all(isinstance(v, str) for v in values):
        raise TypeError(f"{key}: must be a list of strings")
    return [str(v) for v in values]


def _check_payment(at: float, amount: int) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidInput(f"amount: must be a positive integer of minor units, not {amount!r}")
    if not math.isfinite(at):
        raise InvalidInput(f"at: must be a finite time in seconds, not {at!r}")


@dataclass(frozen=True, slots=True)
class FeatureParams:
    """The amounts the flag features compare with; a model is saved with the ones it saw."""

    tiny_amount: int = 200
    """At most this many minor units is a tiny amount (card testing, floods)."""
    reporting_threshold: int = 1_000_000
    """The amount above which a payment is reported (structuring stays just under it)."""
    near_fraction: float = 0.9
    """`near_threshold`: from this fraction of the reporting threshold up to just under it."""

    def __post_init__(self) -> None:
        if self.tiny_amount < 1:
            raise InvalidInput(f"tiny_amount: must be at least 1, not {self.tiny_amount}")
        if self.reporting_threshold < 2:
            raise InvalidInput(
                f"reporting_threshold: must be at least 2, not {self.reporting_threshold}"
            )
        if not 0 < self.near_fraction < 1:
            raise InvalidInput(
                f"near_fraction: must lie strictly between 0 and 1, not {self.near_fraction}"
            )

    def near(self, amount: int) -> bool:
        return self.reporting_threshold * self.near_fraction <= amount < self.reporting_threshold


DEFAULT_PARAMS = FeatureParams()


def features(
    profile: AccountProfile,
    at: float,
    creditor: str,
    amount: int,
    params: FeatureParams = DEFAULT_PARAMS,
) -> dict[str, float]:
    """The payment's features against the account's history before it, keyed as FEATURES.

    The windows count the profile's payments after `at` minus the window (a payment delivered
    out of order is compared with all the history kept, later ones included).
    """
    _check_payment(at, amount)
    x = math.log(amount)
    if profile.count:
        z = (x - profile.mean_log) / max(profile.log_std, MIN_LOG_STD)
        ratio = math.exp(x - profile.mean_log)
    else:
        z, ratio = 0.0, 1.0
    recent = profile.recent
    hour = recent[bisect.bisect_right(recent, at - WINDOW, key=_at) :]
    minute = recent[bisect.bisect_right(recent, at - SHORT_WINDOW, key=_at) :]
    idle = IDLE_CAP if profile.last_at is None else min(IDLE_CAP, max(0.0, at - profile.last_at))
    if profile.first_at is None:
        usual = 0.0
    else:
        usual = SHORT_WINDOW * profile.count / max(SHORT_WINDOW, at - profile.first_at)
    return {
        "log_amount": x,
        "amount_z": max(-Z_CAP, min(Z_CAP, z)),
        "amount_ratio": ratio,
        "history_count": float(profile.count),
        "new_payee": float(creditor not in profile.payees),
        "payments_60s": float(len(minute)),
        "usual_payments_60s": usual,
        "amount_60s": float(sum(r.amount for r in minute)),
        "payments_1h": float(len(hour)),
        "amount_1h": float(sum(r.amount for r in hour)),
        "payees_1h": float(len({r.creditor for r in hour})),
        "new_payees_1h": float(sum(r.new_payee for r in hour)),
        "near_threshold_1h": float(sum(params.near(r.amount) for r in hour)),
        "seconds_since_last": idle,
        "tiny_amount": float(amount <= params.tiny_amount),
        "near_threshold": float(params.near(amount)),
    }


class FraudScorer(Protocol):
    """What the fraud consumer asks: the rules baseline or a trained model."""

    def decide(self, features: Mapping[str, float]) -> Decision: ...


@dataclass(frozen=True, slots=True)
class FraudRules:
    """The rules baseline: review a payment when one rule fires, first in this order.

    Counts include the payment being decided (the features count only the history before it).
    """

    max_payments_60s: int = 10
    """velocity: more payments than this from the account within a minute, and ..."""
    velocity_factor: float = 3.0
    """... more than this many times its usual payments per minute (a busy account is not a
    burst)."""
    new_payee_z: float = 3.0
    """new_payee_large: to a new payee, log amount this many deviations above the account's."""
    min_history: int = 5
    """new_payee_large needs this many earlier payments to know what is usual."""
    tiny_new_payees_1h: int = 5
    """tiny_fanout: a tiny amount that is the n-th to a new payee within the hour."""
    structuring_1h: int = 2
    """structuring: the n-th payment just under the reporting threshold within the hour."""

    def decide(self, features: Mapping[str, float]) -> Decision:
        f = features
        minute = f["payments_60s"] + 1
        if (
            minute > self.max_payments_60s
            and minute > self.velocity_factor * f["usual_payments_60s"]
        ):
            return _review("velocity")
        if (
            f["new_payee"]
            and f["history_count"] >= self.min_history
            and f["amount_z"] > self.new_payee_z
        ):
            return _review("new_payee_large")
        fanout = f["new_payees_1h"] + 1 >= self.tiny_new_payees_1h
        if f["tiny_amount"] and f["new_payee"] and fanout:
            return _review("tiny_fanout")
        if f["near_threshold"] and f["near_threshold_1h"] + 1 >= self.structuring_1h:
            return _review("structuring")
        return APPROVE


def _review(rule: str) -> Decision:
    return Decision("review", f"fraud:rules:{rule}", 1.0)
