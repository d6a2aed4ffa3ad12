"""Benchmark: can the audit keep up with a big run? `python -m reports.bench_audit`.

It synthesises a realistic, clean run record (several tenants and currencies, Zipf-skewed
accounts, two-phase postings, screening rejections, voided reservations, client retries and
replays, settlement batches at cut-offs, bank statements with fees and classified breaks),
writes it, and times in the same process a baseline (reading the Parquet files with pandas) and
the audit, printing both and their ratio, and PASS or MISS against the budget of 30 s for
loading and auditing a million payments. The record is generated column-wise with numpy; only
the hash chain is a loop, as it is in any real journal.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from hashlib import sha256
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reports.audit import audit
from reports.record import GENESIS_HASH, SCHEMAS, canonical_bodies, load_run, write_run_record

BUDGET_SECONDS = 30.0
CURRENCIES = np.array(["USD", "EUR"], dtype=object)
PARTNERS = np.array(["bank-a", "bank-b"], dtype=object)
FUNDS = 10**12
CUTOFF_EVERY = 60.0


def _s(values: Any) -> pd.Series:
    return pd.Series(np.asarray(values, dtype=object)).astype("str")


def _chain(journal: pd.DataFrame) -> None:
    """Fill prev_hash and hash: the one sequential step, as in the ledger that writes them."""
    bodies = canonical_bodies(journal)
    tenants = journal["tenant"].tolist()
    prev_hashes, hashes = [], []
    head, tenant = GENESIS_HASH, None
    for t, body in zip(tenants, bodies, strict=True):
        if t != tenant:
            head, tenant = GENESIS_HASH, t
        prev_hashes.append(head)
        head = sha256((head + body).encode()).hexdigest()
        hashes.append(head)
    journal["prev_hash"], journal["hash"] = _s(prev_hashes), _s(hashes)


def _journal(tenant: np.ndarray, cols: dict[str, Any], n_accounts: int) -> pd.DataFrame:
    """Funding entries first (one per customer account), then the payments' entries by time."""
    n_t = int(tenant.max(initial=0)) + 1
    ft = np.repeat(np.arange(n_t), 2 * n_accounts)
    fc = np.tile(np.repeat([0, 1], n_accounts), n_t)
    fa = np.tile(np.arange(n_accounts), 2 * n_t)
    fund_names = _s("acc-" + pd.Series(fa).astype(str) + "-" + CURRENCIES[fc])
    funding = pd.DataFrame(
        {
            "tenant": ft,
            "transfer_id": "fund-" + fund_names,
            "payment_id": "",
            "kind": "post",
            "pending_id": "",
            "debit_account": _s("funding-" + CURRENCIES[fc]),
            "credit_account": fund_names,
            "amount": np.full(len(ft), FUNDS, np.int64),
            "currency": _s(CURRENCIES[fc]),
            "at": np.zeros(len(ft)),
        }
    )
    entries = pd.concat([funding, pd.DataFrame({"tenant": tenant, **cols})], ignore_index=True)
    entries = entries.sort_values(["tenant", "at"], kind="stable", ignore_index=True)
    entries.insert(1, "seq", entries.groupby("tenant").cumcount().to_numpy(np.int64) + 1)
    entries["tenant"] = _s("tenant-" + entries["tenant"].astype(str))
    entries["prev_hash"] = entries["hash"] = ""
    _chain(entries)
    return entries


def _accounts(journal: pd.DataFrame, n_tenants: int, n_accounts: int) -> pd.DataFrame:
    """Final balances: every reservation is resolved by the end, so only posted counters move."""
    posting = journal[journal["kind"].isin(("post", "post_pending"))]
    debits = posting.groupby(["tenant", "debit_account"])["amount"].sum()
    credits = posting.groupby(["tenant", "credit_account"])["amount"].sum()
    names = [f"acc-{a}-{c}" for c in CURRENCIES for a in range(n_accounts)]
    rows = pd.DataFrame(
        {
            "tenant": np.repeat([f"tenant-{t}" for t in range(n_tenants)], len(names) + 2),
            "id": np.tile(["funding-USD", "funding-EUR", *names], n_tenants),
        }
    )
    key = pd.MultiIndex.from_frame(rows)
    return rows.assign(
        id=_s(rows["id"]),
        tenant=_s(rows["tenant"]),
        currency=_s(rows["id"].str[-3:]),
        overdraft=rows["id"].str.startswith("funding").to_numpy(bool),
        debits_posted=debits.reindex(key, fill_value=0).to_numpy(np.int64),
        debits_pending=np.zeros(len(rows), np.int64),
        credits_posted=credits.reindex(key, fill_value=0).to_numpy(np.int64),
        credits_pending=np.zeros(len(rows), np.int64),
    )


