"""/metrics under `testbed serve --workers N`: one scrape shows the whole service.

With several gateway processes behind one port, consecutive scrapes land on different processes.
Each scrape must still count every process's requests (so no counter ever goes backwards) and
carry the worker processes' counters: every metric docs/serve.md documents has samples.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest
from test_serve_load import KEY, drain, serve

DOCUMENTED = (
    "testbed_gateway_request_duration_seconds_count",
    "testbed_gateway_payments_total",
    "testbed_queue_lag_events",
    "testbed_payments_by_status",
    "testbed_worker_events_total",
    "testbed_worker_failures_total",
    "testbed_worker_compensations_total",
)
PAYMENTS = 20


def samples(text: str) -> dict[str, float]:
    """Every sample of the scrape: 'name{labels}' -> value."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


def scrape(url: str) -> dict[str, float]:
    # A fresh connection each time, so the scrapes spread over the gateway processes.
    return samples(httpx.get(f"{url}/metrics", timeout=10.0).text)


def value(found: dict[str, float], name: str, **labels: str) -> float:
    return sum(
        v
        for k, v in found.items()
        if re.fullmatch(rf"{name}(\{{.*\}})?", k)
        and all(f'{a}="{b}"' in k for a, b in labels.items())
    )


@pytest.mark.timeout(120)
def test_every_scrape_counts_every_gateway_and_worker_process(tmp_path: Path) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    with serve(f"sqlite:///{tmp_path / 'metrics.db'}", workers=2) as server:
        with httpx.Client(base_url=server.url, headers=auth, timeout=10.0) as http:
            for body in ({"id": "a", "currency": "EUR", "overdraft": True},
                         {"id": "b", "currency": "EUR"}):  # fmt: skip
                assert http.post("/v1/accounts", json=body).status_code == 201
        for i in range(PAYMENTS):
            body = {"debtor_account": "a", "creditor_account": "b", "amount": 1 + i,
                    "currency": "EUR"}  # fmt: skip
            r = httpx.post(f"{server.url}/v1/payments", json=body,
                           headers={**auth, "Idempotency-Key": f"m-{i}"}, timeout=10.0)  # fmt: skip
            assert r.status_code == 202, r.text
        drain(server.url)

        # The groups this deployment runs; not the checks' groups, which it does not run (their
        # lag would only grow: a log nobody reads).
        lags = [k for k in scrape(server.url) if k.startswith("testbed_queue_lag_events")]
        assert sorted(lags) == [
            f'testbed_queue_lag_events{{group="{g}"}}'
            for g in ("payments", "reporting", "settlement")
        ]

        previous: dict[str, float] = {}
        for _ in range(12):
            found = scrape(server.url)
            assert value(found, "testbed_gateway_payments_total", outcome="accepted") == PAYMENTS
            requests = "testbed_gateway_request_duration_seconds_count"
            assert value(found, requests, route="/v1/payments", status="202") == PAYMENTS
            for name in DOCUMENTED:
                assert any(re.fullmatch(rf"{name}(\{{.*\}})?", k) for k in found), name
            # Counters never go backwards between scrapes, whichever process answers.
            for k, v in previous.items():
                if k.split("{")[0].endswith(("_total", "_count", "_sum", "_bucket")):
                    assert found.get(k, 0.0) >= v, (k, v, found.get(k))
            previous = found
        # Each payment's event was committed by a payments worker process, and shows here once
        # the workers have published their counters (every 0.5 s: waited for, within a minute).
        deadline = time.monotonic() + 60
        while value(previous, "testbed_worker_events_total", group="payments") < PAYMENTS:
            assert time.monotonic() < deadline, "the workers' events never showed in /metrics"
            time.sleep(0.2)
            previous = scrape(server.url)
        assert server.stop() == 0, server.output
