"""The run record contract: schemas enforced on write and read, deterministic files, and the
journal hash form, which must match what the reference implementation writes."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reference_impl.adapters.memory import MemoryStore
from reference_impl.core.journal import JournalEntry
from reference_impl.core.ledger import (
    Account,
    AccountResult,
    Transfer,
    TransferKind,
    TransferResult,
)
from reference_impl.core.settlement import BreakKind
from reference_impl.service.ledger import (
    create_accounts,
    read_balances,
    read_journal,
    submit_transfers,
)
from reports.audit import audit
from reports.record import (
    GENESIS_HASH,
    SCHEMAS,
    RunRecord,
    RunRecordError,
    canonical_bodies,
    empty_table,
    entry_hash,
    hash_inputs,
    load_run,
    write_run_record,
)

META = {"mode": "sim", "seed": 7, "versions": {"testbed": "0.1.0"}}


def tables() -> dict[str, pd.DataFrame]:
    """One row in every table, with the dtypes a runtime would hand over."""
    out = {name: empty_table(name) for name in SCHEMAS}
    out["requests"] = pd.DataFrame(
        {
            "key": ["k1", "k1"],
            "tenant": ["acme", "acme"],
            "attempt": [1, 2],
            "intended_at": [1.0, 3.0],
            "sent_at": [1.0, 3.0],
            "done_at": [math.nan, 3.5],
            "status": [0, 202],
            "payment_id": ["", "p1"],
            "outcome": ["timeout", "accepted"],
        }
    )
    out["journal"] = pd.DataFrame(
        {
            "tenant": ["acme"],
            "seq": [1],
            "transfer_id": ["t1"],
            "payment_id": ["p1"],
            "kind": ["post"],
            "pending_id": [""],
            "debit_account": ["a"],
            "credit_account": ["b"],
            "amount": np.array([150], np.int64),
            "currency": ["EUR"],
            "at": [4.0],
            "prev_hash": [GENESIS_HASH],
            "hash": ["x" * 64],
        }
    )
    out["faults"] = pd.DataFrame(
        {
            "start": [2.0],
            "end": [math.nan],
            "kind": ["crash"],
            "target": ["ledger-1"],
            "detail": ["SIGKILL"],
        }
    )
    return out


def files(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run_dir.iterdir())}


def test_round_trip_keeps_every_value_and_dtype(tmp_path: Path) -> None:
    given = tables()
    write_run_record(tmp_path, tables=given, meta=META, scenario_yaml="name: demo\n")
    record = load_run(tmp_path)
    for name, df in given.items():
        loaded = getattr(record, name)
        assert list(loaded.columns) == SCHEMAS[name].names
        pd.testing.assert_frame_equal(loaded, df, check_dtype=False)
    assert record.requests["attempt"].dtype == np.int64
    assert math.isnan(record.requests["done_at"].iloc[0])  # NaN stays a value, not a null
    assert record.accounts["overdraft"].dtype == bool
    assert record.seed == 7 and record.meta["versions"] == {"testbed": "0.1.0"}
    assert record.scenario_yaml == "name: demo\n"


def test_same_input_gives_byte_identical_files(tmp_path: Path) -> None:
    write_run_record(tmp_path / "a", tables=tables(), meta=META, scenario_yaml="x: 1\n")
    write_run_record(tmp_path / "b", tables=tables(), meta=META, scenario_yaml="x: 1\n")
    first = files(tmp_path / "a")
    assert set(first) == {*(f"{n}.parquet" for n in SCHEMAS), "meta.json", "scenario.yaml"}
    assert first == files(tmp_path / "b")
    write_run_record(tmp_path / "a", tables=tables(), meta=META, scenario_yaml="x: 1\n")
    assert files(tmp_path / "a") == first


@pytest.mark.parametrize("kind", [k.value for k in BreakKind])
def test_every_break_kind_the_settlement_core_emits_can_be_recorded_and_audited(
    tmp_path: Path, kind: str
) -> None:
    given = tables()
    # As the settlement worker stores a line for no payment it sent: no batch, kind `unknown`.
    given["breaks"] = pd.DataFrame(
        {
            "break_id": ["st-1:00000"],
            "partner": ["bank-a"],
            "batch_id": [""],
            "payment_id": ["zz"],
            "kind": [kind],
            "detail": ["credit line for a payment not sent to bank-a in EUR"],
        }
    )
    write_run_record(tmp_path, tables=given, meta=META, scenario_yaml="")
    record = load_run(tmp_path)
    assert record.breaks["kind"].tolist() == [kind]
    assert not [v for v in audit(record).violations if "unclassified" in v.detail]


def test_meta_is_sorted_json_with_the_record_version(tmp_path: Path) -> None:
    write_run_record(tmp_path, tables=tables(), meta={"seed": 1, "mode": "load"}, scenario_yaml="")
    text = (tmp_path / "meta.json").read_text()
    assert list(json.loads(text)) == ["mode", "record_version", "seed"]


@pytest.mark.parametrize(
    ("table", "change", "message"),
    [
        ("journal", lambda df: df.drop(columns="hash"), "'journal' column 'hash': missing"),
        ("journal", lambda df: df.assign(extra=1), "'journal' column 'extra': not in the schema"),
        (
            "journal",
            lambda df: df.astype({"amount": float}),
            "'journal' column 'amount': expected int64",
        ),
        (
            "requests",
            lambda df: df.assign(status=df["status"].astype("int32")),
            "column 'status': expected int64",
        ),
        (
            "requests",
            lambda df: df.assign(sent_at=[1, 3]),
            "'requests' column 'sent_at': expected float64",
        ),
        ("requests", lambda df: df.assign(key=["k1", None]), "column 'key': has missing values"),
        (
            "requests",
            lambda df: df.assign(key=pd.Series(["k1", 2], dtype=object)),
            "'key': expected strings",
        ),
        ("requests", lambda df: df.assign(outcome=["timeout", "ok"]), "value 'ok' is not one of"),
        (
            "journal",
            lambda df: df.assign(kind=["transfer"]),
            "'journal' column 'kind': value 'transfer'",
        ),
    ],
)
def test_a_bad_table_is_refused_and_nothing_is_written(tmp_path, table, change, message) -> None:
    bad = tables()
    bad[table] = change(bad[table])
    with pytest.raises(RunRecordError, match=message):
        write_run_record(tmp_path / "run", tables=bad, meta=META, scenario_yaml="")
    assert not (tmp_path / "run").exists()


def test_missing_or_unknown_table_and_bad_meta_are_refused(tmp_path: Path) -> None:
    partial = tables()
    del partial["nodes"]
    with pytest.raises(RunRecordError, match="table 'nodes' is missing"):
        write_run_record(tmp_path, tables=partial, meta=META, scenario_yaml="")
    with pytest.raises(RunRecordError, match="unknown table 'spans'"):
        write_run_record(
            tmp_path, tables={**tables(), "spans": pd.DataFrame()}, meta=META, scenario_yaml=""
        )
    with pytest.raises(RunRecordError, match="'seed' must be an integer"):
        write_run_record(
            tmp_path, tables=tables(), meta={"mode": "sim", "seed": "7"}, scenario_yaml=""
        )
    with pytest.raises(RunRecordError, match="'mode' must be sim or load"):
        write_run_record(tmp_path, tables=tables(), meta={"seed": 7}, scenario_yaml="")
    assert list(tmp_path.iterdir()) == []


def test_reader_refuses_a_file_that_breaks_the_schema(tmp_path: Path) -> None:
    write_run_record(tmp_path, tables=tables(), meta=META, scenario_yaml="")
    journal = pq.read_table(tmp_path / "journal.parquet")
    i = journal.schema.get_field_index("amount")
    as_float = journal.set_column(i, "amount", journal["amount"].cast(pa.float64()))
    pq.write_table(as_float, tmp_path / "journal.parquet")
    with pytest.raises(
        RunRecordError, match="'journal' column 'amount': expected int64, got double"
    ):
        load_run(tmp_path)


def test_reader_refuses_another_record_version(tmp_path: Path) -> None:
    write_run_record(tmp_path, tables=tables(), meta=META, scenario_yaml="")
    meta = json.loads((tmp_path / "meta.json").read_text())
    (tmp_path / "meta.json").write_text(json.dumps({**meta, "record_version": 99}))
    with pytest.raises(RunRecordError, match="record_version 99"):
        load_run(tmp_path)


def body(row: dict) -> str:
    """The documented canonical form, written out with json alone."""
    fields = (
        "seq",
        "transfer_id",
        "payment_id",
        "kind",
        "debit_account",
        "credit_account",
        "amount",
        "currency",
        "at",
        "pending_id",
    )
    return json.dumps([row[f] for f in fields], separators=(",", ":"), ensure_ascii=True)


def test_canonical_bodies_match_json_for_awkward_values() -> None:
    awkward = ['quote"d', "back\\slash", "tab\there", "caf\u00e9", "\u20ac", "", "plain-id_1.2"]
    times = [0.0, 5.0, 0.1, 1e-05, 123456789012345.6, 1e16, 86400.5, 2.5e-7]
    n = len(awkward) * len(times)
    rows = [
        {
            "tenant": "t",
            "seq": i + 1,
            "transfer_id": awkward[i % 7],
            "payment_id": awkward[-1 - i % 7],
            "kind": "post",
            "pending_id": "",
            "debit_account": "a",
            "credit_account": awkward[i % 7],
            "amount": 2**63 - 1 - i,
            "currency": "EUR",
            "at": times[i % 8],
            "prev_hash": "p" * 64,
            "hash": "",
        }
        for i in range(n)
    ]
    journal = pd.DataFrame(rows).astype({"amount": np.int64})
    assert canonical_bodies(journal) == [body(r) for r in rows]
    assert hash_inputs(journal) == [("p" * 64 + body(r)).encode() for r in rows]


class ReferenceLedger:
    """One tenant's ledger in the reference implementation's memory store."""

    def __init__(self, tenant: str) -> None:
        self.store, self.tenant, self.now = MemoryStore(), tenant, 0.0
        self.ids: list[str] = []

    def open(self, *accounts: Account) -> None:
        assert create_accounts(self.store, self.tenant, accounts) == [AccountResult.OK] * len(
            accounts
        )
        self.ids += [a.id for a in accounts]

    def submit(self, *batch: Transfer) -> None:
        self.now += 1.0
        assert submit_transfers(self.store, self.tenant, batch, self.now) == [
            TransferResult.OK
        ] * len(batch)

    def journal(self) -> list[JournalEntry]:
        return read_journal(self.store, self.tenant, 0, 1_000)

    def accounts(self) -> list[Account]:
        return list(read_balances(self.store, self.tenant, self.ids).values())


def reference_ledger() -> ReferenceLedger:
    """A journal written by the reference implementation with every kind of entry, including a
    partial post of a pending transfer."""
    led = ReferenceLedger("acme")
    led.open(
        Account("funding", "EUR", overdraft=True), Account("alice", "EUR"), Account("bob", "EUR")
    )
    led.submit(
        Transfer("f1", "funding", "alice", 10_000, "EUR"),
        Transfer("f2", "funding", "bob", 500, "EUR"),
    )
    K = TransferKind
    led.submit(
        Transfer("t1", "alice", "bob", 100, "EUR", payment_id="pay-1"),
        Transfer("r2", "alice", "bob", 400, "EUR", kind=K.PENDING, payment_id="pay-2"),
        Transfer("r3", "bob", "alice", 50, "EUR", kind=K.PENDING, payment_id="pay-3"),
    )
    led.submit(
        Transfer("p2", kind=K.POST_PENDING, pending_id="r2", amount=150, payment_id="pay-2"),
        Transfer("v3", kind=K.VOID, pending_id="r3", payment_id="pay-3"),
    )
    return led


def journal_of(led: ReferenceLedger) -> pd.DataFrame:
    rows = [{**dataclasses.asdict(e), "tenant": led.tenant} for e in led.journal()]
    return pd.DataFrame(rows)[SCHEMAS["journal"].names]


def test_hash_form_matches_the_reference_implementation() -> None:
    led = reference_ledger()
    entries = led.journal()
    assert [e.pending_id for e in entries if e.kind in ("post_pending", "void")] == ["r2", "r3"]
    digests = [hashlib.sha256(data).hexdigest() for data in hash_inputs(journal_of(led))]
    assert digests == [e.hash for e in entries]
    e = entries[-1]
    fields = (
        e.seq,
        e.transfer_id,
        e.payment_id,
        e.kind,
        e.debit_account,
        e.credit_account,
        e.amount,
        e.currency,
        e.at,
        e.pending_id,
    )
    assert entry_hash(e.prev_hash, fields) == e.hash


def test_audit_accepts_the_reference_ledgers_journal_and_balances() -> None:
    """Replay semantics (partial post releases the whole reservation) agree with the ledger."""
    led = reference_ledger()
    journal = journal_of(led)
    accounts = pd.DataFrame(
        [
            {
                "tenant": "acme",
                "id": a.id,
                "currency": a.currency,
                "overdraft": a.overdraft,
                "debits_posted": a.debits_posted,
                "debits_pending": a.debits_pending,
                "credits_posted": a.credits_posted,
                "credits_pending": a.credits_pending,
            }
            for a in led.accounts()
        ]
    )
    assert accounts.set_index("id").loc["alice", "debits_posted"] == 250
    record = RunRecord(
        **{
            **tables(),
            "journal": journal,
            "accounts": accounts,
            "requests": empty_table("requests"),
        },
        meta=META,
    )
    result = audit(record)
    assert result.counts["chain"] == result.counts["conservation"] == 0
    assert result.counts["overdraft"] == 0
    # every payment id in this journal is unbacked: there are no payments or requests at all
    assert result.counts["phantom"] == 3
