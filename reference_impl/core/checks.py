"""What a compliance check answers: approve, reject or hold for review, with why and how sure.

Shared by the sanctions screen, the AML rules and the fraud score, so the pipeline records every
check's answer the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Verdict = Literal["approve", "reject", "review"]


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    reason: str = ""
    """The check and its rule: "sanctions:match OFAC-SDN-000123 'Ivan Petrov'", "aml:velocity"."""
    score: float = 0.0
    """The check's own score, 0..1."""


APPROVE = Decision("approve")


class CheckUnavailable(Exception):
    """What a check depends on did not answer (a screening provider refused, failed or timed
    out): the check decides "review" for the payment rather than fail the batch it is in."""
