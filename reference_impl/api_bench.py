"""API benchmark: POST /v1/payments against a trivial FastAPI endpoint served the same way.

`python -m reference_impl.api_bench [--seconds 10]` measures, in one run on this machine:

1. saturation throughput of POST /v1/payments (`testbed serve`: one process, SQLite, workers
   in-process) and of a trivial FastAPI POST endpoint (same body and headers, one uvicorn
   process), both driven by the same closed-loop generator: `wrk` when installed, else an async
   httpx client (slower, so it flatters the ratio; the output says which ran). Prints both, the
   ratio (target >= 0.5) and the p99 ack latency at saturation;
2. at half the measured payments throughput, paced open-loop with latency taken from each
   request's intended send time (no coordinated omission): the p99 ack latency and the p99 time
   from 202 to posted (target < 500 ms), from each payment's own received_at and posted_at.

PASS/MISS is printed against each target; the numbers are whatever this machine gives.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from reference_impl.runtime.launcher import ServeProcess, free_port

KEY = "bench-key"
DEBTORS = 16  # overdraft debtors spread payments over the event-log partitions
CREDITORS = 64
CONNECTIONS = 32

_LUA = """
local n = 0
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("prefix", "%(run)s-" .. threads)
end
request = function()
  n = n + 1
  local body = string.format(
    '{"debtor_account":"d%%d","creditor_account":"c%%d","amount":%%d,"currency":"EUR"}',
    n %% %(debtors)d, n %% %(creditors)d, 100 + n %% 900)
  return wrk.format("POST", "%(path)s", {
    ["Authorization"] = "Bearer %(key)s",
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = prefix .. "-" .. n}, body)
end
"""


def trivial_app() -> Any:
    """The baseline: FastAPI parsing the same JSON body and answering 202 with a small body."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    app = FastAPI()

    @app.post("/trivial")
    async def trivial(request: Request) -> JSONResponse:
        body = await request.json()
        return JSONResponse({"id": uuid.uuid4().hex, "status": "received", **body}, 202)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _body(n: int) -> dict[str, Any]:
    return {"debtor_account": f"d{n % DEBTORS}", "creditor_account": f"c{n % CREDITORS}",
            "amount": 100 + n % 900, "currency": "EUR"}  # fmt: skip


def _seconds(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[unit]


def wrk(url: str, path: str, seconds: float) -> tuple[float, float, int]:
    """(requests/s, p99 latency s, non-2xx count) from one `wrk` run."""
    script = _LUA % {"run": uuid.uuid4().hex[:8], "debtors": DEBTORS, "creditors": CREDITORS,
                     "path": path, "key": KEY}  # fmt: skip
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "--latency", "-s", f.name, url],
            capture_output=True, text=True, check=True, timeout=seconds + 60,
        ).stdout  # fmt: skip
    finally:
        os.unlink(f.name)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = _seconds(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rate, p99, int(bad.group(1)) if bad else 0


async def closed_loop(url: str, path: str, seconds: float) -> tuple[float, float, int]:
    """The fallback generator: CONNECTIONS clients in a closed loop; same result shape as wrk."""
    latencies: list[float] = []
    bad = 0
    run = uuid.uuid4().hex[:8]
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=CONNECTIONS)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30.0) as http:

        async def client(c: int) -> None:
            nonlocal bad
            n = 0
            while time.perf_counter() < deadline:
                n += 1
                started = time.perf_counter()
                r = await http.post(path, json=_body(n + c), headers=_headers(f"{run}-{c}-{n}"))
                latencies.append(time.perf_counter() - started)
                bad += r.status_code >= 300

        await asyncio.gather(*(client(c) for c in range(CONNECTIONS)))
    return len(latencies) / seconds, _p99(latencies), bad


def _headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}", "Idempotency-Key": key}


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else float("nan")


