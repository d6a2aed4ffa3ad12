"""Compliance checks in real processes: `testbed serve --workers 1 --checks parallel` runs the
sanctions, AML and fraud groups as worker processes of their own; a listed name is rejected, a
near match is held and moves no money until an operator's review approves it; bad flags exit 2
naming the flag before anything starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_serve_load import drain

from reference_impl.adapters import open_store
from reference_impl.runtime.launcher import ServeProcess
from reference_impl.service.checks import DECISION

KEY, OPERATOR = "compliance-key", "operator-key"
WATCHLIST = (
    "id,schema,name,aliases,countries,program,dataset\n"
    "TEST-000001,Person,Vladimir Sokolov,,ru,TEST,test_list\n"
)
TESTBED = str(Path(sys.executable).with_name("testbed"))


def pay(http: httpx.Client, key: str, creditor_name: str, debtor: str = "alice") -> str:
    body = {
        "debtor_account": debtor,
        "creditor_account": "alice" if debtor == "treasury" else "bob",
        "amount": 100_000 if debtor == "treasury" else 1_000,
        "currency": "EUR",
        "creditor_name": creditor_name,
    }
    r = http.post("/v1/payments", json=body, headers={"Idempotency-Key": key})
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def settled_status(http: httpx.Client, pid: str, moving: tuple[str, ...]) -> dict[str, Any]:
    """The payment once it has left the `moving` statuses (long-polls, within a minute)."""
    for _ in range(60):
        body: dict[str, Any] = http.get(f"/v1/payments/{pid}", params={"wait": 1}).json()
        if body["status"] not in moving:
            return body
    raise AssertionError(f"payment {pid} still {body['status']} after a minute")


@pytest.mark.timeout(240)
def test_checks_in_their_own_processes_reject_hold_and_pass_payments(tmp_path: Path) -> None:
    watchlist = tmp_path / "watchlist.csv"
    watchlist.write_text(WATCHLIST)
    store = f"sqlite:///{tmp_path / 'testbed.db'}"
    extra = ["--workers", "1", "--checks", "parallel", "--check-timeout", "30"]
    extra += ["--watchlist", str(watchlist), "--operator-key", OPERATOR]
    with ServeProcess(store, {"acme": KEY}, extra=extra) as server:
        names = set(server.pids())
        assert {"sanctions-1", "aml-1", "fraud-1"} <= names, server.output
        auth = {"Authorization": f"Bearer {KEY}"}
        with httpx.Client(base_url=server.url, headers=auth, timeout=10.0) as http:
            for account, overdraft in (("treasury", True), ("alice", False), ("bob", False)):
                body = {"id": account, "currency": "EUR", "overdraft": overdraft}
                assert http.post("/v1/accounts", json=body).status_code == 201
            fund = pay(http, "fund", "", debtor="treasury")
            moving = ("received", "screening", "reserved")
            assert settled_status(http, fund, moving)["status"] == "posted"
            passed = pay(http, "k-pass", "Jane Smith")
            listed = pay(http, "k-listed", "Vladimir Sokolov")
            near = pay(http, "k-near", "V. Sokolov")
            assert settled_status(http, passed, moving)["status"] == "posted"
            rejected = settled_status(http, listed, moving)
            assert rejected["status"] == "rejected"
            assert "TEST-000001" in rejected["reason"]
            held = settled_status(http, near, moving)
            assert held["status"] == "held"
            assert "sanctions:match TEST-000001" in held["reason"]

            path = f"/v1/payments/{near}/review"
            verdict = {"verdict": "approve", "reason": "a different person"}
            assert http.post(path, json=verdict).status_code == 403
            wrong = {"X-Operator-Key": "nope"}
            assert http.post(path, json=verdict, headers=wrong).status_code == 403
            operator = {"X-Operator-Key": OPERATOR}
            bad = http.post(path, json={"verdict": "maybe"}, headers=operator)
            assert bad.status_code == 422 and "verdict" in bad.text
            assert http.post(path, json=verdict, headers=operator).status_code == 202
            assert http.post(path, json=verdict, headers=operator).status_code == 409
            assert settled_status(http, near, ("held", *moving))["status"] == "posted"
            missing = http.post("/v1/payments/nope/review", json=verdict, headers=operator)
            assert missing.status_code == 404
        checks = ("sanctions", "aml", "fraud")
        drain(server.url, ("payments", *checks))  # /metrics shows the checks' groups' lag too
        assert server.stop() == 0, server.output
    opened = open_store(store)
    try:
        with opened.unit_of_work() as uow:
            decided = [key for key, _ in uow.list_records(DECISION, "acme", "", 100)]
    finally:
        opened.close()
    # Each of the four payments decided once by each check, and the review once.
    assert len(decided) == 4 * 3 + 1
    assert f"{near}/operator" in decided


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--checks", "sometimes"], "--checks"),
        (["--checks", "parallel", "--on-timeout", "shrug"], "--on-timeout"),
        (["--checks", "parallel", "--fraud-model", "/nonexistent/model"], "--fraud-model"),
        (["--checks", "parallel", "--watchlist", "/nonexistent/list.csv"], "--watchlist"),
    ],
)
def test_bad_check_flags_exit_2_naming_the_flag(
    tmp_path: Path, flags: list[str], named: str
) -> None:
    store = f"sqlite:///{tmp_path / 'testbed.db'}"
    done = subprocess.run(
        [TESTBED, "serve", "--store", store, *flags], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert f"error: {named}:" in done.stderr
    assert not (tmp_path / "testbed.db").exists()  # nothing was started or created
