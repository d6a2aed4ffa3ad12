"""Compliance checks in the store: each check's one decision per payment, and what they add up to.

A check (sanctions, AML, fraud: service/checkers.py) decides on a payment, reading and writing
the state it keeps per account in the unit of work that records its decision. A decision is
recorded once: `decide_once` looks for the (payment, check) record first and inserts it only if
absent, and emits a `CheckDecided` event only when it inserted. How the decisions add up
(`outcome`): any reject rejects; every check approved approves; otherwise the payment is held
for an operator. A check that has not decided by the timeout counts as the configured policy
says (hold, approve or reject).

Modes: `parallel` runs each check as a consumer group of its own on PaymentReceived and the
payments group waits for their CheckDecided events (service/compliance.py); `sequential` runs
them one after the other inside the payments group's handler; `off` runs none (the default).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from reference_impl.core.checks import Decision
from reference_impl.core.events import CheckDecided
from reference_impl.core.payments import Payment
from reference_impl.core.serial import dumps
from reference_impl.service.ports import UnitOfWork, partition_for

CHECKS = ("sanctions", "aml", "fraud")
"""Every check, in the order the sequential mode runs them."""
OPERATOR = "operator"
"""The decision an operator's review records on a held payment (not a check)."""
DECISION = "check-decision"
"""Record kind: key `payment_id/check` -> the decision (verdict, reason, score, at)."""
AWAITING = "checks-awaiting"
"""Record kinds `checks-awaiting:PARTITION` (tenant ""): key `deadline/tenant/payment_id` of each
payment waiting for the parallel checks, so that the timeout sweep reads only the due ones of
the partitions it holds, oldest deadline first."""

Mode = Literal["off", "parallel", "sequential"]
Policy = Literal["hold", "approve", "reject"]


@dataclass(frozen=True, slots=True)
class ChecksConfig:
    """How the deployment runs its compliance checks."""

    mode: Mode = "off"
    checks: tuple[str, ...] = CHECKS
    timeout: float = 2.0
    """Seconds after acceptance a payment waits for the parallel checks' decisions."""
    on_timeout: Policy = "hold"
    """What a check that has not decided by the timeout counts as."""

    @property
    def on(self) -> bool:
        return self.mode != "off" and bool(self.checks)


@dataclass(frozen=True, slots=True)
class CheckerSettings:
    """What a deployment tunes about its checks (a scenario's `checks` section, or serve's
    flags): the same in both runtimes."""

    run: tuple[str, ...] = CHECKS
    sanctions_threshold: float = 0.90
    sanctions_reject_at: float = 0.97
    watchlist: str | None = None
    """A watch-list CSV; None is the shipped synthetic list."""
    aml: dict[str, float] = field(default_factory=dict)
    """AML thresholds by `AmlRules` field name; one left out keeps the rules' default."""
    fraud_model: str | None = None
    """A directory saved by `testbed fraud train`; None scores with the rules baseline."""
    sanctions_provider: str | None = None
    """A screening provider's URL (reference_impl/compliance/provider.py); None screens
    in-process."""


class Checker(Protocol):
    """One check: its decision on a payment, reading and writing its own state in `uow`."""

    @property
    def name(self) -> str: ...

    def decide(self, uow: UnitOfWork, payment: Payment, now: float) -> Decision: ...


# -- decisions in the store --------------------------------------------------------------------
def decision_key(payment_id: str, check: str) -> str:
    return f"{payment_id}/{check}"


def decision_text(decision: Decision, at: float) -> str:
    return dumps(
        {"verdict": decision.verdict, "reason": decision.reason, "score": decision.score, "at": at}
    )


def decide_once(
    uow: UnitOfWork, checker: Checker, payment: Payment, now: float
) -> CheckDecided | None:
    """Record `checker`'s decision on `payment` unless one is recorded; the event if it was."""
    key = decision_key(payment.id, checker.name)
    if uow.get_record(DECISION, payment.tenant, key) is not None:
        return None
    decision = checker.decide(uow, payment, now)
    if uow.insert_record_if_absent(DECISION, payment.tenant, key, decision_text(decision, now)):
        return None  # a concurrent decider won; its decision stands
    return CheckDecided(
        payment.id,
        payment.tenant,
        payment.debtor_account,
        now,
        checker.name,
        decision.verdict,
        decision.reason,
        decision.score,
    )


def decisions_of(uow: UnitOfWork, payment: Payment, checks: Sequence[str]) -> dict[str, Decision]:
    """The recorded decisions on `payment` of `checks` (absent: not decided yet)."""
    found: dict[str, Decision] = {}
    for check in checks:
        text = uow.get_record(DECISION, payment.tenant, decision_key(payment.id, check))
        if text is not None:
            data = json.loads(text)
            found[check] = Decision(data["verdict"], data["reason"], float(data["score"]))
    return found


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict: Literal["approve", "reject", "hold"]
    reason: str = ""


def outcome(
    decisions: Mapping[str, Decision], config: ChecksConfig, timed_out: bool = False
) -> Outcome | None:
    """What the decisions add up to; None while one is missing and the timeout has not passed.

    A check missing at the timeout counts as `config.on_timeout` says."""
    missing = [c for c in config.checks if c not in decisions]
    if missing and not timed_out:
        return None
    rejects = [_why(c, d) for c, d in decisions.items() if d.verdict == "reject"]
    if missing and config.on_timeout == "reject":
        rejects += [f"{c}:timeout" for c in missing]
    if rejects:
        return Outcome("reject", "; ".join(rejects))
    reviews = [_why(c, d) for c, d in decisions.items() if d.verdict == "review"]
    if missing and config.on_timeout == "hold":
        reviews += [f"{c}:timeout" for c in missing]
    if reviews:
        return Outcome("hold", "; ".join(reviews))
    return Outcome("approve")


def _why(check: str, decision: Decision) -> str:
    return decision.reason or f"{check}:{decision.verdict}"


# -- waiting for parallel checks ----------------------------------------------------------------
def deadline_of(payment: Payment, config: ChecksConfig) -> float:
    return payment.received_at + config.timeout


def awaiting(payment: Payment, config: ChecksConfig, partitions: int) -> tuple[str, str]:
    """(record kind, key) of the payment in the index of payments waiting for their checks."""
    partition = partition_for(f"{payment.tenant}/{payment.debtor_account}", partitions)  # its
    # events' partition (core/events.py event_key), so the member that holds them sweeps it
    deadline = deadline_of(payment, config)
    return f"{AWAITING}:{partition:05d}", f"{deadline:020.6f}/{payment.tenant}/{payment.id}"


def due(uow: UnitOfWork, partition: int, now: float) -> list[tuple[str, str, str, str]]:
    """(kind, key, tenant, payment id) of the payments of `partition` whose checks' deadline
    passed, oldest first (at most a thousand a sweep)."""
    kind = f"{AWAITING}:{partition:05d}"
    found = []
    for key, _ in uow.list_records(kind, "", "", 1000):
        deadline, tenant, payment_id = key.split("/", 2)
        if float(deadline) > now:
            break
        found.append((kind, key, tenant, payment_id))
    return found


def sweep_interval(config: ChecksConfig) -> float:
    """How often the payments members look for payments whose checks timed out."""
    return max(0.05, min(1.0, config.timeout / 4))
