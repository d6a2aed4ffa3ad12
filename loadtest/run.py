"""One load run: the scenario's traffic and faults against real processes, then the run record.

Against the reference system (the default): start its processes from the topology
(loadtest/system.py), open and fund the accounts and send the traffic through the HTTP API
(loadtest/traffic.py), apply the scenario's faults to the processes on the wall clock
(loadtest/faults.py), sample the processes and the consumer groups (loadtest/samples.py), drain
until every accepted payment is terminal (or held for review) or the scenario's drain runs out,
then read the record's tables from the store (loadtest/export.py) and stop everything, whatever
happened.

Against someone else's system (`target`): the same traffic through its API, no process faults
(every fault is listed as not applied), the drain watched and the tables read through its API.

The process's main thread starts and restarts the system's processes (see system.py) while the
traffic runs on a thread of its own; Ctrl-C stops the traffic and the system before it
propagates.
"""

from __future__ import annotations

import contextlib
import os
import platform
import random
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pandas as pd

from loadtest import export
from loadtest.bottleneck import mean_rates
from loadtest.faults import FaultRow, Links, LoadFaults, Window, links_needed, plan
from loadtest.proxy import LinkProxy
from loadtest.samples import Sampler, Samples
from loadtest.system import ReferenceSystem, run_store_url
from loadtest.topology import not_modelled
from loadtest.traffic import TrafficResult, run_traffic
from reference_impl.adapters import open_store, redact_url
from reference_impl.adapters.record_tables import frame
from reference_impl.core.payments import AT_REST, Payment
from reference_impl.service.payments import PAYMENT
from reference_impl.service.settlement import SettlementConfig
from reference_impl.timings import TIMINGS_FILE, collect
from reports.capacity import cpu_seconds
from scenarios.schema import Scenario
from scenarios.workload import account_ids, tenant_ids

DRAIN_POLL_S = 0.5
Progress = Callable[[str, float, float], None]
"""(phase, done, total) as the run advances."""


@dataclass(frozen=True)
class LoadRun:
    tables: dict[str, pd.DataFrame]
    meta: dict[str, Any]
    traffic: TrafficResult


