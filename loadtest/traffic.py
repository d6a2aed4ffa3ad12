"""Run a scenario's client traffic against a system over HTTP: the entry point of the traffic half.

    from loadtest.traffic import run_traffic

    result = run_traffic(scenario, "http://127.0.0.1:8080", {"tenant-1": "key-1"},
                         t0=time.time(), seed=7, out_dir=Path("runs/x"), locust_workers=2)
    result.requests        # the run record's requests table (times in seconds since t0)
    result.latency.p99     # from each attempt's intended send time, merged HDR histogram
    result.generator_bound, result.generator_reason

`run_traffic(scenario, base_url, api_keys, *, t0, seed, out_dir, duration=None,
locust_workers=0, remote_workers=0, master_address=("*", 5557), users=None, setup=True,
on_start=None, operator_key=None) -> TrafficResult`

1. `setup`: opens and funds every tenant's accounts through the API (setup_accounts.py) and
   returns those requests apart (`result.setup`); with `operator_key`, a funding payment the
   compliance checks held is approved through the review endpoint.
2. Starts the Locust process (`python -m loadtest.generator`; this module never imports Locust,
   which monkey-patches the interpreter it is imported into) in a session of its own, with
   `locust_workers` local worker processes (0: Locust's LocalRunner) and, listening on
   `master_address`, room for `remote_workers` more started by hand on other machines
   (`python -m loadtest.generator worker --master-host HOST --master-port 5557`, docs/load.md);
   the run waits for all of them. Arrivals follow the scenario's workload for `duration`
   seconds (default `scenario.duration`) from the traffic start, which the generator chooses
   once its users are up; `on_start(started_at)` is called with it (seconds since t0) as soon
   as it is chosen, half a second ahead, so faults can be timed against it.
3. Waits, then returns the rows, the merged histograms, per-second rates, the generator's CPU
   samples and its verdict on itself. On any error, Ctrl-C included, the generator's process
   group is stopped before the exception propagates; the children also die with this process
   if it is killed (lifeline.py). Runtime failures raise `TrafficError` (`SetupError` for the
   set-up); bad arguments raise `ValueError` naming the argument and the rule.

`users` caps the attempts in flight (Locust users in all); by default enough to keep sending on
time through a full stall of the system up to the client timeout, at most 1,000 per process.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import secrets
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import pandas as pd

from loadtest.attempts import finish_time_bound
from loadtest.bottleneck import SAMPLE_COLUMNS, generator_verdict, per_second_rates
from loadtest.errors import TrafficError
from loadtest.histogram import HistogramSummary, merge
from loadtest.lifeline import stop_group
from loadtest.plan import TrafficPlan
from loadtest.setup_accounts import SetupResult, setup_accounts
from scenarios.schema import Scenario
from scenarios.workload import peak_rate, tenant_ids

MAX_USERS_PER_PROCESS = 1000
LATE_AFTER = 0.010
"""A send that starts more than 10 ms after its intended time counts as missed."""
REMOTE_MASTER = ("*", 5557)
"""Where the master listens for remote workers by default: every interface, Locust's port."""
STARTUP_TIMEOUT = 120.0
"""Locust's import, worker connections and user spawning must fit in this..."""
REMOTE_STARTUP_TIMEOUT = 360.0
"""... or this, when someone has to start workers on other machines."""
STOP_GRACE = 5.0


@dataclass(frozen=True)
class LocustStats:
    """Locust's own statistics of the same attempts (seconds; NaN without requests). They are
    measured from the actual send, a closed loop's view: compare with `TrafficResult.latency`."""

    requests: int
    failures: int
    p50: float
    p99: float
    max: float


