"""The audit: did the run keep its promises? Exactly-once, conservation, no overdraft, an intact
hash chain and a settlement that reconciles (docs/audit.md).

It reads only the run record, never the reference implementation's code, so a bug in the
implementation cannot hide itself by being shared with the checker. Every check is a vectorised
pass over whole tables (a million payments audit in seconds); only the hash chain is a loop,
because sha256 has no vector form. Each finding names its kind, tenant, payment, the first journal
seq at which the invariant is broken, and the run's seed, so it can be replayed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from string import Formatter
from typing import Any

import numpy as np
import pandas as pd

from reports.audit_compliance import check_compliance
from reports.audit_flow import check_liveness, check_payments, check_settlement, check_statements
from reports.audit_ledger import check_balances, check_chain, check_two_phase
from reports.audit_vectors import cat, encode, encode_scoped
from reports.record import RunRecord

SAFETY_KINDS = (
    "lost",
    "duplicate",
    "phantom",
    "conservation",
    "overdraft",
    "chain",
    "settlement",
    "compliance",
)
KINDS = (*SAFETY_KINDS, "liveness")
_COLUMNS = ("kind", "tenant", "payment_id", "seq", "detail")


@dataclass(frozen=True, slots=True)
class Violation:
    kind: str
    tenant: str
    payment_id: str | None
    seq: int | None
    """The first journal seq at which the invariant is broken, when a journal entry is involved."""
    detail: str
    seed: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "tenant": self.tenant,
            "payment_id": self.payment_id,
            "seq": self.seq,
            "detail": self.detail,
            "seed": self.seed,
        }


@dataclass(frozen=True, slots=True)
class AuditResult:
    seed: int | None
    violations: tuple[Violation, ...]
    """Safety violations (every kind but liveness), at most `max_per_kind` of each kind."""
    liveness: tuple[Violation, ...]
    counts: Mapping[str, int]
    """Every finding counted by kind, liveness included, before any truncation."""
    truncated: bool

    @property
    def ok(self) -> bool:
        """No safety violation. Liveness findings alone do not fail a run's safety."""
        return not any(self.counts[k] for k in SAFETY_KINDS)

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "ok": self.ok,
            "counts": dict(self.counts),
            "truncated": self.truncated,
            "violations": [v.to_json() for v in self.violations],
            "liveness": [v.to_json() for v in self.liveness],
        }


def write_audit(run_dir: str | os.PathLike[str], result: AuditResult) -> None:
    """Write `audit.json` into the run directory, deterministically (sorted keys, stable order)."""
    text = json.dumps(result.to_json(), sort_keys=True, indent=2) + "\n"
    Path(run_dir, "audit.json").write_text(text)


class Findings:
    """Violation rows collected from every check, turned into an AuditResult at the end."""

    def __init__(self) -> None:
        self.frames: list[pd.DataFrame] = []

    def add(
        self,
        kind: str,
        rows: pd.DataFrame,
        detail: str,
        *,
        payment: str | None = "payment_id",
        seq: str | np.ndarray | None = "seq",
        **values: Any,
    ) -> None:
        """One violation per row of `rows`, a frame with a tenant column and the `payment`
        column (None: no payment). `seq` names a column or gives the values (None: no entry).
        `detail` is a template whose {fields} are columns of `rows` or per-row `values`."""
        if rows.empty:
            return
        parts: list[Any] = []
        for literal, field, _, _ in Formatter().parse(detail):
            parts.append(literal)
            if field is not None:
                parts.append(values[field] if field in values else rows[field])
        seqs = np.nan if seq is None else rows[seq] if isinstance(seq, str) else seq
        self.frames.append(
            pd.DataFrame(
                {
                    "kind": kind,
                    "tenant": rows["tenant"].to_numpy(dtype=object),
                    "payment_id": "" if payment is None else rows[payment].to_numpy(dtype=object),
                    "seq": np.asarray(seqs, dtype=np.float64),
                    "detail": cat(*parts),
                }
            )
        )

    def result(self, seed: int | None, max_per_kind: int) -> AuditResult:
        found = pd.concat([pd.DataFrame(columns=list(_COLUMNS)), *self.frames], ignore_index=True)
        found["order"] = found["kind"].map({k: i for i, k in enumerate(KINDS)})
        found = found.sort_values(
            ["order", "tenant", "seq", "payment_id", "detail"], na_position="last", kind="stable"
        )
        counts = found["kind"].value_counts()
        kept = found.groupby("kind", sort=False).head(max_per_kind)
        items = [
            # seq != seq is NaN: no journal entry involved
            Violation(kind, tenant, pid or None, None if seq != seq else int(seq), detail, seed)
            for kind, tenant, pid, seq, detail in kept[list(_COLUMNS)].itertuples(index=False)
        ]
        return AuditResult(
            seed=seed,
            violations=tuple(v for v in items if v.kind != "liveness"),
            liveness=tuple(v for v in items if v.kind == "liveness"),
            counts={k: int(counts.get(k, 0)) for k in KINDS},
            truncated=len(kept) < len(found),
        )