def run_load(
    scenario: Scenario,
    name: str,
    seed: int,
    run_dir: Path,
    *,
    store: str | None = None,
    target: str | None = None,
    target_keys: Mapping[str, str] | None = None,
    locust_workers: int = 0,
    port: int | None = None,
    progress: Progress | None = None,
) -> LoadRun:
    """Run the scenario against real processes (or `target`); the record's tables and meta."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if target is not None:
        return _against_target(scenario, name, seed, run_dir, target, target_keys or {},
                               locust_workers, progress)  # fmt: skip
    url = run_store_url(store, run_dir)
    open_store(url).close()  # a bad URL or an unreachable database, before any process starts
    t0 = time.time()
    windows = plan(scenario, seed)
    proxy_clients, proxy_database = links_needed(windows, url.startswith("postgres"))
    with contextlib.ExitStack() as stack:
        # Each service process gets a link of its own to the database (a proxy on a port of its
        # own), so that a partition can cut one process from the ledger and leave the others.
        database: dict[str, LinkProxy] = {}
        if proxy_database:
            for process in ReferenceSystem.store_users(scenario):
                database[process] = stack.enter_context(
                    LinkProxy(f"{process}<->ledger", _host_port(url),
                              random.Random(f"{seed}/database/{process}"))
                )  # fmt: skip
        own = {name: _via(url, link.port) for name, link in database.items()}
        system = ReferenceSystem(scenario, run_dir, url, tuple(scenario.bugs), port=port or 0,
                                 store_urls=own)  # fmt: skip
        stack.enter_context(system)
        clients = None
        if proxy_clients:
            clients = stack.enter_context(
                LinkProxy("clients", (system.host, system.port), random.Random(f"{seed}/clients"))
            )
        links = Links(clients, database)
        faults = LoadFaults(system, windows, t0, random.Random(f"{seed}/targets"), links, url)
        sampler = Sampler(system.pids, url, scenario.topology.event_log.partitions, t0)
        sampler.start()
        try:
            traffic = _traffic(
                scenario, system.url if clients is None else f"http://127.0.0.1:{clients.port}",
                system.api_keys, t0, seed, run_dir, locust_workers,
                faults.start, system.supervise, progress, system.operator_key,
            )  # fmt: skip
            faults.stop()
            drained = _drain(scenario, lambda: _open_in_store(url, system.api_keys), t0,
                             system.supervise, progress)  # fmt: skip
        finally:
            faults.stop()
            samples = sampler.stop()
        partners = SettlementConfig().partners
        partitions = scenario.topology.event_log.partitions
        tables = export.from_store(url, list(system.api_keys), partners, partitions)
        restarts = {n: p.restarts for n, p in system.processes.items() if p.restarts}
    _keep_timings(system.timings_dir, run_dir / TIMINGS_FILE)
    meta = _meta(scenario, name, seed, t0, traffic, faults.rows, drained)
    meta["store"] = redact_url(url)
    meta["restarts"] = restarts
    meta["consumer_poll"] = system.consumer_poll
    meta["not_modelled"] = not_modelled(scenario)
    return LoadRun(_complete(tables, traffic, faults.rows, samples, t0), meta, traffic)


def _against_target(
    scenario: Scenario,
    name: str,
    seed: int,
    run_dir: Path,
    target: str,
    keys: Mapping[str, str],
    locust_workers: int,
    progress: Progress | None,
) -> LoadRun:
    t0 = time.time()
    windows = plan(scenario, seed)
    traffic = _traffic(scenario, target, dict(keys), t0, seed, run_dir, locust_workers,
                       None, lambda: None, progress)  # fmt: skip
    rows = [
        FaultRow(traffic.started_at + w.at, traffic.started_at + w.at + w.fault.duration,
                 w.fault.kind, "", "not applied: the target is someone else's system")
        for w in windows
    ]  # fmt: skip
    accounts = _accounts(scenario)
    drained = _drain(scenario, lambda: _open_through_api(target, keys, traffic), t0,
                     lambda: None, progress)  # fmt: skip
    tables = export.from_api(target, dict(keys), accounts)
    meta = _meta(scenario, name, seed, t0, traffic, rows, drained)
    meta["target"] = target
    meta["statements_visible"] = False  # a target's bank statements are not in its API
    meta["not_modelled"] = [
        {"setting": "topology", "value": "-", "reason": "the target runs its own topology"}
    ]
    return LoadRun(_complete(tables, traffic, rows, Samples(), t0), meta, traffic)


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 5432


def _via(url: str, port: int) -> str:
    """`url` with its host and port replaced by the proxy's."""
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    if parts.password:
        user = f"{parts.username}:{parts.password}@"
    return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{port}"))


def _accounts(scenario: Scenario) -> list[str]:
    return ["funding", *account_ids(scenario.workload.accounts)]


def _traffic(
    scenario: Scenario,
    url: str,
    keys: dict[str, str],
    t0: float,
    seed: int,
    run_dir: Path,
    locust_workers: int,
    on_start: Callable[[float], None] | None,
    supervise: Callable[[], None],
    progress: Progress | None,
    operator_key: str | None = None,
) -> TrafficResult:
    """Run the traffic on a thread; this thread supervises the processes until it is done."""
    result: dict[str, Any] = {}

    def send() -> None:
        try:
            result["traffic"] = run_traffic(
                scenario, url, keys, t0=t0, seed=seed, out_dir=run_dir,
                locust_workers=locust_workers, on_start=on_start, operator_key=operator_key,
            )  # fmt: skip
        except BaseException as e:
            result["error"] = e

    thread = threading.Thread(target=send, name="traffic", daemon=True)
    thread.start()
    start = time.monotonic()
    while thread.is_alive():
        thread.join(0.2)
        supervise()
        if progress is not None:
            progress("traffic", min(time.monotonic() - start, scenario.duration), scenario.duration)
    if "error" in result:
        raise result["error"]
    traffic: TrafficResult = result["traffic"]
    return traffic


def _open_in_store(url: str, keys: Mapping[str, str]) -> int:
    store = open_store(url)
    try:
        with store.unit_of_work() as uow:
            return sum(
                1
                for tenant in keys
                for _, text in uow.list_records(PAYMENT, tenant, "", 1_000_000)
                if Payment.from_json(text).status not in AT_REST
            )
    finally:
        store.close()


