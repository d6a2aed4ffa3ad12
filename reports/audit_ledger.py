"""The audit's ledger checks: the hash chain, two-phase resolution, balances against a replay
of the journal, and overdraft (docs/audit.md).
"""

from __future__ import annotations

from hashlib import sha256
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from reports.audit_vectors import (
    cat,
    encode_scoped,
    first,
    first_where,
    is_,
    member,
    pick,
    row_of,
    text,
)
from reports.record import GENESIS_HASH, hash_inputs

if TYPE_CHECKING:
    from reports.audit import EncodedRun, Findings


def check_chain(run: EncodedRun, found: Findings) -> None:
    """Each tenant's chain starts at seq 1 from the genesis hash and links every entry."""
    j, tj, n = run.j, run.tj, len(run.j)
    hashes, prevs = text(j["hash"]), text(j["prev_hash"])
    # Each link is verified against its own stored prev_hash, so the rows are independent; the
    # prev_hash comparison then ties the links into one chain.
    recomputed = pa.array([sha256(data).hexdigest() for data in hash_inputs(j)], pa.large_string())
    bad_hash = pc.not_equal(hashes, recomputed).to_numpy(zero_copy_only=False)
    starts = np.r_[True, tj[1:] != tj[:-1]][:n]
    idx = np.arange(n)
    expected_seq = idx - np.maximum.accumulate(np.where(starts, idx, 0)) + 1
    bad_seq = j["seq"].to_numpy() != expected_seq
    genesis = pa.chunked_array([[GENESIS_HASH]], pa.large_string())
    before = pa.chunked_array([*genesis.chunks, *hashes.slice(0, max(n - 1, 0)).chunks])
    bad_prev = np.array(pc.not_equal(prevs, before.slice(0, n)).to_numpy(zero_copy_only=False))
    bad_prev[starts] = j["prev_hash"].to_numpy(dtype=object)[starts] != GENESIS_HASH
    broken = np.flatnonzero(bad_seq | bad_prev | bad_hash)
    broken = broken[first(tj[broken])]
    why = np.select(
        [bad_seq[broken], bad_prev[broken]],
        [
            cat("seq out of order, expected ", expected_seq[broken]),
            "prev_hash is not the hash of the entry before",
        ],
        "hash does not match the entry's content",
    )
    found.add("chain", j.iloc[broken], "chain broken at seq {seq}: {why}", why=why)


def check_two_phase(run: EncodedRun, found: Findings) -> tuple[pd.DataFrame, np.ndarray]:
    """Transfer ids are unique; a pending transfer is posted or voided at most once, by a later
    entry that matches it. Returns the reservation each resolution releases (rows of the
    journal: the resolving entry and its pending entry; the amount), and a mask of the pending
    entries resolved."""
    j = run.j
    (tid, ref), n_ids = encode_scoped((run.tj, j["transfer_id"]), (run.tj, j["pending_id"]))
    once = first(tid)
    found.add("duplicate", j[~once], "transfer {transfer_id} is in the journal again")
    pending_row = row_of(tid, n_ids, where=is_(j["kind"], "pending") & once)
    res = np.flatnonzero(is_(j["kind"], "post_pending", "void"))
    prow = pending_row[ref[res]]
    seq, amount = j["seq"].to_numpy(), j["amount"].to_numpy()
    ok = (prow >= 0) & (seq[res] > pick(seq, prow, np.iinfo(np.int64).max))
    same = ok & (run.cj[res] == pick(run.cj, prow, -1))
    same &= (run.ad[res] == pick(run.ad, prow, -1)) & (run.ac[res] == pick(run.ac, prow, -1))
    reserved = pick(amount, prow, 0)
    is_void = is_(j["kind"], "void")[res]
    exceeds = np.where(is_void, amount[res] != reserved, amount[res] > reserved)
    for kind, mask, why in (
        ("conservation", ~ok, "its pending transfer is not earlier in the journal"),
        ("conservation", ok & ~same, "accounts or currency differ from its pending transfer"),
        ("conservation", same & exceeds, "amount exceeds the reservation"),
        ("duplicate", ok & ~first_where(ok, prow), "its pending transfer was already resolved"),
    ):
        found.add(kind, j.iloc[res[mask]], "{kind} {transfer_id} of {pending_id}: " + why)
    release = pd.DataFrame({"row": res[ok], "pending_row": prow[ok], "amount": reserved[ok]})
    resolved = np.zeros(len(j), dtype=bool)
    resolved[prow[ok]] = True
    return release, resolved


_COUNTERS = ["debits_posted", "debits_pending", "credits_posted", "credits_pending"]


def check_balances(run: EncodedRun, release: pd.DataFrame, found: Findings) -> None:
    """Replay the journal into the four counters of every account: check each entry's shape,
    the overdraft rule after every entry (in seq order per tenant), and the final balances."""
    j, acc, n = run.j, run.record.accounts, run.n_acc
    dcode, ccode = run.ad, run.ac
    listed = first(run.aa)
    found.add("conservation", acc[~listed], "account {id} is listed twice", payment=None, seq=None)
    acc, acode = acc[listed], run.aa[listed]
    known = member(np.arange(n), acode, n)
    currency = np.full(n, -1, dtype=np.int64)
    currency[acode] = run.ca[listed]
    uses = np.column_stack([dcode, ccode]).ravel()  # row i's debit at 2i, its credit at 2i+1
    first_use = row_of(uses, n, where=~known[uses])
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

    is_post, is_pend = is_(j["kind"], "post", "post_pending"), is_(j["kind"], "pending")
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
    check_overdraft(run, guarded, release, exact, found)

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


def check_overdraft(
    run: EncodedRun, guarded: np.ndarray, release: pd.DataFrame, exact: type, found: Findings
) -> None:
    """A `guarded` account (no overdraft) never has debits_posted + debits_pending above
    credits_posted. That exposure grows with its debits, posted or reserved, and shrinks with
    posted credits and released reservations: its running sum per account, in journal order,
    must stay <= 0 after every entry."""
    j, m = run.j, len(run.j)
    amount, is_post = j["amount"].to_numpy(), is_(j["kind"], "post", "post_pending")
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
        j.iloc[entry[hits[first(acct[hits])]]],
        "account {debit_account}: debits exceed credits posted",
    )


def _exact_sum(values: pd.Series) -> int:
    return sum(int(v) for v in values.tolist())
