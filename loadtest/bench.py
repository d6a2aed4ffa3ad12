"""Benchmark of the traffic generator against wrk, on one trivial endpoint, in one run.

    python -m loadtest.bench [--seconds 5] [--rounds 5] [--locust-workers N]

A minimal FastAPI POST /v1/payments that answers 202 (one uvicorn process on 127.0.0.1) is the
system; what is measured is the generator:

The server runs on one half of the CPUs and wrk or the generator on the other, so that neither
tool's own CPU is taken from the server it measures (other processes on the machine still are).

1. saturation: wrk (C, closed loop, 32 connections) and run_traffic (open model, 32 users,
   arrivals at 1.25x what wrk achieved, so both keep the server busy) each drive the endpoint
   for `rounds` rounds, alternating, so that both meet the same moods of a shared machine; the
   best answered-requests-per-second of each is compared. Target: run_traffic >= 0.9x wrk.
2. accuracy: run_traffic well below saturation (a quarter of wrk's rate, at most 1,000/s) for
   long enough that Poisson noise is under 0.5%: first attempts actually sent per second against
   the scenario's rate, and against the arrivals the schedule drew. Target: both within 2%.

It prints the figures and the configuration, PASS or MISS per target, and exits 1 on a miss.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from loadtest.lifeline import stop_group
from loadtest.traffic import TrafficResult, run_traffic
from scenarios.schema import Scenario

CONNECTIONS = 32
OVERLOAD = 1.25
"""Saturation runs offer this much more than wrk's best, so the server is never idle."""
SATURATION_TARGET = 0.9
ACCURACY_TARGET = 0.02
NOISE = 0.005
"""Relative Poisson noise (1/sqrt(arrivals)) the accuracy phase runs long enough to stay under."""
KEY = "bench-key"
TENANT = "tenant-1"

_LUA = """
local n = 0
request = function()
  n = n + 1
  return wrk.format("POST", "/v1/payments", {
    ["Authorization"] = "Bearer %(key)s",
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = "%(run)s-" .. n},
    '{"debtor_account":"acc-000001","creditor_account":"acc-000002","amount":1250,"currency":"EUR"}')
end
"""


