"""The audit: did the run keep its promises? Exactly-once, conservation, no overdraft, an intact
hash chain and a settlement that reconciles (DESIGN section 8, docs/audit.md).

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
from hashlib import sha256
from pathlib import Path
from string import Formatter
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from reports.record import GENESIS_HASH, RunRecord, hash_inputs

SAFETY_KINDS = ("lost", "duplicate", "phantom", "conservation", "overdraft", "chain", "settlement")
KINDS = (*SAFETY_KINDS, "liveness")
NON_TERMINAL = ("received", "screening", "reserved")
REFUSED = ("rejected", "failed")
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


class _Findings:
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
                    "detail": _cat(*parts),
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


def _cat(*parts: Any) -> Any:
    """Row-wise string concatenation of literals and per-row values, by position (never by
    index label); only ever run on violating rows, so plain object arrays are fast enough."""
    out: Any = ""
    for part in parts:
        out = out + (part if isinstance(part, str) else np.asarray(part).astype(str).astype(object))
    return out


# Identifiers are compared as dense integer codes: one factorisation per kind of id, shared by
# every table that names it, then numpy lookups. Comparing Arrow strings directly (isin, merge,
# get_indexer) costs seconds per million rows; this costs milliseconds.


def _encode(*columns: pd.Series) -> tuple[list[np.ndarray], np.ndarray]:
    """Codes for several string columns at once (equal strings, equal codes), and the strings."""
    both = pd.concat([pd.Series(c.array) for c in columns], ignore_index=True)
    codes, uniques = pd.factorize(both)
    split = np.split(codes.astype(np.int64), np.cumsum([len(c) for c in columns])[:-1])
    return split, np.asarray(uniques, dtype=object)


def _encode_scoped(*pairs: tuple[np.ndarray, pd.Series]) -> tuple[list[np.ndarray], int]:
    """Codes for (tenant code, id) pairs: ids are unique per tenant, not across tenants."""
    ids, uniques = _encode(*(column for _, column in pairs))
    scoped = [t * len(uniques) + i for (t, _), i in zip(pairs, ids, strict=True)]
    codes, seen = pd.factorize(np.concatenate(scoped))
    return np.split(codes, np.cumsum([len(c) for c in scoped])[:-1]), len(seen)


def _first(codes: np.ndarray) -> np.ndarray:
    """True at the first occurrence of each code, in row order."""
    mask = np.zeros(len(codes), dtype=bool)
    mask[np.unique(codes, return_index=True)[1]] = True
    return mask


def _first_where(mask: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """`mask`, kept only at the first masked row of each code."""
    return np.asarray(mask & _first(np.where(mask, codes, -1 - np.arange(len(codes)))))


def _row_of(codes: np.ndarray, n: int, where: np.ndarray | None = None) -> np.ndarray:
    """For each of `n` codes, the first row (among the rows `where` is True) holding it, or -1."""
    idx = np.arange(len(codes)) if where is None else np.flatnonzero(where)
    first = idx[_first(codes[idx])]
    rows = np.full(n, -1, dtype=np.int64)
    rows[codes[first]] = first
    return rows


def _pick(values: Any, rows: np.ndarray, fill: Any) -> np.ndarray:
    """values[rows], with `fill` where rows is -1 (safe even when `values` is empty)."""
    array = np.asarray(values)
    return np.asarray(np.concatenate([array, np.array([fill], dtype=array.dtype)])[rows])


def _member(codes: np.ndarray, pool: np.ndarray, n: int) -> np.ndarray:
    seen = np.zeros(n, dtype=bool)
    seen[pool] = True
    return np.asarray(seen[codes])


def _is(column: pd.Series, *values: str) -> np.ndarray:
    return np.asarray(column.isin(values).to_numpy(dtype=bool))


@dataclass
class _Run:
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
    def encode(cls, record: RunRecord) -> _Run:
        j, pay, req = record.journal, record.payments, record.requests
        s, acc = record.settlements, record.accounts
        (tj, tp, tr, ts, ta), _ = _encode(*(x["tenant"] for x in (j, pay, req, s, acc)))
        order = np.lexsort((j["seq"].to_numpy(), tj))
        if not np.array_equal(order, np.arange(len(j))):
            j, tj = j.take(order).reset_index(drop=True), tj[order]
        payments = ((tj, j["payment_id"]), (tp, pay["payment_id"]), (tr, req["payment_id"]))
        (pj, pp, pr, ps), n_pay = _encode_scoped(*payments, (ts, s["payment_id"]))
        (cj, cp, cs, ca), _ = _encode(*(x["currency"] for x in (j, pay, s, acc)))
        accounts = ((tj, j["debit_account"]), (tj, j["credit_account"]), (ta, acc["id"]))
        (ad, ac, aa), n_acc = _encode_scoped(*accounts)
        return cls(record, j, tj, tp, tr, pj, pp, pr, ps, n_pay, cj, cp, cs, ca, ad, ac, aa, n_acc)


def audit(record: RunRecord, *, max_per_kind: int = 1000) -> AuditResult:
    """Check every invariant of DESIGN section 8 on `record`; see docs/audit.md."""
    found = _Findings()
    run = _Run.encode(record)
    _check_chain(run, found)
    release, resolved = _check_two_phase(run, found)
    _check_balances(run, release, found)
    posted_seq, posted_at = _check_payments(run, found)
    _check_settlement(run, posted_seq, posted_at, found)
    _check_statements(record, found)
    _check_liveness(run, posted_seq, resolved, found)
    return found.result(record.seed, max_per_kind)


def _text(column: pd.Series) -> pa.ChunkedArray:
    values = pc.cast(pa.array(column), pa.large_string())
    return values if isinstance(values, pa.ChunkedArray) else pa.chunked_array([values])


def _check_chain(run: _Run, found: _Findings) -> None:
    """Each tenant's chain starts at seq 1 from the genesis hash and links every entry."""
    j, tj, n = run.j, run.tj, len(run.j)
    hashes, prevs = _text(j["hash"]), _text(j["prev_hash"])
    # Each link is verified against its own stored prev_hash, so the rows are independent; the
    # prev_hash comparison then ties the links into one chain.
    recomputed = pa.array([sha256(data).hexdigest() for data in hash_inputs(j)], pa.large_string())
    bad_hash = pc.not_equal(hashes, recomputed).to_numpy(zero_copy_only=False)
    first = np.r_[True, tj[1:] != tj[:-1]][:n]
    idx = np.arange(n)
    expected_seq = idx - np.maximum.accumulate(np.where(first, idx, 0)) + 1
    bad_seq = j["seq"].to_numpy() != expected_seq
    genesis = pa.chunked_array([[GENESIS_HASH]], pa.large_string())
    before = pa.chunked_array([*genesis.chunks, *hashes.slice(0, max(n - 1, 0)).chunks])
    bad_prev = np.array(pc.not_equal(prevs, before.slice(0, n)).to_numpy(zero_copy_only=False))
    bad_prev[first] = j["prev_hash"].to_numpy(dtype=object)[first] != GENESIS_HASH
    broken = np.flatnonzero(bad_seq | bad_prev | bad_hash)
    broken = broken[_first(tj[broken])]
    why = np.select(
        [bad_seq[broken], bad_prev[broken]],
        [
            _cat("seq out of order, expected ", expected_seq[broken]),
            "prev_hash is not the hash of the entry before",
        ],
        "hash does not match the entry's content",
    )
    found.add("chain", j.iloc[broken], "chain broken at seq {seq}: {why}", why=why)


