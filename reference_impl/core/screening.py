"""Default screening rules: the compliance port's simple rule set, so the flow is complete.

Pure: a payment and the rules in, a decision out. The full compliance pipeline (sanctions, AML,
fraud score) plugs in behind the same `Screening` port in the service layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reference_impl.core.payments import Payment


@dataclass(frozen=True, slots=True)
class ScreeningDecision:
    approved: bool
    reason: str = ""


APPROVED = ScreeningDecision(True)


@dataclass(frozen=True, slots=True)
class ScreeningRules:
    max_amount: dict[str, int] = field(default_factory=dict)
    """Per currency, the largest amount in minor units; a currency not listed has no limit."""
    blocked_accounts: frozenset[str] = frozenset()

    def screen(self, payment: Payment) -> ScreeningDecision:
        if payment.debtor_account in self.blocked_accounts:
            return ScreeningDecision(False, "screening:blocked_debtor")
        if payment.creditor_account in self.blocked_accounts:
            return ScreeningDecision(False, "screening:blocked_creditor")
        limit = self.max_amount.get(payment.currency)
        if limit is not None and payment.amount > limit:
            return ScreeningDecision(False, "screening:amount_limit")
        return APPROVED
