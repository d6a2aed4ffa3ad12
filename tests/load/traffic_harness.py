"""Helpers of the traffic generator's tests: small scenarios and checks every run must pass."""

from __future__ import annotations

from typing import Any

import pandas as pd

from loadtest.traffic import TrafficResult
from reports.record import to_arrow
from scenarios.schema import Scenario


def scenario(duration: float, **workload: Any) -> Scenario:
    """A scenario with only what the generator reads: the duration and the workload."""
    return Scenario.model_validate(
        {"description": "traffic test", "duration": duration, "workload": workload}
    )


def check_rows(result: TrafficResult) -> pd.DataFrame:
    """What holds for the rows of any run; returns them."""
    rows = result.requests
    to_arrow("requests", rows)  # the run record's schema, dtypes and outcome vocabulary
    # Every request's attempts are numbered 1..n, each once, under one key and one tenant.
    for key, group in rows.groupby("key"):
        assert sorted(group["attempt"]) == list(range(1, len(group) + 1)), key
        assert group["tenant"].nunique() == 1, key
    answered = rows["status"] != 0
    assert (rows.loc[answered, "done_at"] >= rows.loc[answered, "sent_at"]).all()
    assert (rows["sent_at"].dropna() >= rows.loc[rows["sent_at"].notna(), "intended_at"]).all()
    ok = rows["status"].between(200, 299)
    assert set(rows.loc[ok, "outcome"]) <= {"accepted", "replayed"}
    assert (rows.loc[ok, "payment_id"] != "").all()
    assert set(rows.loc[~answered, "outcome"]) <= {"timeout", "error"}
    # One key, one payment: every 2xx of a key names the same payment.
    assert (rows[ok].groupby("key")["payment_id"].nunique() == 1).all()
    # Each attempt is in the latency histogram once; each sent one in the service histogram.
    sent = int(rows["sent_at"].notna().sum())
    assert result.latency.count == len(rows)
    assert result.service.count == result.send_lag.count == sent
    assert result.locust.requests == sent
    assert result.rates["scheduled"].sum() == (rows["attempt"] == 1).sum() == rows["key"].nunique()
    return rows