def _check_two_phase(run: _Run, found: _Findings) -> tuple[pd.DataFrame, np.ndarray]:
    """Transfer ids are unique; a pending transfer is posted or voided at most once, by a later
    entry that matches it. Returns the reservation each resolution releases (rows of the
    journal: the resolving entry and its pending entry; the amount), and a mask of the pending
    entries resolved."""
    j = run.j
    (tid, ref), n_ids = _encode_scoped((run.tj, j["transfer_id"]), (run.tj, j["pending_id"]))
    once = _first(tid)
    found.add("duplicate", j[~once], "transfer {transfer_id} is in the journal again")
    pending_row = _row_of(tid, n_ids, where=_is(j["kind"], "pending") & once)
    res = np.flatnonzero(_is(j["kind"], "post_pending", "void"))
    prow = pending_row[ref[res]]
    seq, amount = j["seq"].to_numpy(), j["amount"].to_numpy()
    ok = (prow >= 0) & (seq[res] > _pick(seq, prow, np.iinfo(np.int64).max))
    same = ok & (run.cj[res] == _pick(run.cj, prow, -1))
    same &= (run.ad[res] == _pick(run.ad, prow, -1)) & (run.ac[res] == _pick(run.ac, prow, -1))
    reserved = _pick(amount, prow, 0)
    is_void = _is(j["kind"], "void")[res]
    exceeds = np.where(is_void, amount[res] != reserved, amount[res] > reserved)
    for kind, mask, why in (
        ("conservation", ~ok, "its pending transfer is not earlier in the journal"),
        ("conservation", ok & ~same, "accounts or currency differ from its pending transfer"),
        ("conservation", same & exceeds, "amount exceeds the reservation"),
        ("duplicate", ok & ~_first_where(ok, prow), "its pending transfer was already resolved"),
    ):
        found.add(kind, j.iloc[res[mask]], "{kind} {transfer_id} of {pending_id}: " + why)
    release = pd.DataFrame({"row": res[ok], "pending_row": prow[ok], "amount": reserved[ok]})
    resolved = np.zeros(len(j), dtype=bool)
    resolved[prow[ok]] = True
    return release, resolved


