"""Open and fund the scenario's accounts through the HTTP API (docs/api.md), before the traffic.

The accounts are the sim's (sim/system.py): in each tenant `tenant-N`, an overdraft account
`funding` and the workload's `acc-NNNNNN` accounts in the workload's currency. The HTTP API
has no way to create money except a payment from an overdraft account, so each account gets
`initial_balance` through an ordinary payment from `funding` (idempotency key `fund:ACCOUNT`),
and the set-up waits until every one is posted. Those payments are real payments the audit will
find in the journal, so their attempts are returned as a table of their own with the requests
table's columns (times in seconds since t0), apart from the measured traffic.

With compliance checks on, a funding payment may be held (the funding account pays hundreds of
accounts at once: a velocity rule's case); given an operator key, the set-up approves it through
`POST /v1/payments/{id}/review`, as an operator would.

It is idempotent: run again against the same system, an existing account (409) is checked to
have the right currency and overdraft, and a funding payment's key replays its first answer, so
nothing is created or funded twice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pandas as pd

from loadtest.attempts import is_final, outcome
from loadtest.errors import SetupError
from loadtest.pacing import FUNDING_ACCOUNT
from scenarios.schema import Workload
from scenarios.workload import account_ids, tenant_ids

CONCURRENCY = 16
ATTEMPTS = 8
"""Tries per set-up request before the set-up fails (409 in flight, 429, 5xx, no answer)."""
FUNDING_COLUMNS = ["tenant", "account", "payment_id", "amount", "status"]
POSTED = frozenset({"posted", "settled"})
REQUEST_COLUMNS = [
    "key", "tenant", "attempt", "intended_at", "sent_at", "done_at", "status", "payment_id",
    "outcome",
]  # fmt: skip


@dataclass(frozen=True)
class SetupResult:
    rows: pd.DataFrame
    """Every attempt of every funding payment, with the requests table's columns and dtypes."""
    accounts: pd.DataFrame
    """tenant, id, overdraft, created (False: it existed already)."""
    funding: pd.DataFrame
    """tenant, account, payment_id, amount, status (posted or settled) of each funding payment."""


