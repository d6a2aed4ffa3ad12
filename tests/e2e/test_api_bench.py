"""The API benchmark's own instruments: its baseline really answers 202, and its wrk script
counts only 202 answers as throughput (anything else is counted apart)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from reference_impl.api_bench import cpu_by_role, main, trivial_app, wrk
from reference_impl.runtime.launcher import free_port

BODY = {"debtor_account": "d1", "creditor_account": "c1", "amount": 5, "currency": "EUR"}


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_baseline_endpoint_answers_202(anyio_backend: str) -> None:
    transport = httpx.ASGITransport(app=trivial_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        r = await client.post("/trivial", json=BODY)
    assert r.status_code == 202, r.text
    assert r.json()["amount"] == 5


_pids: dict[str, int] = {}


@pytest.fixture
def trivial_url() -> Iterator[str]:
    if shutil.which("wrk") is None:
        message = "wrk is not installed (apt-get install wrk)"
        if os.environ.get("TESTBED_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{message}; TESTBED_REQUIRE_SERVICES=1: it is required")
        pytest.skip(message)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "reference_impl.api_bench:trivial_app",
         "--port", str(port), "--log-level", "warning"],
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    _pids[url] = server.pid
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the baseline server did not start"
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(30)


@pytest.mark.timeout(120)
def test_wrk_counts_202_answers_as_throughput_and_nothing_else(trivial_url: str) -> None:
    good = wrk(trivial_url, "/trivial", 1, "ok")
    assert good.accepted_per_s > 0 and good.other == 0
    missing = wrk(trivial_url, "/no-such-route", 1, "nf")  # every answer a 404
    assert missing.accepted_per_s == 0 and missing.other > 0
    assert 0 <= missing.generator_cpu < 1.5


@pytest.mark.timeout(120)
def test_the_server_cpu_of_a_run_is_counted_by_role(trivial_url: str) -> None:
    pid = _pids[trivial_url]
    before = cpu_by_role(pid)
    assert list(before) == ["server process"]  # no child, no process title: the root itself
    wrk(trivial_url, "/trivial", 1, "cpu")
    assert cpu_by_role(pid)["server process"] > before["server process"]


def test_bad_flags_exit_2_naming_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--workers", "0"])
    assert exit_.value.code == 2
    assert "--workers: must be a whole number >= 1, not '0'" in capsys.readouterr().err