_COUNTERS = ["debits_posted", "debits_pending", "credits_posted", "credits_pending"]


def _check_balances(run: _Run, release: pd.DataFrame, found: _Findings) -> None:
    """Replay the journal into the four counters of every account: check each entry's shape,
    the overdraft rule after every entry (in seq order per tenant), and the final balances."""
    j, acc, n = run.j, run.record.accounts, run.n_acc
    dcode, ccode = run.ad, run.ac
    listed = _first(run.aa)
    found.add("conservation", acc[~listed], "account {id} is listed twice", payment=None, seq=None)
    acc, acode = acc[listed], run.aa[listed]
    known = _member(np.arange(n), acode, n)
    currency = np.full(n, -1, dtype=np.int64)
    currency[acode] = run.ca[listed]
    uses = np.column_stack([dcode, ccode]).ravel()  # row i's debit at 2i, its credit at 2i+1
    first_use = _row_of(uses, n, where=~known[uses])
    stray = j.iloc[np.sort(first_use[first_use >= 0]) // 2]
    found.add("conservation", stray, "{kind} {transfer_id}: names an account not in accounts")
    amount, cj = j["amount"].to_numpy(), run.cj
    foreign = (known[dcode] & (currency[dcode] != cj)) | (known[ccode] & (currency[ccode] != cj))
    for mask, why in (
        (amount <= 0, "amount is not positive"),
        (dcode == ccode, "debits and credits the same account"),
        (foreign, "currency differs from an account's currency"),
    ):
        found.add("conservation", j[mask], "{kind} {transfer_id}: " + why)

    is_post, is_pend = _is(j["kind"], "post", "post_pending"), _is(j["kind"], "pending")
    prow, rel = release["pending_row"].to_numpy(), release["amount"].to_numpy()
    # int64 is exact unless the amounts could overflow it; then Python ints: slower, still exact.
    exact = object if int(np.abs(amount).max(initial=0)) * (len(j) + 1) >= 2**62 else np.int64
    final = np.zeros((4, n), dtype=exact)
    for counter, codes, values in (
        (0, dcode, amount * is_post),
        (1, dcode, amount * is_pend),
        (1, dcode[prow], -rel),
        (2, ccode, amount * is_post),
        (3, ccode, amount * is_pend),
        (3, ccode[prow], -rel),
    ):
        np.add.at(final[counter], codes, values.astype(exact))
    guarded = np.zeros(n, dtype=bool)
    guarded[acode] = ~acc["overdraft"].to_numpy(dtype=bool)
    _check_overdraft(run, guarded, release, exact, found)

    reported, replayed = acc[_COUNTERS].to_numpy(), final[:, acode].T
    differs = (reported != replayed).any(axis=1)
    found.add(
        "conservation",
        acc[differs],
        "account {id}: balances {had} but the journal replays to {replay}",
        had=[str(x.tolist()) for x in reported[differs]],
        replay=[str(x.tolist()) for x in replayed[differs]],
        payment=None,
        seq=None,
    )
    negative = np.asarray((reported < 0).any(axis=1) | (replayed < 0).any(axis=1), dtype=bool)
    found.add(
        "conservation",
        acc[negative],
        "account {id}: a balance counter is below zero",
        payment=None,
        seq=None,
    )
    for source, table in (("reported", reported), ("replayed", replayed)):
        sums = pd.DataFrame(table.astype(object), columns=_COUNTERS)
        sums["tenant"], sums["currency"] = acc["tenant"].to_numpy(), acc["currency"].to_numpy()
        by = sums.groupby(["tenant", "currency"]).agg(_exact_sum).reset_index()
        for side in ("posted", "pending"):
            off = by[by[f"debits_{side}"] != by[f"credits_{side}"]]
            what = f"{source} balances: {side} debits != credits in {{currency}}"
            found.add("conservation", off, what, payment=None, seq=None)


def _check_overdraft(
    run: _Run, guarded: np.ndarray, release: pd.DataFrame, exact: type, found: _Findings
) -> None:
    """A `guarded` account (no overdraft) never has debits_posted + debits_pending above
    credits_posted. That exposure grows with its debits, posted or reserved, and shrinks with
    posted credits and released reservations: its running sum per account, in journal order,
    must stay <= 0 after every entry."""
    j, m = run.j, len(run.j)
    amount, is_post = j["amount"].to_numpy(), _is(j["kind"], "post", "post_pending")
    rel_row, prow = release["row"].to_numpy(), release["pending_row"].to_numpy()
    # Within an entry: its release, then its credit, then its debit; so the running sum after
    # the entry's last row for an account is the exposure after the entry.
    acct = np.concatenate([run.ad[prow], run.ac, run.ad])
    entry = np.concatenate([rel_row, np.arange(m), np.arange(m)])
    step = np.repeat([0, 1, 2], [len(prow), m, m])
    delta = np.concatenate([-release["amount"].to_numpy(), -amount * is_post, amount])
    keep = guarded[acct] & (delta != 0)
    acct, entry, step, delta = acct[keep], entry[keep], step[keep], delta[keep]
    sort = np.argsort(acct * (3 * m + 3) + entry * 3 + step, kind="stable")
    acct, entry, delta = acct[sort], entry[sort], delta[sort].astype(exact)
    starts = np.r_[True, acct[1:] != acct[:-1]][: len(acct)]
    total = np.cumsum(delta)
    exposure = total - (total - delta)[starts][np.cumsum(starts) - 1]
    after = np.r_[starts[1:] | (entry[1:] != entry[:-1]), True][: len(acct)]
    hits = np.flatnonzero(after & (exposure > 0))
    # an exposure only grows on a debit, so the first hit per account is the debit account's
    found.add(
        "overdraft",
        j.iloc[entry[hits[_first(acct[hits])]]],
        "account {debit_account}: debits exceed credits posted",
    )


def _exact_sum(values: pd.Series) -> int:
    return sum(int(v) for v in values.tolist())


def _check_payments(run: _Run, found: _Findings) -> tuple[np.ndarray, np.ndarray]:
    """Exactly-once between the clients, the payments and the journal. Returns, per payments
    row, the seq and time of its first posting (NaN when never posted)."""
    j, pay, req, pj, pp, pr = (
        run.j,
        run.record.payments,
        run.record.requests,
        run.pj,
        run.pp,
        run.pr,
    )
    found.add("duplicate", pay[~_first(pp)], "payment listed again in payments", seq=None)
    pay_row = _row_of(pp, run.n_pay)
    with_pid = (j["payment_id"] != "").to_numpy()
    posting = np.flatnonzero(_is(j["kind"], "post", "post_pending") & with_pid)
    once = _first(pj[posting])
    found.add("duplicate", j.iloc[posting[~once]], "{kind} {transfer_id} posts it again")
    owner = pay_row[pj[posting]]
    wrong = (owner >= 0) & (
        (j["amount"].to_numpy()[posting] != _pick(pay["amount"], owner, 0))
        | (run.cj[posting] != _pick(run.cp, owner, -1))
    )
    found.add(
        "conservation",
        j.iloc[posting[wrong]],
        "posted {amount} {currency} for a payment of {of} {of_currency}",
        of=pay["amount"].to_numpy()[owner[wrong]],
        of_currency=pay["currency"].to_numpy()[owner[wrong]],
    )
    first_posting = np.full(run.n_pay, -1, dtype=np.int64)
    first_posting[pj[posting[once]]] = posting[once]
    at = first_posting[pp]
    posted = at >= 0
    posted_seq = _pick(j["seq"].to_numpy(dtype=np.float64), at, np.nan)
    posted_at = _pick(j["at"].to_numpy(), at, np.nan)

    lost = _is(pay["status"], "posted", "settled") & ~posted
    found.add("lost", pay[lost], "status {status} but no posting in the journal", seq=None)
    refused = _is(pay["status"], *REFUSED) & posted
    found.add("phantom", pay[refused], "posted although {status}", seq=posted_seq[refused])
    ack = (req["status"] == 202).to_numpy()
    with_id = (req["payment_id"] != "").to_numpy()
    gone = _first_where(ack & with_id & (pay_row[pr] < 0), pr)
    found.add("lost", req[gone], "acknowledged (202) to key {key} but not in payments", seq=None)
    (kp, kr), n_keys = _encode_scoped((run.tp, pay["idempotency_key"]), (run.tr, req["key"]))
    gone = _first_where(ack & ~with_id & ~_member(kr, kp, n_keys), kr)
    found.add(
        "lost",
        req[gone],
        "key {key} acknowledged (202) but no payment has it",
        payment=None,
        seq=None,
    )

    backed = (pay_row[pj] >= 0) | _member(pj, pr[ack], run.n_pay)
    found.add(
        "phantom",
        j[_first_where(with_pid & ~backed, pj)],
        "{kind} {transfer_id} for a payment no acknowledged request or payments row stands behind",
    )
    unasked = posted & ~_member(kp, kr, n_keys)
    found.add(
        "phantom",
        pay[unasked],
        "posted for key {idempotency_key} that no client sent",
        seq=posted_seq[unasked],
    )
    by_key = np.flatnonzero(posted & _first(pp))
    by_key = by_key[np.lexsort((posted_seq[by_key], kp[by_key]))]
    twice = by_key[np.r_[False, kp[by_key][1:] == kp[by_key][:-1]][: len(by_key)]]
    found.add(
        "duplicate",
        pay.iloc[twice],
        "another payment was posted for key {idempotency_key}",
        seq=posted_seq[twice],
    )
    return posted_seq, posted_at


def _check_settlement(
    run: _Run, posted_seq: np.ndarray, posted_at: np.ndarray, found: _Findings
) -> None:
    """Every posted payment settles exactly once, in a batch for its amount."""
    pay, s, ps = run.record.payments, run.record.settlements, run.ps
    owner = _row_of(run.pp, run.n_pay)[ps]
    seq = _pick(posted_seq, owner, np.nan)
    found.add("phantom", s[np.isnan(seq)], "settled in batch {batch_id} but never posted", seq=None)
    again = ~_first(ps)
    found.add("duplicate", s[again], "settled again in batch {batch_id}", seq=seq[again])
    wrong = (owner >= 0) & (
        (s["amount"].to_numpy() != _pick(pay["amount"], owner, 0))
        | (run.cs != _pick(run.cp, owner, -1))
    )
    found.add(
        "settlement",
        s[wrong],
        "batch {batch_id} settles {amount} {currency}, not the payment's amount",
        seq=seq[wrong],
    )
    last_cutoff = s["cutoff_at"].max() if len(s) else -np.inf
    unsettled = ~np.isnan(posted_seq) & ~_is(pay["status"], *REFUSED)
    unsettled &= ~_member(run.pp, ps, run.n_pay)
    late = (posted_at > last_cutoff) & (pay["status"] != "settled").to_numpy()
    for kind, mask, why in (
        ("settlement", unsettled & ~late, "in no batch though posted before the last cut-off"),
        ("liveness", unsettled & late, "posted after the last cut-off, not settled yet"),
    ):
        found.add(kind, pay[mask], why + " (status {status})", seq=posted_seq[mask])


def _check_statements(record: RunRecord, found: _Findings) -> None:
    """Line by line, what each batch settled for a payment against what the bank booked for it
    (credits minus reversals; fees are the bank's charges, not principal). A difference needs a
    break for that batch and payment; every break must be classified."""
    s, breaks = record.settlements, record.breaks
    lines = record.statements[(record.statements["entry_kind"] != "fee").to_numpy()]
    (bs, bl, bb), batches = _encode(s["batch_id"], lines["batch_id"], breaks["batch_id"])
    (es, el, eb), ids = _encode(s["payment_id"], lines["end_to_end_id"], breaks["payment_id"])
    (cs, cl), currencies = _encode(s["currency"], lines["currency"])
    sign = np.where((lines["entry_kind"] == "credit").to_numpy(), 1, -1)
    keys = ["batch", "payment", "currency"]
    settled = pd.DataFrame({"batch": bs, "payment": es, "currency": cs, "settled": s["amount"]})
    booked = pd.DataFrame(
        {"batch": bl, "payment": el, "currency": cl, "booked": sign * lines["amount"].to_numpy()}
    )
    both = pd.concat([settled.groupby(keys).sum(), booked.groupby(keys).sum()], axis=1)
    both = both.fillna(0).astype(np.int64).reset_index()
    off = both[both["settled"] != both["booked"]]
    pair = off["batch"].to_numpy() * len(ids) + off["payment"].to_numpy()
    off = off[~np.isin(pair, bb * len(ids) + eb)]
    tenant_of_batch = _pick(s["tenant"].to_numpy(dtype=object), _row_of(bs, len(batches)), "")
    rows = off.assign(
        tenant=tenant_of_batch[off["batch"]],
        payment_id=ids[off["payment"]],
        batch_id=batches[off["batch"]],
        code=currencies[off["currency"]],
    )
    found.add(
        "settlement",
        rows,
        "batch {batch_id} settled {settled} {code}, the statement "
        "shows {booked}, and no break explains it",
        seq=None,
    )
    vague = (breaks["kind"] == "unclassified").to_numpy()
    rows = breaks[vague].assign(tenant=tenant_of_batch[bb[vague]])
    found.add("settlement", rows, "break {break_id} in batch {batch_id} is unclassified", seq=None)


def _check_liveness(
    run: _Run, posted_seq: np.ndarray, resolved: np.ndarray, found: _Findings
) -> None:
    """Work the run never finished: payments stuck mid-flow, reservations never released."""
    pay, j = run.record.payments, run.j
    stuck = _is(pay["status"], *NON_TERMINAL)
    found.add("liveness", pay[stuck], "still {status} after the drain", seq=posted_seq[stuck])
    held = _is(j["kind"], "pending") & ~resolved & _member(run.pj, run.pp[~stuck], run.n_pay)
    found.add("liveness", j[held], "reservation {transfer_id} never posted or voided")
