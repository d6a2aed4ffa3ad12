"""The audit finds each kind of violation it claims to, names the payment, seq and seed, and
finds nothing in a clean run.

`Run` builds a small, consistent run record from transfers and payments: the journal's hashes
and the account balances are derived here with a plain loop (json + hashlib, independent of
reports.record), so a test that changes a transfer gets a record that is consistent except for
the one fault it injects.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from reports.audit import KINDS, audit, write_audit
from reports.bench_audit import synthesise
from reports.record import SCHEMAS, RunRecord, empty_table, load_run, write_run_record

SEED = 42
NAN = math.nan


class Run:
    """A run under construction: accounts, journal entries (seq and hashes assigned at build),
    payments with their client requests, settlement batches with matching statement lines."""

    def __init__(self) -> None:
        self.clock = 0.0
        self.accounts: dict[tuple[str, str], dict[str, Any]] = {}
        self.entries: list[dict[str, Any]] = []
        self.payments: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []
        self.settlements: list[dict[str, Any]] = []
        self.statements: list[dict[str, Any]] = []
        self.breaks: list[dict[str, Any]] = []

    def tick(self) -> float:
        self.clock += 1.0
        return self.clock

    def account(self, tenant: str, name: str, currency: str = "USD", overdraft: bool = False):
        self.accounts[tenant, name] = {
            "tenant": tenant,
            "id": name,
            "currency": currency,
            "overdraft": overdraft,
        }

    def entry(self, tenant, tid, kind, debit, credit, amount, currency="USD", pid="", pending=""):
        e = {
            "tenant": tenant,
            "transfer_id": tid,
            "payment_id": pid,
            "kind": kind,
            "pending_id": pending,
            "debit_account": debit,
            "credit_account": credit,
            "amount": amount,
            "currency": currency,
            "at": self.tick(),
        }
        self.entries.append(e)
        return e

    def fund(self, tenant: str, name: str, amount: int, currency: str = "USD") -> None:
        self.entry(tenant, f"fund-{name}", "post", f"funding-{currency}", name, amount, currency)

    def request(self, tenant, key, status, outcome, pid="", attempt=1):
        t = self.tick()
        done = NAN if status == 0 else t + 0.5
        self.requests.append(
            {
                "key": key,
                "tenant": tenant,
                "attempt": attempt,
                "intended_at": t,
                "sent_at": t,
                "done_at": done,
                "status": status,
                "payment_id": pid,
                "outcome": outcome,
            }
        )

    def pay(
        self,
        tenant,
        pid,
        debtor,
        creditor,
        amount,
        currency="USD",
        flow="two_phase",
        status=None,
        key=None,
    ):
        """A payment acknowledged with 202. flow: "post" (single phase), "two_phase" (pending then
        post_pending), "void" (pending then void: failed), "reserve" (pending only), "none"
        (no journal entry: rejected)."""
        key = key or f"key-{pid}"
        self.request(tenant, key, 202, "accepted", pid)
        received = self.clock
        if flow == "post":
            post = self.entry(tenant, f"{pid}-t", "post", debtor, creditor, amount, currency, pid)
        elif flow in ("two_phase", "void", "reserve"):
            self.entry(tenant, f"{pid}-r", "pending", debtor, creditor, amount, currency, pid)
            if flow != "reserve":
                kind = "post_pending" if flow == "two_phase" else "void"
                post = self.entry(
                    tenant,
                    f"{pid}-p",
                    kind,
                    debtor,
                    creditor,
                    amount,
                    currency,
                    pid,
                    pending=f"{pid}-r",
                )
        posted = flow in ("post", "two_phase")
        default = {"post": "posted", "two_phase": "posted", "void": "failed"}.get(flow, "rejected")
        self.payments[tenant, pid] = {
            "payment_id": pid,
            "tenant": tenant,
            "idempotency_key": key,
            "debtor_account": debtor,
            "creditor_account": creditor,
            "amount": amount,
            "currency": currency,
            "status": status or default,
            "reason": "" if posted else "refused",
            "received_at": received,
            "posted_at": post["at"] if posted else NAN,
            "settled_at": NAN,
        }

    def settle(self, tenant, batch, partner, pids, currency="USD"):
        cutoff = self.tick()
        for pid in pids:
            p = self.payments[tenant, pid]
            self.settlements.append(
                {
                    "batch_id": batch,
                    "tenant": tenant,
                    "partner": partner,
                    "currency": currency,
                    "payment_id": pid,
                    "amount": p["amount"],
                    "cutoff_at": cutoff,
                    "sent_at": cutoff + 1,
                }
            )
            self.statements.append(
                {
                    "partner": partner,
                    "statement_id": f"st-{batch}",
                    "batch_id": batch,
                    "end_to_end_id": pid,
                    "amount": p["amount"],
                    "currency": currency,
                    "booking_at": cutoff + 2,
                    "value_at": cutoff + 2,
                    "entry_kind": "credit",
                }
            )
            if p["status"] == "posted":
                p["status"], p["settled_at"] = "settled", cutoff + 2

    def line(self, batch: str, pid: str) -> dict[str, Any]:
        return next(
            s for s in self.statements if s["batch_id"] == batch and s["end_to_end_id"] == pid
        )

    def build(self) -> RunRecord:
        journal, heads, pending = [], {}, {}
        balances = {k: [0, 0, 0, 0] for k in self.accounts}
        for e in self.entries:
            t = e["tenant"]
            seq, prev = heads.get(t, (0, "0" * 64))
            seq += 1
            body = [
                seq,
                e["transfer_id"],
                e["payment_id"],
                e["kind"],
                e["debit_account"],
                e["credit_account"],
                e["amount"],
                e["currency"],
                e["at"],
                e["pending_id"],
            ]
            digest = hashlib.sha256(
                (prev + json.dumps(body, separators=(",", ":"))).encode()
            ).hexdigest()
            heads[t] = (seq, digest)
            journal.append({**e, "seq": seq, "prev_hash": prev, "hash": digest})
            d, c, a = balances[t, e["debit_account"]], balances[t, e["credit_account"]], e["amount"]
            if e["kind"] == "pending":
                pending[t, e["transfer_id"]] = e
                d[1], c[3] = d[1] + a, c[3] + a
            if e["kind"] in ("post_pending", "void"):
                p = pending[t, e["pending_id"]]
                pd_, pc_ = balances[t, p["debit_account"]], balances[t, p["credit_account"]]
                pd_[1], pc_[3] = pd_[1] - p["amount"], pc_[3] - p["amount"]
            if e["kind"] in ("post", "post_pending"):
                d[0], c[2] = d[0] + a, c[2] + a
        accounts = [
            {
                **acc,
                "debits_posted": b[0],
                "debits_pending": b[1],
                "credits_posted": b[2],
                "credits_pending": b[3],
            }
            for acc, b in zip(self.accounts.values(), balances.values(), strict=True)
        ]
        return RunRecord(
            requests=frame("requests", self.requests),
            payments=frame("payments", list(self.payments.values())),
            journal=frame("journal", journal),
            accounts=frame("accounts", accounts),
            settlements=frame("settlements", self.settlements),
            statements=frame("statements", self.statements),
            breaks=frame("breaks", self.breaks),
            faults=frame(
                "faults",
                [
                    {
                        "start": 3.0,
                        "end": NAN,
                        "kind": "crash",
                        "target": "payments-worker-1",
                        "detail": "SIGKILL",
                    }
                ],
            ),
            nodes=frame(
                "nodes",
                [
                    {
                        "at": 1.0,
                        "node": "gateway-1",
                        "utilization": 0.5,
                        "cpu": 0.2,
                        "queue_length": 2,
                        "busy_workers": 1,
                        "lag": 0,
                        "headroom": NAN,
                    }
                ],
            ),
            partitions=frame(
                "partitions",
                [{"at": 1.0, "group": "payments", "partition": 0, "member": "m1", "lag": 3}],
            ),
            meta={"mode": "sim", "seed": SEED},
        )


def frame(name: str, rows: list[dict[str, Any]]) -> pd.DataFrame:
    schema = SCHEMAS[name]
    dtypes = {"string": "str", "int64": "int64", "double": "float64", "bool": "bool"}
    return pd.DataFrame(
        {f.name: pd.Series([r[f.name] for r in rows], dtype=dtypes[str(f.type)]) for f in schema}
    )


def clean() -> Run:
    """Two tenants (both with a payment "p1"), two currencies, every entry kind, retries and
    replays, a fee line and two breaks that reconcile: a run that keeps every promise."""
    r = Run()
    for currency, names in (("USD", ("alice", "bob", "carol")), ("EUR", ("dave", "erin"))):
        r.account("acme", f"funding-{currency}", currency, overdraft=True)
        for name in names:
            r.account("acme", name, currency)
    r.account("globex", "funding-USD", overdraft=True)
    r.account("globex", "zed")
    r.account("globex", "yan")
    r.fund("acme", "alice", 10_000)
    r.fund("acme", "bob", 5_000)
    r.fund("acme", "dave", 7_000, "EUR")
    r.fund("globex", "zed", 1_000)
    r.request("acme", "key-p2", 0, "timeout")
    r.request("acme", "key-p2", 429, "rate_limited", attempt=2)
    r.pay("acme", "p1", "alice", "bob", 1_500, flow="post")
    r.request("acme", "key-p1", 202, "replayed", "p1", attempt=2)
    r.pay("acme", "p2", "bob", "carol", 700)
    r.pay("acme", "p3", "dave", "erin", 300, "EUR")
    r.pay("acme", "p4", "alice", "carol", 200, flow="void")
    r.pay("acme", "p5", "alice", "bob", 50, flow="none")
    r.request("acme", "key-bad", 422, "rejected")
    r.pay("globex", "p1", "zed", "yan", 100)
    r.settle("acme", "b1", "bank-a", ["p1", "p2"])
    r.settle("acme", "b2", "bank-b", ["p3"], "EUR")
    r.settle("globex", "b3", "bank-a", ["p1"])
    r.statements.append(
        {**r.line("b1", "p1"), "end_to_end_id": "", "amount": 25, "entry_kind": "fee"}
    )
    r.line("b1", "p2")["amount"] = 690
    r.breaks.append(
        {
            "break_id": "x1",
            "partner": "bank-a",
            "batch_id": "b1",
            "payment_id": "p2",
            "kind": "amount",
            "detail": "bank booked 690",
        }
    )
    r.line("b2", "p3")["booking_at"] += 86_400
    r.breaks.append(
        {
            "break_id": "x2",
            "partner": "bank-b",
            "batch_id": "b2",
            "payment_id": "p3",
            "kind": "timing",
            "detail": "booked a day late",
        }
    )
    return r


def kinds(result) -> set[str]:
    return {v.kind for v in (*result.violations, *result.liveness)}


def only(result, kind: str):
    assert kinds(result) == {kind}, [v.to_json() for v in (*result.violations, *result.liveness)]
    assert all(v.seed == SEED for v in (*result.violations, *result.liveness))
    return [v for v in (*result.violations, *result.liveness) if v.kind == kind]


def seq_of(record: RunRecord, tenant: str, transfer_id: str) -> int:
    j = record.journal
    return int(j[(j["tenant"] == tenant) & (j["transfer_id"] == transfer_id)]["seq"].iloc[0])


def test_clean_run_has_no_violations() -> None:
    result = audit(clean().build())
    assert result.ok
    assert result.violations == () and result.liveness == ()
    assert result.counts == dict.fromkeys(KINDS, 0)


def test_clean_run_survives_write_and_load(tmp_path) -> None:
    record = clean().build()
    write_run_record(tmp_path, tables=tables_of(record), meta=record.meta, scenario_yaml="x: 1\n")
    assert audit(load_run(tmp_path)).counts == dict.fromkeys(KINDS, 0)


def tables_of(record: RunRecord) -> dict[str, pd.DataFrame]:
    names = (
        "requests",
        "payments",
        "journal",
        "accounts",
        "settlements",
        "statements",
        "breaks",
        "faults",
        "nodes",
        "partitions",
    )
    return {n: getattr(record, n) for n in names}


def test_posted_payment_without_journal_entry_is_lost() -> None:
    r = clean()
    r.entries = [e for e in r.entries if e["transfer_id"] != "p1-t" or e["tenant"] != "acme"]
    result = audit(r.build())
    assert kinds(result) == {"lost", "phantom"}  # and its settlement now has no posting behind it
    (lost,) = [v for v in result.violations if v.kind == "lost"]
    assert (lost.tenant, lost.payment_id, lost.seq, lost.seed) == ("acme", "p1", None, SEED)


def test_acknowledged_payment_missing_from_payments_is_lost() -> None:
    r = clean()
    del r.payments["acme", "p5"]
    (lost,) = only(audit(r.build()), "lost")
    assert (lost.tenant, lost.payment_id) == ("acme", "p5")


def test_second_posting_of_a_payment_is_duplicate() -> None:
    r = clean()
    r.entry("acme", "p1-again", "post", "alice", "bob", 1_500, pid="p1")
    record = r.build()
    (dup,) = only(audit(record), "duplicate")
    assert (dup.tenant, dup.payment_id, dup.seq) == (
        "acme",
        "p1",
        seq_of(record, "acme", "p1-again"),
    )


def test_two_payments_posted_for_one_key_is_duplicate() -> None:
    r = clean()
    r.pay("acme", "p1b", "alice", "bob", 1_500, flow="post", key="key-p1")
    r.settle("acme", "b4", "bank-a", ["p1b"])
    record = r.build()
    (dup,) = only(audit(record), "duplicate")
    assert (dup.payment_id, dup.seq) == ("p1b", seq_of(record, "acme", "p1b-t"))


def test_payment_in_two_batches_is_duplicate() -> None:
    r = clean()
    r.settle("acme", "b4", "bank-a", ["p2"])
    r.line("b4", "p2")["amount"] = 700
    record = r.build()
    (dup,) = only(audit(record), "duplicate")
    assert (dup.payment_id, dup.seq) == ("p2", seq_of(record, "acme", "p2-p"))
    assert "b4" in dup.detail


def test_entry_for_unknown_payment_is_phantom() -> None:
    r = clean()
    r.entry("acme", "ghost-t", "post", "alice", "bob", 100, pid="ghost")
    record = r.build()
    (ph,) = only(audit(record), "phantom")
    assert (ph.payment_id, ph.seq) == ("ghost", seq_of(record, "acme", "ghost-t"))


def test_settlement_of_unposted_payment_is_phantom() -> None:
    r = clean()
    r.settle("acme", "b4", "bank-a", ["p5"])
    (ph,) = only(audit(r.build()), "phantom")
    assert ph.payment_id == "p5" and "b4" in ph.detail


def test_edited_amount_breaks_chain_and_conservation() -> None:
    record = clean().build()
    j = record.journal
    row = (j["tenant"] == "acme") & (j["transfer_id"] == "p1-t")
    j.loc[row, "amount"] = 1_400
    seq = int(j.loc[row, "seq"].iloc[0])
    result = audit(record)
    assert kinds(result) == {"chain", "conservation"}
    (chain,) = [v for v in result.violations if v.kind == "chain"]
    assert (chain.tenant, chain.payment_id, chain.seq) == ("acme", "p1", seq)
    entry_level = [v for v in result.violations if v.kind == "conservation" and v.seq == seq]
    assert [v.payment_id for v in entry_level] == ["p1"]
    assert "posted 1400 USD for a payment of 1500 USD" in entry_level[0].detail
    accounts = {v.detail.split(":")[0] for v in result.violations if v.seq is None}
    assert accounts == {"account alice", "account bob"}


def test_gap_in_journal_breaks_chain_at_next_seq() -> None:
    record = clean().build()
    j = record.journal
    record = RunRecord(
        **{**record.__dict__, "journal": j[~((j["tenant"] == "acme") & (j["seq"] == 3))]}
    )
    chain = [v for v in audit(record).violations if v.kind == "chain"]
    assert [(v.tenant, v.seq) for v in chain] == [("acme", 4)]


def test_overdrawn_account_is_overdraft() -> None:
    r = clean()
    r.pay("acme", "p6", "carol", "alice", 5_000, flow="post")
    r.settle("acme", "b4", "bank-a", ["p6"])
    record = r.build()
    (od,) = only(audit(record), "overdraft")
    assert (od.payment_id, od.seq) == ("p6", seq_of(record, "acme", "p6-t"))
    assert "carol" in od.detail


def test_reservation_beyond_credits_is_overdraft() -> None:
    r = clean()
    # p6 spends all 700 carol holds; p7 then reserves 1 more, which overdraws her while it is
    # pending, even though it is voided right after
    r.pay("acme", "p6", "carol", "alice", 700)
    r.pay("acme", "p7", "carol", "alice", 1, flow="void")
    r.settle("acme", "b4", "bank-a", ["p6"])
    record = r.build()
    (od,) = only(audit(record), "overdraft")
    assert (od.payment_id, od.seq) == ("p7", seq_of(record, "acme", "p7-r"))


def test_pending_resolved_twice_is_duplicate_and_breaks_pending_balance() -> None:
    r = clean()
    r.entry("acme", "p2-v", "void", "bob", "carol", 700, pid="p2", pending="p2-r")
    record = r.build()
    result = audit(record)
    assert {(v.kind, v.payment_id, v.seq) for v in result.violations} == {
        ("duplicate", "p2", seq_of(record, "acme", "p2-v")),
        ("conservation", None, None),
    }
    assert {v.detail for v in result.violations if v.kind == "conservation"} == {
        "account bob: a balance counter is below zero",
        "account carol: a balance counter is below zero",
    }


def test_malformed_entries_are_conservation() -> None:
    r = clean()
    r.entry("acme", "self", "post", "alice", "alice", 10)
    r.entry("acme", "fx", "post", "alice", "dave", 10)
    record = r.build()
    found = only(audit(record), "conservation")
    assert {v.seq for v in found} >= {seq_of(record, "acme", "self"), seq_of(record, "acme", "fx")}
    assert any("replayed balances" in v.detail and v.tenant == "acme" for v in found)


def test_statement_mismatch_without_break_is_settlement() -> None:
    r = clean()
    r.line("b1", "p1")["amount"] = 1_400
    (s,) = only(audit(r.build()), "settlement")
    assert (s.tenant, s.payment_id) == ("acme", "p1") and "1400" in s.detail


def test_unclassified_break_is_settlement() -> None:
    r = clean()
    r.breaks[1]["kind"] = "unclassified"
    (s,) = only(audit(r.build()), "settlement")
    assert (s.tenant, s.payment_id) == ("acme", "p3") and "x2" in s.detail


def test_posted_payment_missing_from_batches_is_settlement() -> None:
    r = clean()
    r.pay("acme", "p6", "alice", "bob", 10, flow="post")
    r.pay("globex", "g2", "zed", "yan", 5)
    r.settle("globex", "b4", "bank-a", ["g2"])  # the next cut-off did not take p6 ...
    r.pay("globex", "g3", "zed", "yan", 5)
    r.settle("globex", "b5", "bank-a", ["g3"])  # ... nor the one after: it was left out
    (s,) = only(audit(r.build()), "settlement")
    assert s.payment_id == "p6"


def test_payment_missing_only_from_the_last_batch_may_be_in_the_open_one() -> None:
    # Posted just before a cut-off, seen by the settlement consumer just after it: the payment
    # is in the next batch, still open when the run ended, which the record does not hold.
    r = clean()
    r.pay("acme", "p6", "alice", "bob", 10, flow="post")
    r.pay("globex", "g2", "zed", "yan", 5)
    r.settle("globex", "b4", "bank-a", ["g2"])
    result = audit(r.build())
    (s,) = only(result, "liveness")
    assert result.ok and s.payment_id == "p6" and "still open" in s.detail


def test_payment_posted_after_last_cutoff_is_liveness() -> None:
    r = clean()
    r.pay("acme", "p6", "alice", "bob", 10, flow="post")
    result = audit(r.build())
    (s,) = only(result, "liveness")
    assert result.ok and s.payment_id == "p6"


def test_non_terminal_payment_is_liveness_only() -> None:
    r = clean()
    r.pay("acme", "p6", "alice", "bob", 10, flow="none", status="screening")
    r.pay("acme", "p7", "alice", "bob", 10, flow="reserve", status="reserved")
    result = audit(r.build())
    found = only(result, "liveness")
    assert result.ok and result.violations == ()
    assert sorted(v.payment_id for v in found) == ["p6", "p7"]


def test_reservation_never_released_for_finished_payment_is_liveness() -> None:
    r = clean()
    r.pay("acme", "p6", "alice", "bob", 10, flow="reserve", status="failed")
    record = r.build()
    (s,) = only(audit(record), "liveness")
    assert (s.payment_id, s.seq) == ("p6", seq_of(record, "acme", "p6-r"))


def test_counts_are_complete_when_the_list_is_truncated() -> None:
    r = clean()
    del r.payments["acme", "p5"]
    del r.payments["acme", "p4"]
    result = audit(r.build(), max_per_kind=1)
    assert result.counts["lost"] == 2 and len(result.violations) == 1 and result.truncated


def test_audit_json_is_deterministic(tmp_path) -> None:
    r = clean()
    del r.payments["acme", "p5"]
    record = r.build()
    write_audit(tmp_path, audit(record))
    first = (tmp_path / "audit.json").read_bytes()
    write_audit(tmp_path, audit(record))
    assert (tmp_path / "audit.json").read_bytes() == first
    data = json.loads(first)
    assert data["counts"]["lost"] == 1 and data["violations"][0]["seed"] == SEED


def test_synthesised_record_is_clean() -> None:
    tables, meta = synthesise(1_000, seed=7)
    record = RunRecord(**tables, meta=meta)
    result = audit(record)
    assert result.counts == dict.fromkeys(KINDS, 0), result.to_json()["violations"][:5]
    assert len(record.payments) == 1_000
    assert set(record.journal["kind"]) == {"post", "pending", "post_pending", "void"}
    assert np.all(record.journal.groupby("tenant")["seq"].diff().dropna() == 1)


@pytest.mark.parametrize("kind", ["lost", "overdraft"])
def test_synthesised_record_with_a_fault_is_caught(kind: str) -> None:
    tables, meta = synthesise(1_000, seed=7)
    if kind == "lost":
        posted = tables["payments"]["status"] == "settled"
        tables["payments"] = tables["payments"][~posted.cumsum().eq(1)]
    else:
        tables["accounts"].loc[tables["accounts"]["overdraft"].idxmax(), "overdraft"] = False
    result = audit(RunRecord(**tables, meta=meta))
    assert result.counts[kind] >= 1


def test_empty_record_is_clean_and_a_missing_journal_is_all_lost() -> None:
    empty = {n: empty_table(n) for n in SCHEMAS}
    assert audit(RunRecord(**empty, meta={"mode": "sim", "seed": SEED})).counts == dict.fromkeys(
        KINDS, 0
    )
    record = clean().build()
    result = audit(RunRecord(**{**record.__dict__, "journal": empty_table("journal")}))
    lost = {(v.tenant, v.payment_id) for v in result.violations if v.kind == "lost"}
    assert lost == {("acme", "p1"), ("acme", "p2"), ("acme", "p3"), ("globex", "p1")}
    assert result.counts["chain"] == 0
