"""The checks themselves, each with the state it keeps in the store (service/checks.py says
how their decisions are recorded and add up).

- sanctions keeps nothing: the creditor's and debtor's names against the watch list;
- AML keeps one keyed record per movement, outgoing under the debtor and incoming under the
  creditor (kinds `aml-out:ACCOUNT`, `aml-in:ACCOUNT`, key `time/payment`), inserted only if
  absent, so a redelivered payment never counts twice; each rule reads the windows it needs;
- fraud keeps a profile per debtor account (`fraud-profile`), updated online; the profile
  remembers the payments it applied, so a redelivery does not move it again. Only the member
  that holds the debtor's partition writes it (events are keyed by debtor account).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from reference_impl.core.aml import AmlRules, Movement, window_span
from reference_impl.core.checks import APPROVE, CheckUnavailable, Decision
from reference_impl.core.fraud import AccountProfile, FraudRules, FraudScorer, features
from reference_impl.core.payments import Payment
from reference_impl.core.serial import dumps
from reference_impl.service.ports import UnitOfWork

MAX_ANSWERS = 100_000
"""Names whose screening answer a remote sanctions check keeps."""
AML_OUT = "aml-out"
AML_IN = "aml-in"
FRAUD_PROFILE = "fraud-profile"


class NameScreen(Protocol):
    """A watch-list screen (reference_impl/compliance/sanctions.py): a name in, a decision out.
    A screen with a true `remote` attribute also screens many names in one call
    (`decide_many`), made before the unit of work (`prepare`)."""

    def decide(self, name: str) -> Decision: ...


@dataclass(frozen=True, slots=True)
class SanctionsCheck:
    screen: NameScreen
    name: str = "sanctions"
    answers: dict[str, Decision | CheckUnavailable] = field(default_factory=dict)
    """A remote screen's answers, got by `prepare` outside the unit of work (a provider's
    latency never holds a transaction open): a name's decision is kept (the list does not
    change while the process runs), a failed call's only until the batch that asked reads it."""

    @property
    def remote(self) -> bool:
        return bool(getattr(self.screen, "remote", False))

    def prepare(self, payments: Sequence[Payment]) -> Callable[[], int] | None:
        """The provider call for the names of these payments it has no answer for, when the
        screen is remote: one bulk call."""
        if not self.remote:
            return None
        if len(self.answers) > MAX_ANSWERS:
            self.answers.clear()
        names = sorted(
            {n for p in payments for n in (p.creditor_name, p.debtor_name) if n} - set(self.answers)
        )

        def call() -> int:
            try:
                found = self.screen.decide_many(names)  # type: ignore[attr-defined]
                self.answers.update(zip(names, found, strict=True))
            except CheckUnavailable as e:
                self.answers.update(dict.fromkeys(names, e))
            return 1

        return call if names else None

    def _screened(self, name: str) -> Decision:
        answer = self.answers.get(name)
        if answer is None:  # not prepared (a retried single event): ask now
            return self.screen.decide(name)
        if isinstance(answer, CheckUnavailable):
            del self.answers[name]  # the next batch asks again
            raise answer
        return answer

    def decide(self, uow: UnitOfWork, payment: Payment, now: float) -> Decision:
        del uow, now
        names = [n for n in (payment.creditor_name, payment.debtor_name) if n]
        try:
            decisions = [self._screened(n) for n in names]
        except CheckUnavailable as e:
            # Fail closed, one payment at a time: held for a person, the batch goes on.
            return Decision("review", f"sanctions:unavailable {e}")
        hits = [d for d in decisions if d.verdict != "approve"]
        return max(hits, key=lambda d: (d.verdict == "reject", d.score)) if hits else APPROVE


@dataclass(frozen=True, slots=True)
class AmlCheck:
    rules: AmlRules
    name: str = "aml"

    def decide(self, uow: UnitOfWork, payment: Payment, now: float) -> Decision:
        del now
        p, at = payment, payment.received_at
        since = at - window_span(self.rules)
        outgoing = _movements(uow, AML_OUT, p.tenant, p.debtor_account, since, at)
        incoming = _movements(uow, AML_IN, p.tenant, p.debtor_account, since, at)
        decision = self.rules.decide(p.id, p.amount, at, outgoing, incoming)
        moved = dumps({"amount": p.amount, "counterparty": p.creditor_account})
        uow.insert_record_if_absent(
            f"{AML_OUT}:{p.debtor_account}", p.tenant, _movement_key(at, p.id), moved
        )
        moved = dumps({"amount": p.amount, "counterparty": p.debtor_account})
        uow.insert_record_if_absent(
            f"{AML_IN}:{p.creditor_account}", p.tenant, _movement_key(at, p.id), moved
        )
        return decision


def _movement_key(at: float, payment_id: str) -> str:
    return f"{at:020.6f}/{payment_id}"


def _movements(
    uow: UnitOfWork, kind: str, tenant: str, account: str, since: float, until: float
) -> list[Movement]:
    """The account's movements of `kind` in [since, until], oldest first. Each account's
    movements are a record kind of their own (`aml-out:ACCOUNT`), so that reading one account's
    window reads only its records, in every store."""
    out: list[Movement] = []
    after = _movement_key(max(since, 0.0), "")[:-1]  # keys from `since` on
    while True:
        rows = uow.list_records(f"{kind}:{account}", tenant, after, 500)
        for key, value in rows:
            at_text, payment_id = key.split("/", 1)
            at = float(at_text)
            if at > until:
                return out
            data = json.loads(value)
            out.append(Movement(payment_id, at, int(data["amount"]), str(data["counterparty"])))
        if len(rows) < 500:
            return out
        after = rows[-1][0]


@dataclass(frozen=True, slots=True)
class FraudCheck:
    model: FraudScorer | None = None
    """A trained model (reference_impl/adapters/fraud_model.py); None scores with `rules`."""
    rules: FraudRules = field(default_factory=FraudRules)
    name: str = "fraud"

    def decide(self, uow: UnitOfWork, payment: Payment, now: float) -> Decision:
        del now
        p = payment
        text = uow.get_record(FRAUD_PROFILE, p.tenant, p.debtor_account)
        profile = AccountProfile.from_json(text) if text is not None else AccountProfile()
        seen = features(profile, p.received_at, p.creditor_account, p.amount)
        decision = self.model.decide(seen) if self.model is not None else self.rules.decide(seen)
        updated = profile.with_payment(p.id, p.received_at, p.creditor_account, p.amount)
        uow.put_record(FRAUD_PROFILE, p.tenant, p.debtor_account, updated.to_json())
        return decision