class _Setup:
    def __init__(
        self, workload: Workload, base_url: str, api_keys: Mapping[str, str], t0: float,
        timeout: float, operator_key: str | None = None,
    ) -> None:  # fmt: skip
        self.workload = workload
        self.operator_key = operator_key
        self.api_keys = api_keys
        self.t0 = t0
        self.deadline = time.monotonic() + timeout
        self.http = httpx.Client(base_url=base_url, timeout=30.0)
        self.lock = threading.Lock()
        self.rows: list[dict[str, Any]] = []
        self.accounts: list[dict[str, Any]] = []
        self.funding: list[dict[str, Any]] = []

    def _headers(self, tenant: str, key: str = "") -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.api_keys[tenant]}"}
        if key:
            headers["Idempotency-Key"] = key
        return headers

    def _send(
        self, method: str, path: str, tenant: str, what: str, body: Any = None, key: str = ""
    ) -> httpx.Response:
        """One set-up request, retried on "not now" answers and transport errors."""
        for attempt in range(1, ATTEMPTS + 1):
            if time.monotonic() > self.deadline:
                raise SetupError(f"set-up: {what} (tenant {tenant}): out of time")
            sent = time.time()
            try:
                r = self.http.request(method, path, json=body, headers=self._headers(tenant, key))
            except httpx.TransportError as e:
                response: httpx.Response | None = None
                failure = f"{type(e).__name__}: {e}"
            else:
                response, failure = r, f"{r.status_code} {r.text[:200]}"
            done = time.time()
            if key:
                self._row(key, tenant, attempt, sent, done, response)
            if response is not None:
                code = response.status_code
                # A 409 without a key is POST /v1/accounts finding the account: final too.
                if is_final(code) or (code == 409 and not key):
                    return response
            time.sleep(min(2.0, 0.05 * 2**attempt))
        raise SetupError(f"set-up: {what} (tenant {tenant}): {failure}")

    def _row(
        self, key: str, tenant: str, n: int, sent: float, done: float, r: httpx.Response | None
    ) -> None:
        status = 0 if r is None else r.status_code
        replayed = r is not None and r.headers.get("idempotency-replay") == "true"
        pid = ""
        if r is not None and 200 <= status < 300:
            pid = str(r.json().get("id", ""))
        row = {
            "key": key, "tenant": tenant, "attempt": n, "intended_at": sent - self.t0,
            "sent_at": sent - self.t0, "done_at": done - self.t0, "status": status,
            "payment_id": pid, "outcome": outcome(status, replayed) if r is not None else "error",
        }  # fmt: skip
        with self.lock:
            self.rows.append(row)

    def open_account(self, tenant: str, account: str, overdraft: bool) -> None:
        currency = self.workload.currency
        holder = "funding" if overdraft else f"holder {account}"
        body = {"id": account, "currency": currency, "overdraft": overdraft, "holder_name": holder}
        what = f"POST /v1/accounts {account}"
        r = self._send("POST", "/v1/accounts", tenant, what, body)
        created = r.status_code == 201
        if r.status_code == 409:
            r = self._send("GET", f"/v1/accounts/{account}", tenant, f"GET {account}")
            if r.status_code != 200:
                raise SetupError(f"set-up: account {account} (tenant {tenant}): {r.status_code}")
            existing = r.json()
            if (existing.get("currency"), existing.get("overdraft")) != (currency, overdraft):
                raise SetupError(
                    f"set-up: account {account} (tenant {tenant}) exists with currency "
                    f"{existing.get('currency')} and overdraft {existing.get('overdraft')}, "
                    f"not {currency} and {overdraft}"
                )
        elif not created:
            raise SetupError(f"set-up: {what} (tenant {tenant}): {r.status_code} {r.text[:200]}")
        with self.lock:
            self.accounts.append(
                {"tenant": tenant, "id": account, "overdraft": overdraft, "created": created}
            )

    def fund(self, tenant: str, account: str) -> None:
        amount = self.workload.initial_balance
        body = {"debtor_account": FUNDING_ACCOUNT, "creditor_account": account,
                "amount": amount, "currency": self.workload.currency}  # fmt: skip
        what = f"funding payment to {account}"
        r = self._send("POST", "/v1/payments", tenant, what, body, key=f"fund:{account}")
        if r.status_code != 202:
            raise SetupError(f"set-up: {what} (tenant {tenant}): {r.status_code} {r.text[:200]}")
        pid = str(r.json()["id"])
        status = self._wait_posted(tenant, pid, what)
        with self.lock:
            self.funding.append({"tenant": tenant, "account": account, "payment_id": pid,
                                 "amount": amount, "status": status})  # fmt: skip

    def _approve(self, tenant: str, payment_id: str, what: str, reason: str) -> None:
        """A funding payment the compliance checks held: an operator approves it (the money
        comes from the tenant's own funding account), or the set-up cannot go on."""
        if self.operator_key is None:
            raise SetupError(
                f"set-up: {what} (tenant {tenant}) was held by the compliance checks ({reason})"
                " and no operator key was given to approve it"
            )
        r = self.http.post(
            f"/v1/payments/{payment_id}/review",
            json={"verdict": "approve", "reason": "set-up funding"},
            headers={**self._headers(tenant), "X-Operator-Key": self.operator_key},
        )
        if r.status_code not in (202, 409):  # 409: approved already, not moved on yet
            raise SetupError(f"set-up: review of {what} (tenant {tenant}): {r.status_code}")

    def _wait_posted(self, tenant: str, payment_id: str, what: str) -> str:
        # Polled rather than long-polled (`?wait=`): the reference gateway's long-poll on SQLite
        # can miss the change and hold the answer for the whole wait.
        pause = 0.02
        while True:
            r = self._send("GET", f"/v1/payments/{payment_id}", tenant, what)
            if r.status_code != 200:
                raise SetupError(f"set-up: {what} (tenant {tenant}): GET {r.status_code}")
            payment = r.json()
            status = str(payment.get("status"))
            if status in POSTED:
                return status
            if status in ("rejected", "failed"):
                reason = payment.get("reason", "")
                raise SetupError(f"set-up: {what} (tenant {tenant}) was {status}: {reason}")
            if status == "held":
                self._approve(tenant, payment_id, what, str(payment.get("reason", "")))
            if time.monotonic() > self.deadline:
                raise SetupError(f"set-up: {what} (tenant {tenant}) not posted in time: {status}")
            time.sleep(pause)
            pause = min(0.5, pause * 2)


def setup_accounts(
    workload: Workload,
    base_url: str,
    api_keys: Mapping[str, str],
    t0: float,
    timeout: float = 600.0,
    operator_key: str | None = None,
) -> SetupResult:
    """Open every tenant's accounts and fund them, waiting until each funding is posted (and
    approving, with `operator_key`, a funding payment the compliance checks held)."""
    setup = _Setup(workload, base_url, api_keys, t0, timeout, operator_key)
    tenants = tenant_ids(workload.tenants)
    accounts = account_ids(workload.accounts)
    jobs = [(t, a) for t in tenants for a in accounts]
    pool = ThreadPoolExecutor(CONCURRENCY)
    try:
        for f in [pool.submit(setup.open_account, t, FUNDING_ACCOUNT, True) for t in tenants]:
            f.result()
        for f in [pool.submit(setup.open_account, t, a, False) for t, a in jobs]:
            f.result()
        if workload.initial_balance:
            for f in [pool.submit(setup.fund, t, a) for t, a in jobs]:
                f.result()
    finally:
        pool.shutdown(cancel_futures=True)  # on a failure, start nothing more
        setup.http.close()
    rows = pd.DataFrame(setup.rows, columns=REQUEST_COLUMNS)
    rows = rows.astype({"attempt": "int64", "status": "int64", "intended_at": "float64",
                        "sent_at": "float64", "done_at": "float64"})  # fmt: skip
    rows = rows.sort_values(["sent_at", "key", "attempt"], kind="stable").reset_index(drop=True)
    return SetupResult(
        rows,
        pd.DataFrame(setup.accounts, columns=["tenant", "id", "overdraft", "created"]),
        pd.DataFrame(
            setup.funding, columns=["tenant", "account", "payment_id", "amount", "status"]
        ),
    )