@dataclass
class EncodedRun:
    """The record's tables, the journal in (tenant, seq) order, and shared integer codes for
    tenants (t*), payments (p*, scoped by tenant), currencies (c*) and accounts (ad, ac for the
    journal's debit and credit accounts, aa for the accounts table, scoped by tenant), where
    *j is the journal, *p payments, *r requests, *s settlements and *a accounts."""

    record: RunRecord
    j: pd.DataFrame
    tj: np.ndarray
    tp: np.ndarray
    tr: np.ndarray
    pj: np.ndarray
    pp: np.ndarray
    pr: np.ndarray
    ps: np.ndarray
    n_pay: int
    cj: np.ndarray
    cp: np.ndarray
    cs: np.ndarray
    ca: np.ndarray
    ad: np.ndarray
    ac: np.ndarray
    aa: np.ndarray
    n_acc: int

    @classmethod
    def encode(cls, record: RunRecord) -> EncodedRun:
        j, pay, req = record.journal, record.payments, record.requests
        s, acc = record.settlements, record.accounts
        (tj, tp, tr, ts, ta), _ = encode(*(x["tenant"] for x in (j, pay, req, s, acc)))
        order = np.lexsort((j["seq"].to_numpy(), tj))
        if not np.array_equal(order, np.arange(len(j))):
            j, tj = j.take(order).reset_index(drop=True), tj[order]
        payments = ((tj, j["payment_id"]), (tp, pay["payment_id"]), (tr, req["payment_id"]))
        (pj, pp, pr, ps), n_pay = encode_scoped(*payments, (ts, s["payment_id"]))
        (cj, cp, cs, ca), _ = encode(*(x["currency"] for x in (j, pay, s, acc)))
        accounts = ((tj, j["debit_account"]), (tj, j["credit_account"]), (ta, acc["id"]))
        (ad, ac, aa), n_acc = encode_scoped(*accounts)
        return cls(record, j, tj, tp, tr, pj, pp, pr, ps, n_pay, cj, cp, cs, ca, ad, ac, aa, n_acc)


def audit(record: RunRecord, *, max_per_kind: int = 1000) -> AuditResult:
    """Check every invariant docs/audit.md lists on `record`."""
    found = Findings()
    run = EncodedRun.encode(record)
    check_chain(run, found)
    release, resolved = check_two_phase(run, found)
    check_balances(run, release, found)
    posted_seq, posted_at = check_payments(run, found)
    check_settlement(run, posted_seq, posted_at, found)
    if record.meta.get("statements_visible", True):
        check_statements(record, found)
    check_liveness(run, posted_seq, resolved, found)
    check_compliance(record, found)
    return found.result(record.seed, max_per_kind)