def _open_through_api(target: str, keys: Mapping[str, str], traffic: TrafficResult) -> int:
    open_ = 0
    for key in keys.values():
        with httpx.Client(base_url=target, headers={"Authorization": f"Bearer {key}"}) as http:
            after = ""
            while page := http.get("/v1/payments", params={"after": after, "limit": 1000}).json()[
                "payments"
            ]:
                open_ += sum(1 for p in page if p["status"] not in _AT_REST)
                after = page[-1]["id"]
    return open_


_AT_REST = {s.value for s in AT_REST}


def _drain(
    scenario: Scenario,
    open_payments: Callable[[], int],
    t0: float,
    supervise: Callable[[], None],
    progress: Progress | None,
) -> bool:
    """Wait until no accepted payment is open, or the scenario's drain runs out."""
    deadline = time.monotonic() + scenario.drain
    while True:
        supervise()
        try:
            left = open_payments()
        except Exception:  # the store is recovering: look again
            left = -1
        if left == 0:
            return True
        if time.monotonic() >= deadline:
            return False
        if progress is not None:
            progress("drain", scenario.drain - (deadline - time.monotonic()), scenario.drain)
        time.sleep(DRAIN_POLL_S)


def _keep_timings(directory: Path, path: Path) -> None:
    """The processes' stage timings, stopped and flushed, as one Parquet file for calibration."""
    collect(directory).to_parquet(path, index=False)
    shutil.rmtree(directory, ignore_errors=True)


def _complete(
    tables: dict[str, pd.DataFrame],
    traffic: TrafficResult,
    rows: list[FaultRow],
    samples: Samples,
    t0: float,
) -> dict[str, pd.DataFrame]:
    """The store's tables plus what the run saw itself, all on the wall clock (epoch seconds):
    the traffic's rows (the set-up's first) and the samples are kept as seconds since t0."""
    requests = [traffic.requests]
    if traffic.setup is not None:
        requests.insert(0, traffic.setup.rows)
    sent = pd.concat(requests, ignore_index=True)
    for column in ("intended_at", "sent_at", "done_at"):
        sent[column] = sent[column] + t0
    tables["requests"] = sent
    tables["labels"] = traffic.labels
    tables["faults"] = frame(
        [_row(r, t0) for r in rows],
        ["start", "end", "kind", "target", "detail"],
        ["start", "target"],
    )
    tables["nodes"] = frame(
        [{**n, "at": float(n["at"]) + t0} for n in samples.nodes],  # type: ignore[arg-type]
        ["at", "node", "utilization", "cpu", "queue_length", "busy_workers", "lag", "headroom"],
        ["at", "node"],
    )
    tables["partitions"] = frame(
        samples.partitions,
        ["at", "group", "partition", "member", "lag"],
        ["at", "group", "partition"],
    )
    return tables


def _row(r: FaultRow, t0: float) -> dict[str, Any]:
    return {
        "start": r.start + t0, "end": r.end + t0, "kind": r.kind, "target": r.target,
        "detail": r.detail,
    }  # fmt: skip


def _meta(
    scenario: Scenario,
    name: str,
    seed: int,
    t0: float,
    traffic: TrafficResult,
    rows: list[FaultRow],
    drained: bool,
) -> dict[str, Any]:
    achieved, target = mean_rates(traffic.rates, scenario.duration)
    return {
        **({"checks": scenario.checks.meta()} if scenario.checks.on else {}),
        "mode": "load",
        "seed": seed,
        "scenario": name,
        "duration": scenario.duration,
        "t0": t0,
        "started_at": t0 + traffic.started_at,
        "host": platform.node(),
        "python": platform.python_version(),
        "drained": drained,
        "cpus": os.cpu_count(),
        "generator": {
            "cpu_seconds": cpu_seconds(traffic.samples, by="process"),
            "bound": traffic.generator_bound,
            "reason": traffic.generator_reason,
            "missed_sends": traffic.missed_sends,
            "unsent": traffic.unsent,
            "processes": traffic.processes,
            "achieved_rate": round(achieved, 3),
            "target_rate": round(target, 3),
        },
        "faults_not_applied": [
            {"kind": r.kind, "target": r.target, "reason": r.detail.removeprefix("not applied: ")}
            for r in sorted(rows, key=lambda r: (r.start, r.kind))
            if not r.applied
        ],
        "tenants": tenant_ids(scenario.workload.tenants),
    }


__all__ = ["LoadRun", "Window", "run_load"]