@dataclass(frozen=True)
class TrafficResult:
    requests: pd.DataFrame
    """One row per attempt: the run record's requests table (docs/run-record.md)."""
    labels: pd.DataFrame
    """The injected fraud's requests: the run record's labels table (no rows without fraud)."""
    setup: SetupResult | None
    """The set-up's own requests, accounts and funding payments (None without set-up)."""
    latency: HistogramSummary
    """Intended send -> answer, every attempt (unanswered ones at the moment the client gave up)."""
    service: HistogramSummary
    """Actual send -> answer, sent attempts: the closed-loop view, for comparison."""
    send_lag: HistogramSummary
    """Intended -> actual send."""
    rates: pd.DataFrame
    """Per second of traffic: second, target, scheduled, achieved, sent, answered."""
    samples: pd.DataFrame
    """Per generator process and second: process, at (since t0), cpu (share of one core),
    busy_users, backlog (attempts due but waiting for a user)."""
    started_at: float
    """The traffic start (schedule time 0) in seconds since t0."""
    processes: int
    users: int
    missed_sends: int
    """Attempts that started more than `late_after` late, or never."""
    late_after: float
    unsent: int
    locust: LocustStats
    generator_bound: bool
    generator_reason: str
    """Why the generator, not the system, limited the run ("" when it did not)."""


def _check_inputs(
    scenario: Scenario, base_url: str, api_keys: Mapping[str, str], duration: float,
    locust_workers: int, remote_workers: int, users: int | None,
) -> None:  # fmt: skip
    url = urlsplit(base_url)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError(f"base_url: must be an http:// or https:// URL, got {base_url!r}")
    for tenant in tenant_ids(scenario.workload.tenants):
        key = api_keys.get(tenant)
        if not key:
            raise ValueError(f"api_keys: no key for tenant {tenant!r}")
        if not all("!" <= c <= "~" for c in key):  # it goes into a header line verbatim
            raise ValueError(f"api_keys: the key of {tenant!r} must be printable ASCII, no spaces")
    if not duration > 0:
        raise ValueError(f"duration: must be > 0 seconds, got {duration!r}")
    if locust_workers < 0 or remote_workers < 0:
        raise ValueError("locust_workers, remote_workers: must be >= 0")
    if users is not None and users < max(1, locust_workers + remote_workers):
        raise ValueError("users: must be at least 1 per generator process")


def default_users(scenario: Scenario, duration: float, processes: int) -> int:
    """Per process: enough users to send on time while the system holds every attempt for the
    whole client timeout (Little's law: peak rate x timeout), within MAX_USERS_PER_PROCESS."""
    workload = scenario.workload
    per_process = peak_rate(workload, duration) / processes * workload.client.timeout
    return processes * max(1, min(MAX_USERS_PER_PROCESS, math.ceil(per_process)))


def run_traffic(
    scenario: Scenario,
    base_url: str,
    api_keys: Mapping[str, str],
    *,
    t0: float,
    seed: int,
    out_dir: Path,
    duration: float | None = None,
    locust_workers: int = 0,
    remote_workers: int = 0,
    master_address: tuple[str, int] = REMOTE_MASTER,
    users: int | None = None,
    setup: bool = True,
    on_start: Callable[[float], None] | None = None,
    operator_key: str | None = None,
) -> TrafficResult:
    """Open the accounts (if `setup`), run the traffic, return what it measured (see above)."""
    duration = scenario.duration if duration is None else duration
    _check_inputs(scenario, base_url, api_keys, duration, locust_workers, remote_workers, users)
    workload = scenario.workload
    workers = locust_workers + remote_workers
    processes = max(1, workers)
    plan = TrafficPlan(
        workload=TrafficPlan.workload_fields(workload),
        base_url=base_url.rstrip("/"),
        api_keys={t: api_keys[t] for t in tenant_ids(workload.tenants)},
        seed=seed,
        t0=t0,
        duration=duration,
        grace=finish_time_bound(workload.client) + 1.0,
        users=users or default_users(scenario, duration, processes),
        workers=workers,
        local_workers=locust_workers,
        # Local workers only: a free port of the loopback interface.
        master_bind=master_address[0] if remote_workers else "127.0.0.1",
        master_port=master_address[1] if remote_workers else 0,
        key_prefix=f"r{secrets.token_hex(4)}-",
        late_after=LATE_AFTER,
    )
    done_setup = (
        setup_accounts(workload, base_url, api_keys, t0, operator_key=operator_key)
        if setup
        else None
    )
    out = out_dir / "traffic"
    out.mkdir(parents=True, exist_ok=True)
    start_at = _run_generator(plan, out, on_start)
    return _result(plan, out, start_at, done_setup)


