"""`testbed serve` through real uvicorn: concurrent clients, retries, then the ledger audited.

Many client threads create payments and retry them with the same idempotency key (again after
a 202, concurrently from two threads, after a 409 or a transport error). After a drain, from the
outside through the HTTP API: every 202's payment is posted or rejected exactly once (one
`post_pending` journal entry per posted payment, none for a rejected one, none for a payment no
client was acknowledged), money is conserved per currency, balances equal a replay of the
journal, and the hash chain verifies. Then, from the store, the projector's read models equal a
replay of the events and of the journal. The crash tests (test_crash_*.py) reuse these helpers.
"""

from __future__ import annotations

import random
import re
import signal
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from reference_impl.adapters import open_store
from reference_impl.core.journal import JournalEntry, first_broken_link
from reference_impl.runtime.launcher import ServeProcess, free_port
from reference_impl.service.projector import check_read_models

TENANT = "acme"
KEY = "e2e-key"
ACCOUNTS = [f"acct-{i}" for i in range(8)]
DONE = {"posted", "rejected", "failed", "settled"}
PARTITIONS = 8


def client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10.0)


@dataclass
class Ledger:
    """What the clients were told: idempotency key -> every payment id a 202 carried."""

    acked: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    sent: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Every key a client sent, with its body: a key sent but never acknowledged (the server
    died before answering) may still have committed, and its client retries it."""
    attempts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, key: str, payment_id: str) -> None:
        with self.lock:
            self.acked[key].add(payment_id)

    @property
    def payment_ids(self) -> set[str]:
        return {pid for ids in self.acked.values() for pid in ids}


def send(http: httpx.Client, ledger: Ledger, key: str, body: dict[str, Any], tries: int) -> bool:
    """POST until a 202 (recorded) or `tries` run out; 409 and transport errors are retried."""
    with ledger.lock:
        ledger.sent[key] = body
    for _ in range(tries):
        with ledger.lock:
            ledger.attempts += 1
        try:
            r = http.post("/v1/payments", json=body, headers={"Idempotency-Key": key})
        except httpx.TransportError:
            time.sleep(0.05)
            continue
        if r.status_code == 202:
            ledger.record(key, r.json()["id"])
            return True
        assert r.status_code in (409, 429, 503), (r.status_code, r.text)
        time.sleep(0.01)
    return False


def open_accounts(url: str, ledger: Ledger, funds: int) -> None:
    """A treasury (overdraft) account funds each client account through ordinary payments."""
    with client(url) as http:
        for account_id, overdraft in [("treasury", True)] + [(a, False) for a in ACCOUNTS]:
            body = {"id": account_id, "currency": "EUR", "overdraft": overdraft}
            assert http.post("/v1/accounts", json=body).status_code == 201
        for a in ACCOUNTS:
            body = {"debtor_account": "treasury", "creditor_account": a, "amount": funds,
                    "currency": "EUR"}  # fmt: skip
            assert send(http, ledger, f"fund-{a}", body, 5)


def run_clients(
    url: str,
    ledger: Ledger,
    threads: int,
    per_thread: int,
    seed: int,
    stop: threading.Event | None = None,
    tries: int = 20,
) -> None:
    """Each thread sends `per_thread` payments between the client accounts, with retries."""

    def worker(t: int) -> None:
        rng = random.Random(seed * 1000 + t)
        with client(url) as http, ThreadPoolExecutor(2) as twin:
            for i in range(per_thread):
                if stop is not None and stop.is_set():
                    return
                debtor, creditor = rng.sample(ACCOUNTS, 2)
                body = {"debtor_account": debtor, "creditor_account": creditor,
                        "amount": rng.randint(1, 3_000), "currency": "EUR"}  # fmt: skip
                key = f"s{seed}-t{t}-{i}"
                roll = rng.random()
                if roll < 0.2:
                    # The same request twice at once: one creates, the other gets 409 or a replay.
                    with client(url) as other:
                        racing = twin.submit(send, other, ledger, key, body, tries)
                        send(http, ledger, key, body, tries)
                        racing.result()
                else:
                    acked = send(http, ledger, key, body, tries)
                    if acked and roll < 0.5:
                        send(http, ledger, key, body, tries)  # a client that timed out retries

    with ThreadPoolExecutor(threads) as pool:
        for f in [pool.submit(worker, t) for t in range(threads)]:
            f.result()


def wait_for_acks(ledger: Ledger, at_least: int, timeout: float = 90.0) -> int:
    """Wait until `at_least` keys are acknowledged; a deadline for progress, not a speed test."""
    deadline = time.monotonic() + timeout
    while (acked := len(ledger.acked)) < at_least:
        assert time.monotonic() < deadline, f"only {acked} of {at_least} keys acked in {timeout:g}s"
        time.sleep(0.05)
    return acked


def retry_unacknowledged(url: str, ledger: Ledger) -> None:
    """What a client does after the server came back: resend every unanswered key."""
    with client(url) as http:
        for key, body in list(ledger.sent.items()):
            if key not in ledger.acked:
                assert send(http, ledger, key, body, 5), key


def lag(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=10.0).text
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(r'^testbed_queue_lag_events\{group="(\w+)"\} (\S+)$', text, re.M)
    }


def drain(
    url: str, groups: tuple[str, ...] = ("payments", "reporting"), timeout: float = 90.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = lag(url)
        if all(current.get(g) == 0 for g in groups):
            return
        time.sleep(0.1)
    raise AssertionError(f"not drained in {timeout:g}s: lag {lag(url)}")


def journal(http: httpx.Client) -> list[JournalEntry]:
    entries: list[JournalEntry] = []
    after = 0
    while page := http.get("/v1/journal", params={"after": after, "limit": 1000}).json()["entries"]:
        entries += [JournalEntry(**e) for e in page]
        after = page[-1]["seq"]
    return entries


def audit(url: str, ledger: Ledger) -> Counter[str]:
    """Check the invariants through the API after a drain; returns payments by final status."""
    for key, ids in ledger.acked.items():
        assert len(ids) == 1, f"key {key} was acknowledged as two payments: {ids}"
    with client(url) as http:
        statuses = {
            pid: http.get(f"/v1/payments/{pid}").json()["status"] for pid in ledger.payment_ids
        }
        entries = journal(http)
        accounts = {a: http.get(f"/v1/accounts/{a}").json() for a in ["treasury", *ACCOUNTS]}
    assert set(statuses.values()) <= DONE, Counter(statuses.values())
    assert first_broken_link(entries) == 0

    kinds: dict[str, Counter[str]] = defaultdict(Counter)
    for e in entries:
        kinds[e.payment_id][e.kind] += 1
    assert set(kinds) <= ledger.payment_ids, "journal entries for payments no client was acked"
    for pid, status in statuses.items():
        posts = kinds[pid]["post_pending"]
        assert posts == (1 if status in ("posted", "settled") else 0), (pid, status, kinds[pid])
        assert kinds[pid]["pending"] <= 1 and kinds[pid]["void"] <= kinds[pid]["pending"]

    # Replay the journal: posted and pending balances per account, money conserved.
    posted: Counter[str] = Counter()
    pending: Counter[str] = Counter()
    reserved = {e.payment_id: e for e in entries if e.kind == "pending"}
    for e in entries:
        if e.kind in ("post", "post_pending"):
            posted[e.credit_account] += e.amount
            posted[e.debit_account] -= e.amount
        if e.kind == "pending":
            pending[e.credit_account] += e.amount
            pending[e.debit_account] -= e.amount
    for e in entries:
        if e.kind in ("post_pending", "void"):
            r = reserved[e.payment_id]
            pending[r.credit_account] -= r.amount
            pending[r.debit_account] += r.amount
    assert sum(posted.values()) == 0 and sum(pending.values()) == 0
    for a, body in accounts.items():
        assert body["balance"]["posted"] == posted[a], (a, body, posted[a])
        assert body["balance"]["pending"] == pending[a], (a, body, pending[a])
    assert all(accounts[a]["balance"]["available"] >= 0 for a in ACCOUNTS)
    return Counter(statuses.values())


def check_projection(store_url: str) -> None:
    store = open_store(store_url)
    try:
        with store.unit_of_work() as uow:
            result = check_read_models(uow, [TENANT], PARTITIONS)
    finally:
        store.close()
    assert result.lag == 0 and result.ok, result.mismatches


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'serve.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def serve(store_url: str, **kwargs: Any) -> ServeProcess:
    return ServeProcess(store_url, {TENANT: KEY}, **kwargs)


@pytest.mark.timeout(240)
def test_concurrent_clients_retrying_get_each_payment_posted_or_rejected_once(
    store_url: str,
) -> None:
    ledger = Ledger()
    with serve(store_url) as server:
        open_accounts(server.url, ledger, funds=10_000)
        run_clients(server.url, ledger, threads=8, per_thread=30, seed=1)
        drain(server.url)
        statuses = audit(server.url, ledger)
        assert server.stop() == 0, server.output
    # Both outcomes occurred: the audit covered posted payments and refused ones.
    assert statuses["posted"] >= 50 and statuses["rejected"] >= 1, statuses
    assert ledger.attempts > len(ledger.acked)  # retries happened
    check_projection(store_url)


@pytest.mark.timeout(240)
def test_sigterm_mid_stream_loses_nothing_acknowledged(store_url: str) -> None:
    ledger = Ledger()
    stop = threading.Event()
    with serve(store_url) as server:
        open_accounts(server.url, ledger, funds=50_000)
        funded = len(ledger.acked)
        clients = threading.Thread(
            target=run_clients, args=(server.url, ledger, 6, 10_000, 2, stop, 3)
        )
        clients.start()
        wait_for_acks(ledger, funded + 20)  # mid-stream: 20 payments in, thousands to go
        assert server.stop(signal.SIGTERM) == 0, server.output
        stop.set()
        clients.join(60)
    assert not clients.is_alive()
    # Whatever was acknowledged before the server went away is handled after a restart.
    with serve(store_url) as server:
        retry_unacknowledged(server.url, ledger)
        drain(server.url)
        audit(server.url, ledger)
        assert server.stop() == 0
    check_projection(store_url)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--api-key", "no-colon"], "--api-key: expected TENANT:KEY"),
        (["--store", "mysql://x"], "--store: invalid store URL"),
        (["--store", "postgresql://nobody@127.0.0.1:1/none"], "--store: cannot connect"),
        (["--store", "memory://", "--workers", "2"], "--store: memory:// lives in one process"),
        (["--redis", "redis://127.0.0.1:1/0"], "--redis: cannot reach"),
    ],
)
@pytest.mark.parametrize("keys", ["given", "demo"])
def test_bad_flags_exit_2_with_one_line_naming_the_flag_and_nothing_else(
    args: list[str], message: str, keys: str, tmp_path: Path
) -> None:
    import subprocess
    import sys

    testbed = Path(sys.executable).with_name("testbed")
    api_key = ["--api-key", "acme:k"] if keys == "given" and "--api-key" not in args else []
    done = subprocess.run(
        [str(testbed), "serve", "--port", str(free_port()), *api_key, *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), done.stderr
    # Nothing was started or announced: no demo key for a server that never ran.
    assert done.stdout == "", done.stdout
