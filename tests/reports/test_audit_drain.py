"""A sent batch that no statement covers: a settlement finding in a drained run, liveness in a
run whose drain ran out before the partner's statement came."""

from __future__ import annotations

import pytest
from record_harness import tables

from reports.audit import Findings
from reports.audit_flow import check_statements
from reports.record import RunRecord

SENT = {
    "batch_id": "b1", "tenant": "t1", "partner": "bank-a", "currency": "EUR",
    "payment_id": "p1", "amount": 100, "cutoff_at": 5.0, "sent_at": 5.1,
}  # fmt: skip


@pytest.mark.parametrize(("drained", "kind"), [(True, "settlement"), (False, "liveness")])
def test_a_batch_no_statement_covers(drained: bool, kind: str) -> None:
    record = RunRecord.from_tables(tables(settlements=[SENT]), {"drained": drained})
    found = Findings()
    check_statements(record, found)
    result = found.result(1, 10)
    assert result.counts[kind] == 1
    assert sum(result.counts.values()) == 1