class _Generator:
    """The Locust process: its output goes to generator.log; `start_at` lines are picked up.
    The plan goes in on stdin, so the API keys are written to no file."""

    def __init__(self, out: Path) -> None:
        argv = [sys.executable, "-m", "loadtest.generator", "run", "--out", str(out),
                "--parent-pid", str(os.getpid())]  # fmt: skip
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches only us; we stop the group
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.events: queue.Queue[float] = queue.Queue()
        self.tail: deque[str] = deque(maxlen=20)
        self.log = (out / "generator.log").open("w")
        assert self.proc.stdout is not None
        self.reader = threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True)
        self.reader.start()

    def send(self, plan: TrafficPlan) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError), self.proc.stdin as stdin:
            stdin.write(plan.to_json().encode())  # a process that died says why on its own

    def _read(self, stream: IO[bytes]) -> None:
        for raw in stream:
            line = raw.decode(errors="replace").rstrip("\n")
            self.log.write(line + "\n")
            self.log.flush()
            self.tail.append(line)
            if line.startswith("start_at "):
                self.events.put(float(line.split()[1]))

    def failure(self, what: str) -> TrafficError:
        self.reader.join(5)
        errors = [line for line in self.tail if line.startswith("error: ")]
        detail = errors[-1].removeprefix("error: ") if errors else (self.tail or ["no output"])[-1]
        return TrafficError(f"traffic generator {what}: {detail} (log: {self.log.name})")


def _run_generator(plan: TrafficPlan, out: Path, on_start: Callable[[float], None] | None) -> float:
    gen = _Generator(out)
    timeout = plan.scenario_workload.client.timeout
    remote = plan.workers > plan.local_workers
    deadline = time.monotonic() + (REMOTE_STARTUP_TIMEOUT if remote else STARTUP_TIMEOUT)
    start_at = math.nan
    try:
        gen.send(plan)
        while gen.proc.poll() is None:
            if time.monotonic() > deadline:
                raise gen.failure("did not finish in time")
            try:
                start_at = gen.events.get(timeout=0.1)
            except queue.Empty:
                continue
            deadline = time.monotonic() + plan.duration + plan.grace + timeout + STARTUP_TIMEOUT
            if on_start is not None:
                on_start(start_at - plan.t0)
        if gen.proc.returncode != 0:
            raise gen.failure(f"exited {gen.proc.returncode}")
        gen.reader.join(5)
    finally:
        stop_group(gen.proc, STOP_GRACE)
        gen.log.close()
    if math.isnan(start_at):
        raise gen.failure("never started the traffic")
    return start_at


def _result(
    plan: TrafficPlan, out: Path, start_at: float, setup: SetupResult | None
) -> TrafficResult:
    requests = pd.read_parquet(out / "rows.parquet")
    labels = pd.read_parquet(out / "labels.parquet")
    encoded: dict[str, str] = json.loads((out / "histograms.json").read_text())
    summary: dict[str, Any] = json.loads((out / "generator.json").read_text())
    latency, service, send_lag = (
        HistogramSummary.of(merge([encoded[n]])) for n in ("latency", "service", "send_lag")
    )
    processes = summary["processes"]
    samples = pd.DataFrame(
        [[p["process"], *s] for p in processes for s in p["samples"]], columns=SAMPLE_COLUMNS
    ).astype({"at": "float64", "cpu": "float64", "busy_users": "int64", "backlog": "int64"})
    started_at = start_at - plan.t0
    workload = plan.scenario_workload
    bound, reason = generator_verdict(
        processes, samples, started_at, plan.duration, plan.late_after, service.p50
    )
    counters = [p["counters"] for p in processes]
    unsent = sum(c["unsent"] for c in counters)
    ls = summary["locust"]
    nan = math.nan
    return TrafficResult(
        requests=requests,
        labels=labels,
        setup=setup,
        latency=latency,
        service=service,
        send_lag=send_lag,
        rates=per_second_rates(requests, workload, plan.duration, started_at),
        samples=samples,
        started_at=started_at,
        processes=plan.processes,
        users=sum(c["users"] for c in counters),
        missed_sends=sum(c["late_idle"] + c["late_waited"] for c in counters) + unsent,
        late_after=plan.late_after,
        unsent=unsent,
        locust=LocustStats(
            ls["requests"],
            ls["failures"],
            *(nan if ls[k] is None else ls[k] for k in ("p50", "p99", "max")),
        ),
        generator_bound=bound,
        generator_reason=reason,
    )