async def paced(url: str, rate: float, seconds: float) -> tuple[list[float], list[str], int]:
    """Open loop at `rate`/s: (ack latencies from the intended send time, payment ids, non-202s)."""
    latencies: list[float] = []
    ids: list[str] = []
    bad = 0
    run = uuid.uuid4().hex[:8]
    limits = httpx.Limits(max_connections=256)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30.0) as http:
        start = time.perf_counter()

        async def one(n: int, intended: float) -> None:
            nonlocal bad
            r = await http.post("/v1/payments", json=_body(n), headers=_headers(f"{run}-{n}"))
            latencies.append(time.perf_counter() - intended)
            if r.status_code == 202:
                ids.append(r.json()["id"])
            else:
                bad += 1

        tasks = []
        for n in range(int(rate * seconds)):
            intended = start + n / rate
            await asyncio.sleep(max(0.0, intended - time.perf_counter()))
            tasks.append(asyncio.create_task(one(n, intended)))
        await asyncio.gather(*tasks)
    return latencies, ids, bad


def setup_accounts(url: str) -> None:
    with httpx.Client(base_url=url, headers=_headers(""), timeout=30.0) as http:
        for i in range(DEBTORS):
            r = http.post(
                "/v1/accounts", json={"id": f"d{i}", "currency": "EUR", "overdraft": True}
            )
            r.raise_for_status()
        for i in range(CREDITORS):
            http.post("/v1/accounts", json={"id": f"c{i}", "currency": "EUR"}).raise_for_status()


def wait_drained(url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = httpx.get(f"{url}/metrics", timeout=30.0).text
        lags = re.findall(r"^testbed_queue_lag_events\{.*\} (\S+)$", text, re.M)
        if len(lags) == 3 and all(float(n) == 0 for n in lags):
            return
        time.sleep(0.2)
    raise RuntimeError(f"consumer groups not drained in {timeout:g}s")


def time_to_posted(url: str, ids: list[str]) -> list[float]:
    out: list[float] = []
    with httpx.Client(base_url=url, headers=_headers(""), timeout=30.0) as http:
        for pid in ids:
            p = http.get(f"/v1/payments/{pid}").json()
            if p.get("posted_at") is not None:
                out.append(p["posted_at"] - p["received_at"])
    return out


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m reference_impl.api_bench")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    args = parser.parse_args()
    seconds: float = args.seconds
    use_wrk = shutil.which("wrk") is not None
    generator = "wrk (-t1 -c32)" if use_wrk else "async httpx (install wrk for a fairer baseline)"

    def measure(url: str, path: str) -> tuple[float, float, int]:
        if use_wrk:
            return wrk(url, path, seconds)
        return asyncio.run(closed_loop(url, path, seconds))

    port = free_port()
    baseline = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "reference_impl.api_bench:trivial_app",
         "--port", str(port), "--log-level", "warning", "--no-access-log"],
    )  # fmt: skip
    try:
        base_url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if httpx.get(f"{base_url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise RuntimeError("the trivial baseline server did not start")
        trivial_rate, trivial_p99, _ = measure(base_url, "/trivial")
    finally:
        baseline.terminate()
        baseline.wait()

    with tempfile.TemporaryDirectory() as tmp:
        store = f"sqlite:///{Path(tmp) / 'bench.db'}"
        with ServeProcess(store, {"bench": KEY}) as server:
            setup_accounts(server.url)
            pay_rate, pay_p99, pay_bad = measure(server.url, "/v1/payments")
            wait_drained(server.url)
            half = pay_rate / 2
            acks, ids, half_bad = asyncio.run(paced(server.url, half, seconds))
            wait_drained(server.url)
            posted = time_to_posted(server.url, ids)
            server.stop()

    ratio = pay_rate / trivial_rate
    print(f"load generator: {generator}; {seconds:g} s per phase; {os.cpu_count()} CPUs")
    print(
        f"trivial FastAPI POST        {trivial_rate:9.0f} req/s   p99 {trivial_p99 * 1e3:7.1f} ms"
    )
    print(
        f"POST /v1/payments (SQLite)  {pay_rate:9.0f} req/s   p99 {pay_p99 * 1e3:7.1f} ms"
        f"   non-202: {pay_bad}"
    )
    print(f"ratio payments/trivial      {ratio:9.2f}   target >= 0.50  {verdict(ratio >= 0.5)}")
    print(
        f"at half load ({half:.0f}/s, open loop): ack p99 {_p99(acks) * 1e3:.1f} ms,"
        f" non-202: {half_bad}, posted {len(posted)}/{len(ids)}"
    )
    p99_posted = _p99(posted)
    print(
        f"202 -> posted p99           {p99_posted * 1e3:9.1f} ms   target < 500 ms   "
        f"{verdict(p99_posted < 0.5 and len(posted) == len(ids))}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