def trivial_app() -> FastAPI:
    """The system: answers every payment 202 with a small body, as the gateway would."""
    app = FastAPI()

    @app.post("/v1/payments")
    async def payments(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse({"id": uuid.uuid4().hex, "status": "received"}, 202)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cpu_split() -> tuple[set[int], set[int]] | None:
    """(the server's CPUs, the generators' CPUs): apart, so that neither tool's own CPU is taken
    from the server it measures; None with fewer than two CPUs to share."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    half = len(cpus) // 2
    return set(cpus[:half]), set(cpus[half:])


def start_server(cpus: set[int] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "loadtest.bench:trivial_app",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
         "--no-access-log"],
        start_new_session=True,
        preexec_fn=None if cpus is None else lambda: os.sched_setaffinity(0, cpus),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    stop_group(proc, 5)
    raise RuntimeError("the trivial server did not start")


def wrk(url: str, seconds: float) -> float:
    """Requests per second wrk got answered."""
    script = _LUA % {"key": KEY, "run": uuid.uuid4().hex[:8]}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "-s", f.name, url],
            capture_output=True, text=True, check=True, timeout=seconds + 60,
        ).stdout  # fmt: skip
    finally:
        os.unlink(f.name)
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if found is None:
        raise RuntimeError(f"no rate in wrk's output:\n{out}")
    return float(found.group(1))


def scenario(rate: float, seconds: float) -> Scenario:
    return Scenario.model_validate({
        "description": "loadtest.bench", "duration": seconds,
        "workload": {"tenants": 1, "accounts": 100, "rate": rate,
                     "client": {"timeout": 5.0, "retries": 0}},
    })  # fmt: skip


def traffic(url: str, rate: float, seconds: float, workers: int, users: int | None,
            out: Path) -> TrafficResult:  # fmt: skip
    return run_traffic(
        scenario(rate, seconds), url, {TENANT: KEY}, t0=time.time(), seed=1, out_dir=out,
        locust_workers=workers, users=users, setup=False,
    )  # fmt: skip


def answered_rate(result: TrafficResult, seconds: float) -> float:
    """Answers per second that arrived within the arrival window."""
    r = result.requests
    t = r["done_at"] - result.started_at
    return float(((r["status"] != 0) & (t >= 0) & (t < seconds)).sum()) / seconds


def sent_first(result: TrafficResult, seconds: float) -> tuple[int, int]:
    """(first attempts sent within the window, arrivals the schedule drew)."""
    r = result.requests
    first = r[r["attempt"] == 1]
    t = first["sent_at"] - result.started_at
    return int(((t >= 0) & (t < seconds)).sum()), len(first)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of a saturation run")
    parser.add_argument("--rounds", type=int, default=5, help="saturation runs of each tool")
    parser.add_argument("--locust-workers", type=int, default=0, help="generator workers")
    args = parser.parse_args(argv)
    seconds: float = args.seconds
    workers: int = args.locust_workers
    checks = [("--seconds", seconds > 0, "> 0"), ("--rounds", args.rounds >= 1, ">= 1"),
              ("--locust-workers", workers >= 0, ">= 0")]  # fmt: skip
    for flag, ok, rule in checks:
        if not ok:
            print(f"error: {flag}: must be {rule}", file=sys.stderr)
            return 2
    split = cpu_split()
    proc, url = start_server(None if split is None else split[0])
    if split is not None:
        os.sched_setaffinity(0, split[1])  # wrk and the generator processes inherit it
    try:
        with tempfile.TemporaryDirectory() as tmp:
            base: list[float] = []
            ours: list[float] = []
            for i in range(args.rounds):
                base.append(wrk(url, seconds))
                result = traffic(url, OVERLOAD * max(base), seconds, workers, CONNECTIONS,
                                 Path(tmp) / f"sat-{i}")  # fmt: skip
                ours.append(answered_rate(result, seconds))
            capacity = max(base)
            rate = min(1000.0, capacity / 4)
            long = min(120.0, max(seconds, 1 / (NOISE**2 * rate)))
            calm = traffic(url, rate, long, workers, None, Path(tmp) / "calm")
    finally:
        stop_group(proc, 5)
    sent, scheduled = sent_first(calm, long)
    achieved = sent / long
    ratio = max(ours) / capacity
    vs_target = achieved / rate - 1
    vs_schedule = sent / scheduled - 1 if scheduled else math.nan
    ok_sat = ratio >= SATURATION_TARGET
    ok_acc = abs(vs_target) <= ACCURACY_TARGET and abs(vs_schedule) <= ACCURACY_TARGET
    mode = f"{workers} Locust workers" if workers else "Locust LocalRunner (one process)"
    print(f"system: trivial FastAPI POST /v1/payments (one uvicorn process); {os.cpu_count()} CPUs")
    print(f"generator: run_traffic, {mode}")
    if split is not None:
        print(f"CPUs: server on {sorted(split[0])}, wrk and the generator on {sorted(split[1])}")
    print(f"saturation ({seconds:g} s runs, {CONNECTIONS} connections / users, best of "
          f"{args.rounds}, alternating):")  # fmt: skip
    print(f"  wrk -t1 -c{CONNECTIONS}     {capacity:9.0f} req/s   (runs: "
          f"{', '.join(f'{b:.0f}' for b in base)})")  # fmt: skip
    print(f"  run_traffic        {max(ours):9.0f} req/s   (runs: "
          f"{', '.join(f'{o:.0f}' for o in ours)}; offered {OVERLOAD:g}x wrk's best)")  # fmt: skip
    print(f"  ratio              {ratio:9.2f}   target >= {SATURATION_TARGET}   {verdict(ok_sat)}")
    print(f"accuracy ({rate:.0f}/s for {long:.0f} s, default users {calm.users}):")
    print(f"  achieved {achieved:.1f}/s: {vs_target:+.2%} vs the target rate, {vs_schedule:+.2%} "
          f"vs the {scheduled} arrivals drawn   target within 2%   {verdict(ok_acc)}")  # fmt: skip
    drawn = scheduled / (rate * long) - 1
    print(f"  (the drawn schedule is {drawn:+.2%} off the rate: Poisson noise, sigma "
          f"{1 / math.sqrt(rate * long):.2%})")  # fmt: skip
    print(f"  send lag p99 {calm.send_lag.p99 * 1000:.2f} ms, missed sends {calm.missed_sends}, "
          f"generator bound: {calm.generator_bound} {calm.generator_reason}")  # fmt: skip
    return 0 if ok_sat and ok_acc else 1


if __name__ == "__main__":
    sys.exit(main())
