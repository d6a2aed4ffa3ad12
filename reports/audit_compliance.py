"""The audit's compliance checks (docs/audit.md), on records whose scenario ran the checks.

- Exactly one decision per check: a payment decided twice by one check (two CheckDecided in the
  log) is a violation, whatever the two said.
- Money moves only on approval: a payment whose money moved (its reservation or posting in the
  journal) must have had, before it moved, every check's approval, or an operator's, or be
  covered by the timeout policy `approve` for a check that had not answered by the deadline
  (no decision, or one that came after it).
- A held payment moved no money: no journal entry carries its id.

Every such finding is of kind `compliance`. Which checks ran, their timeout and its policy are
in the record's meta (`checks`), written by both runtimes when the scenario turned them on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from reports.record import RunRecord

if TYPE_CHECKING:
    from reports.audit import Findings

ALL_CHECKS = ("sanctions", "aml", "fraud")


@dataclass(frozen=True, slots=True)
class ChecksPolicy:
    run: tuple[str, ...]
    timeout: float
    on_timeout: str


def policy_of(record: RunRecord) -> ChecksPolicy | None:
    """The checks the run ran (the record's meta says), or None when they were off."""
    checks = record.meta.get("checks")
    if not isinstance(checks, dict) or not checks.get("run"):
        return None
    return ChecksPolicy(tuple(checks["run"]), float(checks["timeout"]), str(checks["on_timeout"]))


def check_compliance(record: RunRecord, found: Findings) -> None:
    policy = policy_of(record)
    if policy is None:
        return
    d = record.decisions
    pay = record.payments[["payment_id", "tenant", "received_at", "status"]]
    keys = ["tenant", "payment_id", "check"]
    counts = d.groupby(keys, sort=True).size().rename("n").reset_index()
    twice = counts[counts["n"] > 1]
    found.add("compliance", twice, "{check} decided it {n} times", seq=None)

    j = record.journal
    moved = j[j["payment_id"] != ""][["tenant", "payment_id", "seq", "kind", "at"]]
    moved = moved.rename(columns={"at": "moved_at"})
    moved = moved.drop_duplicates(["tenant", "payment_id"])
    held = pay[pay["status"] == "held"].merge(moved, on=["tenant", "payment_id"])
    found.add("compliance", held, "held, yet {kind} entry {seq} moved its money")

    posted = moved[moved["kind"].isin(["pending", "post", "post_pending"])].merge(
        pay, on=["tenant", "payment_id"]
    )
    if posted.empty:
        return
    first = d.drop_duplicates(keys)
    operator = first[(first["check"] == "operator") & (first["verdict"] == "approve")]
    approved_by_operator = set(zip(operator["tenant"], operator["payment_id"], strict=True))
    for check in policy.run:
        mine = first[first["check"] == check][["tenant", "payment_id", "verdict", "at"]]
        rows = posted.merge(mine, on=["tenant", "payment_id"], how="left")
        deadline = rows["received_at"].to_numpy() + policy.timeout
        missing = rows["verdict"].isna().to_numpy()
        late = missing | (rows["at"].to_numpy() > deadline)
        # An approval counts only if it was in before the money moved.
        approved = ((rows["verdict"] == "approve") & (rows["at"] <= rows["moved_at"])).to_numpy()
        covered = approved | (late & (policy.on_timeout == "approve"))
        pairs = zip(rows["tenant"], rows["payment_id"], strict=True)
        by_operator = np.array([pair in approved_by_operator for pair in pairs], dtype=bool)
        bad = rows[~covered & ~by_operator].copy()
        bad["said"] = np.where(bad["verdict"].isna(), "no decision", bad["verdict"].astype(str))
        found.add(
            "compliance",
            bad,
            f"money moved ({{kind}} entry {{seq}}) without {check}'s approval: {{said}}"
            f" (on_timeout: {policy.on_timeout})",
        )