def synthesise(
    payments: int, seed: int = 1, tenants: int = 4, accounts: int = 2_000, rate: float = 1_000.0
) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """A clean run record of `payments` payments: the tables for write_run_record, and meta."""
    rng = np.random.default_rng(seed)
    n = payments
    ids = _s(np.char.add("pay-", np.char.zfill(np.arange(n).astype(str), 8)))
    keys = "key-" + ids.str[4:]
    tenant = rng.integers(0, tenants, n)
    cur = rng.integers(0, 2, n)
    debtor = np.minimum(rng.zipf(1.3, n) - 1, accounts - 1)
    creditor = (debtor + 1 + rng.integers(0, accounts - 1, n)) % accounts
    debtor_name = _s("acc-" + pd.Series(debtor).astype(str) + "-" + CURRENCIES[cur])
    creditor_name = _s("acc-" + pd.Series(creditor).astype(str) + "-" + CURRENCIES[cur])
    amount = np.round(rng.lognormal(8, 1.5, n)).astype(np.int64) + 1
    received = np.cumsum(rng.exponential(1 / rate, n))
    reserved_at = received + rng.exponential(0.05, n)
    done_at = reserved_at + rng.exponential(0.05, n)
    fate = rng.random(n)
    refused, failed = fate < 0.02, (fate >= 0.02) & (fate < 0.03)
    posted = ~refused & ~failed

    led = ~refused
    second = np.where(posted[led], "post_pending", "void")
    tid = ids[led].to_numpy()
    cols: dict[str, Any] = {
        "transfer_id": np.concatenate([tid + "-r", tid + np.where(posted[led], "-p", "-v")]),
        "payment_id": np.tile(tid, 2),
        "kind": np.concatenate([np.full(led.sum(), "pending", object), second]),
        "pending_id": np.concatenate([np.full(led.sum(), "", object), tid + "-r"]),
        "debit_account": np.tile(debtor_name[led].to_numpy(), 2),
        "credit_account": np.tile(creditor_name[led].to_numpy(), 2),
        "amount": np.tile(amount[led], 2),
        "currency": np.tile(CURRENCIES[cur][led], 2),
        "at": np.concatenate([reserved_at[led], done_at[led]]),
    }
    cols = {k: _s(v) if v.dtype == object else v for k, v in cols.items()}
    journal = _journal(np.tile(tenant[led], 2), cols, accounts)

    tenant_name = _s("tenant-" + pd.Series(tenant).astype(str))
    cutoff = (np.floor(done_at / CUTOFF_EVERY) + 1) * CUTOFF_EVERY
    partner = PARTNERS[creditor % 2]
    batch = _s(tenant_name + "-" + partner + "-" + CURRENCIES[cur] + "-" + _s(cutoff.astype(int)))
    settlements = pd.DataFrame(
        {
            "batch_id": batch,
            "tenant": tenant_name,
            "partner": _s(partner),
            "currency": _s(CURRENCIES[cur]),
            "payment_id": ids,
            "amount": amount,
            "cutoff_at": cutoff,
            "sent_at": cutoff + 1.0,
        }
    )[posted].sort_values(["cutoff_at", "batch_id"], kind="stable", ignore_index=True)
    booked = settlements["cutoff_at"].to_numpy() + 3_600.0
    late = rng.random(len(settlements)) < 0.001
    short = ~late & (rng.random(len(settlements)) < 0.0005)
    statements = pd.DataFrame(
        {
            "partner": settlements["partner"],
            "statement_id": "st-" + settlements["batch_id"],
            "batch_id": settlements["batch_id"],
            "end_to_end_id": settlements["payment_id"],
            "amount": settlements["amount"].to_numpy() - short,
            "currency": settlements["currency"],
            "booking_at": booked + 86_400.0 * late,
            "value_at": booked,
            "entry_kind": "credit",
        }
    )
    fees = statements.drop_duplicates("batch_id").assign(
        end_to_end_id="", amount=25, entry_kind="fee"
    )
    statements = pd.concat([statements, fees], ignore_index=True)
    statements["entry_kind"] = _s(statements["entry_kind"])
    statements["end_to_end_id"] = _s(statements["end_to_end_id"])
    flagged = settlements[late | short]
    breaks = pd.DataFrame(
        {
            "break_id": _s("brk-" + pd.Series(np.arange(len(flagged))).astype(str)),
            "partner": flagged["partner"].to_numpy(),
            "batch_id": flagged["batch_id"].to_numpy(),
            "payment_id": flagged["payment_id"].to_numpy(),
            "kind": np.where(short[late | short], "amount", "timing"),
            "detail": np.where(short[late | short], "bank booked 1 less", "booked a day late"),
        }
    ).astype({c: "str" for c in ("partner", "batch_id", "payment_id", "kind", "detail")})

    status = np.where(posted, "settled", np.where(refused, "rejected", "failed"))
    payments_t = pd.DataFrame(
        {
            "payment_id": ids,
            "tenant": tenant_name,
            "idempotency_key": keys,
            "debtor_account": debtor_name,
            "creditor_account": creditor_name,
            "amount": amount,
            "currency": _s(CURRENCIES[cur]),
            "status": _s(status),
            "reason": _s(
                np.where(refused, "screening", np.where(failed, "ledger unavailable", ""))
            ),
            "received_at": received,
            "posted_at": np.where(posted, done_at, np.nan),
            "settled_at": np.where(posted, cutoff + 3_600.0, np.nan),
        }
    )

    # Clients: 3% of keys time out first and retry; 1% are replayed after their 202.
    timed_out = rng.random(n) < 0.03
    replayed = rng.random(n) < 0.01
    first_sent = received - np.where(timed_out, 2.0, 0.0)
    req = [
        (timed_out, first_sent, np.nan, 0, "", "timeout", 1),
        (np.ones(n, bool), received, received + 0.002, 202, None, "accepted", 1 + timed_out),
        (replayed, received + 5.0, received + 5.002, 202, None, "replayed", 2 + timed_out),
    ]
    parts = []
    for mask, sent, done, code, pid, outcome, attempt in req:
        parts.append(
            pd.DataFrame(
                {
                    "key": keys[mask],
                    "tenant": tenant_name[mask],
                    "attempt": np.broadcast_to(np.asarray(attempt), n)[mask].astype(np.int64),
                    "intended_at": np.asarray(sent)[mask],
                    "sent_at": np.asarray(sent)[mask],
                    "done_at": np.broadcast_to(np.asarray(done), n)[mask],
                    "status": code,
                    "payment_id": ids[mask] if pid is None else pid,
                    "outcome": outcome,
                }
            )
        )
    requests = pd.concat(parts, ignore_index=True).sort_values("sent_at", ignore_index=True)
    for c in ("payment_id", "outcome"):
        requests[c] = _s(requests[c])

    span = float(done_at.max(initial=0.0))
    ticks = np.arange(0.0, span + 1.0, 1.0)
    node_names = ["gateway-1", "payments-worker-1", "ledger-primary"]
    nodes = pd.DataFrame(
        {
            "at": np.repeat(ticks, 3),
            "node": _s(np.tile(node_names, len(ticks))),
            "utilization": rng.uniform(0.2, 0.9, 3 * len(ticks)),
            "cpu": rng.uniform(0.1, 0.5, 3 * len(ticks)),
            "queue_length": rng.poisson(3, 3 * len(ticks)).astype(np.int64),
            "busy_workers": rng.integers(0, 8, 3 * len(ticks)),
            "lag": rng.poisson(10, 3 * len(ticks)).astype(np.int64),
            "headroom": rng.uniform(1.0, 3.0, 3 * len(ticks)),
        }
    )
    partitions = pd.DataFrame(
        {
            "at": np.repeat(ticks, 8),
            "group": _s(np.full(8 * len(ticks), "payments")),
            "partition": np.tile(np.arange(8, dtype=np.int64), len(ticks)),
            "member": _s(np.full(8 * len(ticks), "payments-1#1")),
            "lag": rng.poisson(2, 8 * len(ticks)).astype(np.int64),
        }
    )
    faults = pd.DataFrame(
        {
            "start": [span / 3, span / 2],
            "end": [span / 3 + 5.0, np.nan],
            "kind": _s(["partition", "crash"]),
            "target": _s(["zone-a|zone-b", "payments-worker-1"]),
            "detail": _s(["symmetric", "SIGKILL, restarted after 2 s"]),
        }
    )
    tables = {
        "requests": requests,
        "payments": payments_t,
        "journal": journal,
        "accounts": _accounts(journal, tenants, accounts),
        "settlements": settlements,
        "statements": statements,
        "breaks": breaks,
        "faults": faults,
        "nodes": nodes,
        "partitions": partitions,
    }
    tables = {name: t[list(SCHEMAS[name].names)] for name, t in tables.items()}
    return tables, {"mode": "sim", "seed": seed, "synthetic": True, "payments": n}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reports.bench_audit", description=__doc__)
    parser.add_argument("--payments", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, help="keep the run record here (default: a temp dir)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        t0 = time.perf_counter()
        tables, meta = synthesise(args.payments, seed=args.seed)
        t1 = time.perf_counter()
        write_run_record(out, tables=tables, meta=meta, scenario_yaml="synthetic: true\n")
        t2 = time.perf_counter()
        print(
            f"synthesised {args.payments:,} payments, {len(tables['journal']):,} journal "
            f"entries in {t1 - t0:.1f} s; written in {t2 - t1:.1f} s"
        )
        del tables
        t3 = time.perf_counter()
        for name in SCHEMAS:
            pd.read_parquet(out / f"{name}.parquet")
        baseline = time.perf_counter() - t3
        t4 = time.perf_counter()
        record = load_run(out)
        t5 = time.perf_counter()
        result = audit(record)
        t6 = time.perf_counter()
    load, check, total = t5 - t4, t6 - t5, t6 - t4
    verdict = "PASS" if total < BUDGET_SECONDS else "MISS"
    print(f"baseline (pd.read_parquet of every table): {baseline:6.2f} s")
    print(f"load_run (read + schema check):            {load:6.2f} s")
    print(
        f"audit:                                     {check:6.2f} s  "
        f"({check / baseline:.1f}x baseline)"
    )
    print(
        f"load_run + audit:                          {total:6.2f} s  "
        f"({total / baseline:.1f}x baseline)  {verdict} (budget {BUDGET_SECONDS:.0f} s)"
    )
    print(f"violations: {sum(result.counts.values())} {dict(result.counts)}")
    return 0 if verdict == "PASS" and result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
