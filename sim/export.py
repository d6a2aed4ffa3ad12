"""A finished sim run as the run record's tables (reports/record.py owns the schema).

The ledger, payments and settlement tables are read from the store the handlers wrote, not from
the sim's own bookkeeping, so the audit checks what the reference implementation did. Rows are
sorted on stable keys and "no value" is NaN or "", as the record wants, so the same run always
gives the same bytes.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from reference_impl.adapters import record_tables as rt
from reference_impl.adapters.record_tables import frame, time_or_nan
from reference_impl.core.payments import Payment
from reference_impl.core.settlement import Break, SettlementBatch, SettlementItem
from reference_impl.service.payments import PAYMENT
from reference_impl.service.settlement import BATCH, BREAK, ITEM
from sim.run import SimRun, fewer_collections


def _records(run: SimRun, kind: str) -> list[tuple[str, str, str]]:
    return run.system.ledger.store.records(kind)


def requests(run: SimRun) -> pd.DataFrame:
    rows = [
        {
            "key": a.request.key,
            "tenant": a.request.tenant,
            "attempt": a.n,
            "intended_at": a.sent_at,  # open model: every attempt is sent when intended
            "sent_at": a.sent_at,
            "done_at": time_or_nan(a.done_at),
            "status": a.status,
            "payment_id": a.payment_id,
            "outcome": a.outcome or "timeout",  # still unanswered when the run ended
        }
        for a in run.system.clients.attempts
    ]
    cols = ["key", "tenant", "attempt", "intended_at", "sent_at", "done_at", "status"]
    return frame(rows, [*cols, "payment_id", "outcome"], ["sent_at", "key", "attempt"])


def payments(run: SimRun) -> pd.DataFrame:
    return rt.payments(Payment.from_json(text) for _, _, text in _records(run, PAYMENT))


def journal(run: SimRun) -> pd.DataFrame:
    entries = run.system.ledger.store.table("journal")
    return rt.journal((tenant, e) for (tenant, _seq), e in entries.items())


def accounts(run: SimRun) -> pd.DataFrame:
    table = run.system.ledger.store.table("accounts")
    return rt.accounts((tenant, a) for (tenant, _id), a in table.items())


def settlements(run: SimRun) -> pd.DataFrame:
    return rt.settlements(SettlementBatch.from_json(text) for _, _, text in _records(run, BATCH))


def statements(run: SimRun) -> pd.DataFrame:
    items = {(p, k): SettlementItem.from_json(v) for p, k, v in _records(run, ITEM)}
    return rt.statements((st for p in run.system.settlement.partners for st in p.issued), items)


def breaks(run: SimRun) -> pd.DataFrame:
    return rt.breaks(Break.from_json(text) for _, _, text in _records(run, BREAK))


def faults(run: SimRun) -> pd.DataFrame:
    rows = [
        {"start": f.start, "end": f.end, "kind": f.kind, "target": f.target, "detail": f.detail}
        for f in run.system.faults.rows
    ]
    return frame(rows, ["start", "end", "kind", "target", "detail"], ["start", "target"])


def nodes(run: SimRun) -> pd.DataFrame:
    rows = [
        {
            "at": s.at,
            "node": s.node,
            "utilization": s.utilization,
            "cpu": s.cpu,
            "queue_length": s.queue,
            "busy_workers": s.busy,
            "lag": s.lag,
            "headroom": s.headroom,
        }
        for s in run.samples
    ]
    cols = ["at", "node", "utilization", "cpu", "queue_length", "busy_workers", "lag"]
    return frame(rows, [*cols, "headroom"], ["at", "node"])


def partitions(run: SimRun) -> pd.DataFrame:
    rows = [
        {"at": x.at, "group": x.group, "partition": x.partition, "member": x.member, "lag": x.lag}
        for x in run.lags
    ]
    cols = ["at", "group", "partition", "member", "lag"]
    return frame(rows, cols, ["at", "group", "partition"])


def labels(run: SimRun) -> pd.DataFrame:
    """The injected fraud's requests, in the order they were sent (no rows without fraud: the
    record then has no labels table)."""
    rows = [
        {"key": key, "tenant": tenant, "pattern": pattern, "case": case}
        for key, tenant, pattern, case in run.system.clients.labels
    ]
    return frame(rows, ["key", "tenant", "pattern", "case"], [])


def decisions(run: SimRun) -> pd.DataFrame:
    """The checks' decisions announced in the log (no rows with the checks off)."""
    events = run.system.ledger.store.table("events")
    return rt.decisions(
        e for (topic, _p, _o), e in sorted(events.items()) if topic in rt.DECISION_TOPICS
    )


def tables(run: SimRun) -> dict[str, pd.DataFrame]:
    with fewer_collections():
        return _tables(run)


def _tables(run: SimRun) -> dict[str, pd.DataFrame]:
    return {
        "requests": requests(run),
        "payments": payments(run),
        "journal": journal(run),
        "accounts": accounts(run),
        "settlements": settlements(run),
        "statements": statements(run),
        "breaks": breaks(run),
        "faults": faults(run),
        "nodes": nodes(run),
        "partitions": partitions(run),
        "labels": labels(run),
        "decisions": decisions(run),
    }


def meta(run: SimRun, scenario_name: str) -> dict[str, Any]:
    """Deterministic facts about the run (no wall clock, no host: those break replay)."""
    system = run.system
    checks = system.scenario.checks
    return {
        **({"checks": checks.meta()} if checks.on else {}),
        "mode": "sim",
        "seed": system.seed,
        "scenario": scenario_name,
        "duration": run.duration,
        "drained_at": run.drained_at,
        "drained": run.drained,
        "sim": {
            "deliveries": {g.name: g.deliveries for g in system.groups},
            "redeliveries": {g.name: g.redeliveries for g in system.groups},
            "lost_jobs": {n.name: n.lost_jobs for n in system.nodes},
        },
    }
