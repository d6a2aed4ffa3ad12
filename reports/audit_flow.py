"""The audit's flow checks: exactly-once between clients, payments and the journal, settlement
batches against postings and statements, and liveness (docs/audit.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from reports.audit_vectors import (
    encode,
    encode_scoped,
    first,
    first_where,
    is_,
    member,
    pick,
    row_of,
)
from reports.record import RunRecord

if TYPE_CHECKING:
    from reports.audit import EncodedRun, Findings

NON_TERMINAL = ("received", "screening", "reserved")
REFUSED = ("rejected", "failed")


def check_payments(run: EncodedRun, found: Findings) -> tuple[np.ndarray, np.ndarray]:
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
    found.add("duplicate", pay[~first(pp)], "payment listed again in payments", seq=None)
    pay_row = row_of(pp, run.n_pay)
    with_pid = (j["payment_id"] != "").to_numpy()
    posting = np.flatnonzero(is_(j["kind"], "post", "post_pending") & with_pid)
    once = first(pj[posting])
    found.add("duplicate", j.iloc[posting[~once]], "{kind} {transfer_id} posts it again")
    owner = pay_row[pj[posting]]
    wrong = (owner >= 0) & (
        (j["amount"].to_numpy()[posting] != pick(pay["amount"], owner, 0))
        | (run.cj[posting] != pick(run.cp, owner, -1))
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
    posted_seq = pick(j["seq"].to_numpy(dtype=np.float64), at, np.nan)
    posted_at = pick(j["at"].to_numpy(), at, np.nan)

    lost = is_(pay["status"], "posted", "settled") & ~posted
    found.add("lost", pay[lost], "status {status} but no posting in the journal", seq=None)
    refused = is_(pay["status"], *REFUSED) & posted
    found.add("phantom", pay[refused], "posted although {status}", seq=posted_seq[refused])
    ack = (req["status"] == 202).to_numpy()
    with_id = (req["payment_id"] != "").to_numpy()
    gone = first_where(ack & with_id & (pay_row[pr] < 0), pr)
    found.add("lost", req[gone], "acknowledged (202) to key {key} but not in payments", seq=None)
    (kp, kr), n_keys = encode_scoped((run.tp, pay["idempotency_key"]), (run.tr, req["key"]))
    gone = first_where(ack & ~with_id & ~member(kr, kp, n_keys), kr)
    found.add(
        "lost",
        req[gone],
        "key {key} acknowledged (202) but no payment has it",
        payment=None,
        seq=None,
    )

    backed = (pay_row[pj] >= 0) | member(pj, pr[ack], run.n_pay)
    found.add(
        "phantom",
        j[first_where(with_pid & ~backed, pj)],
        "{kind} {transfer_id} for a payment no acknowledged request or payments row stands behind",
    )
    unasked = posted & ~member(kp, kr, n_keys)
    found.add(
        "phantom",
        pay[unasked],
        "posted for key {idempotency_key} that no client sent",
        seq=posted_seq[unasked],
    )
    by_key = np.flatnonzero(posted & first(pp))
    by_key = by_key[np.lexsort((posted_seq[by_key], kp[by_key]))]
    twice = by_key[np.r_[False, kp[by_key][1:] == kp[by_key][:-1]][: len(by_key)]]
    found.add(
        "duplicate",
        pay.iloc[twice],
        "another payment was posted for key {idempotency_key}",
        seq=posted_seq[twice],
    )
    return posted_seq, posted_at


def check_settlement(
    run: EncodedRun, posted_seq: np.ndarray, posted_at: np.ndarray, found: Findings
) -> None:
    """Every posted payment settles exactly once, in a batch for its amount."""
    pay, s, ps = run.record.payments, run.record.settlements, run.ps
    owner = row_of(run.pp, run.n_pay)[ps]
    seq = pick(posted_seq, owner, np.nan)
    found.add("phantom", s[np.isnan(seq)], "settled in batch {batch_id} but never posted", seq=None)
    again = ~first(ps)
    found.add("duplicate", s[again], "settled again in batch {batch_id}", seq=seq[again])
    wrong = (owner >= 0) & (
        (s["amount"].to_numpy() != pick(pay["amount"], owner, 0))
        | (run.cs != pick(run.cp, owner, -1))
    )
    found.add(
        "settlement",
        s[wrong],
        "batch {batch_id} settles {amount} {currency}, not the payment's amount",
        seq=seq[wrong],
    )
    # A payment posted shortly before a cut-off may reach the settlement consumer after it and
    # go into the next batch; the record holds sent batches only, so one posted after the
    # cut-off before the last may be in the batch still open when the run ended (liveness).
    # Posted before that, it had a whole batch to be taken in: in none, it is a violation.
    cutoffs = np.unique(s["cutoff_at"].to_numpy(dtype=float))
    last_cutoff = cutoffs[-1] if len(cutoffs) else -np.inf
    previous_cutoff = cutoffs[-2] if len(cutoffs) > 1 else -np.inf
    unsettled = ~np.isnan(posted_seq) & ~is_(pay["status"], *REFUSED)
    unsettled &= ~member(run.pp, ps, run.n_pay)
    waiting = (pay["status"] != "settled").to_numpy()
    late = (posted_at > last_cutoff) & waiting
    open_batch = (posted_at > previous_cutoff) & ~late & waiting
    for kind, mask, why in (
        ("settlement", unsettled & ~late & ~open_batch,
         "in no batch though posted before the cut-off before the last"),
        ("liveness", unsettled & open_batch,
         "posted before the last cut-off, in no sent batch: in the one still open"),
        ("liveness", unsettled & late, "posted after the last cut-off, not settled yet"),
    ):  # fmt: skip
        found.add(kind, pay[mask], why + " (status {status})", seq=posted_seq[mask])


def check_statements(record: RunRecord, found: Findings) -> None:
    """Line by line, what each batch settled for a payment against what the bank booked for it
    (credits minus reversals; fees are the bank's charges, not principal). A difference needs a
    break for that batch and payment; every break must be classified."""
    s, breaks = record.settlements, record.breaks
    lines = record.statements[(record.statements["entry_kind"] != "fee").to_numpy()]
    (bs, bl, bb), batches = encode(s["batch_id"], lines["batch_id"], breaks["batch_id"])
    (es, el, eb), ids = encode(s["payment_id"], lines["end_to_end_id"], breaks["payment_id"])
    (cs, cl), currencies = encode(s["currency"], lines["currency"])
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
    tenant_of_batch = pick(s["tenant"].to_numpy(dtype=object), row_of(bs, len(batches)), "")
    rows = off.assign(
        tenant=tenant_of_batch[off["batch"]],
        payment_id=ids[off["payment"]],
        batch_id=batches[off["batch"]],
        code=currencies[off["currency"]],
    )
    # A run cut short by its drain deadline may end before the partner's statement for a sent
    # batch: a batch with no line in any statement and no break then waits for it (liveness).
    unbooked = ~np.isin(off["batch"].to_numpy(), np.concatenate([bl, bb]))
    waiting = unbooked if record.meta.get("drained") is False else np.zeros(len(off), bool)
    found.add(
        "settlement",
        rows[~waiting],
        "batch {batch_id} settled {settled} {code}, the statement "
        "shows {booked}, and no break explains it",
        seq=None,
    )
    found.add(
        "liveness",
        rows[waiting],
        "batch {batch_id} sent, no statement of the partner covers it yet (the drain ran out)",
        seq=None,
    )
    vague = (breaks["kind"] == "unclassified").to_numpy()
    rows = breaks[vague].assign(tenant=tenant_of_batch[bb[vague]])
    found.add("settlement", rows, "break {break_id} in batch {batch_id} is unclassified", seq=None)


def check_liveness(
    run: EncodedRun, posted_seq: np.ndarray, resolved: np.ndarray, found: Findings
) -> None:
    """Work the run never finished: payments stuck mid-flow, reservations never released."""
    pay, j = run.record.payments, run.j
    stuck = is_(pay["status"], *NON_TERMINAL)
    found.add("liveness", pay[stuck], "still {status} after the drain", seq=posted_seq[stuck])
    held = is_(j["kind"], "pending") & ~resolved & member(run.pj, run.pp[~stuck], run.n_pay)
    found.add("liveness", j[held], "reservation {transfer_id} never posted or voided")
