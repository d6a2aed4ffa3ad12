"""The Locust process: runs one traffic plan through Locust's runners and writes what it saw.

    python -m loadtest.generator run --out DIR [--parent-pid PID] < PLAN.json
    python -m loadtest.generator worker --master-host HOST --master-port PORT [--parent-pid PID]

`run` drives a `locust.env.Environment`: without workers (`plan.workers == 0`) a LocalRunner
runs the users here; otherwise a MasterRunner starts `plan.local_workers` worker processes on
this machine, waits for `plan.workers` workers in all (the rest started by hand on other
machines with `worker`), and coordinates them with Locust's custom messages:

    worker -> master   traffic_hello                  connected, its listeners registered
    master -> worker   traffic_plan {plan, process}   its share: process i of plan.workers
    worker -> master   traffic_ready                  its pacer is set up
    master -> worker   traffic_go {start_at}          once every user is spawned
    worker -> master   traffic_result {...}           its rows and labels (Arrow IPC), encoded HDR
                                                      histograms, samples, counters and its last
                                                      Locust statistics

A LocalRunner delivers the same `traffic_result` message in-process, so both modes share the
code. Once every result is in, `run` writes DIR/rows.parquet (the requests table),
DIR/labels.parquet (the injected fraud's keys, the run record's labels table),
DIR/histograms.json (the merged histograms, encoded) and DIR/generator.json, and prints
`start_at T` (the wall-clock traffic start) on stdout as soon as it is chosen.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
import pyarrow as pa
import pyarrow.parquet as pq
from gevent.event import Event
from locust.env import Environment
from locust.log import setup_logging
from locust.runners import MasterRunner, Runner, WorkerRunner

from loadtest.histogram import encode, merge
from loadtest.lifeline import die_with_parent
from loadtest.plan import TrafficPlan
from loadtest.recorder import HISTOGRAMS
from loadtest.users import Pacer, TrafficUser

log = logging.getLogger("loadtest.generator")
START_LEAD = 0.5
"""Seconds between choosing the start time and the first arrival: every process hears it."""
READY_TIMEOUT = 60.0
REMOTE_READY_TIMEOUT = 300.0
"""Workers started by hand on other machines get longer to connect."""
LOOPBACK_BINDS = frozenset({"*", "0.0.0.0", "127.0.0.1", "localhost"})
RESULT_MARGIN = 60.0
"""How long past the last possible answer to wait for a worker's result before giving up."""


class GeneratorError(Exception):
    """The traffic could not be run; the message says why, on one line."""


def _environment(host: str | None = None) -> Environment:
    return Environment(user_classes=[TrafficUser], host=host)


def result_payload(name: str, pacer: Pacer, runner: Runner) -> dict[str, Any]:
    """One generator process's result, as a message body."""
    rec = pacer.recorder.close(pacer.offset, pacer.closed_at)
    payload: dict[str, Any] = {
        "process": name,
        "rows": _ipc(rec.table),
        "labels": _ipc(rec.labels),
        "histograms": {n: encode(rec.histograms[n]) for n in HISTOGRAMS},
        "samples": [list(s) for s in pacer.samples],
        "counters": {
            "users": pacer.started_users,
            "sent": rec.sent,
            "unsent": rec.unsent,
            "late_idle": rec.late_idle,
            "late_waited": rec.late_waited,
        },
        "locust": None,
    }
    if isinstance(runner, WorkerRunner):
        # The worker's last Locust statistics, built the way its periodic report is, so the
        # master's totals include every request without waiting for the next report.
        report: dict[str, Any] = {}
        fire = runner.environment.events.report_to_master.fire
        fire(client_id=runner.client_id, data=report)  # type: ignore[no-untyped-call]
        payload["locust"] = report
    return payload


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    data: bytes = sink.getvalue().to_pybytes()
    return data


class Results:
    """The master's (or the local runner's) collection of generator results."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.by_process: dict[str, dict[str, Any]] = {}
        self.complete = Event()

    def on_result(self, environment: Environment, msg: Any, **_kw: Any) -> None:
        data: dict[str, Any] = msg.data
        self.by_process[data["process"]] = data
        if data["locust"] is not None:
            fire = environment.events.worker_report.fire
            fire(client_id=msg.node_id, data=data["locust"])  # type: ignore[no-untyped-call]
        if len(self.by_process) >= self.expected:
            self.complete.set()


def write_outputs(out: Path, results: Results, start_at: float, env: Environment) -> None:
    found = [results.by_process[k] for k in sorted(results.by_process)]
    tables = [pa.ipc.open_stream(r["rows"]).read_all() for r in found]
    rows = pa.concat_tables(tables).sort_by(
        [("sent_at", "ascending"), ("key", "ascending"), ("attempt", "ascending")]
    )
    pq.write_table(rows, out / "rows.parquet")
    labels = pa.concat_tables([pa.ipc.open_stream(r["labels"]).read_all() for r in found])
    pq.write_table(labels.sort_by([("key", "ascending")]), out / "labels.parquet")
    merged = {n: encode(merge(r["histograms"][n] for r in found)) for n in HISTOGRAMS}
    (out / "histograms.json").write_text(json.dumps(merged, indent=1))
    total = env.stats.total
    locust_stats = {
        "requests": total.num_requests,
        "failures": total.num_failures,
        "p50": total.get_response_time_percentile(0.5) / 1000 if total.num_requests else None,
        "p99": total.get_response_time_percentile(0.99) / 1000 if total.num_requests else None,
        "max": total.max_response_time / 1000 if total.num_requests else None,
    }
    processes = [
        {"process": r["process"], "counters": r["counters"], "samples": r["samples"]} for r in found
    ]
    summary = {"start_at": start_at, "processes": processes, "locust": locust_stats}
    (out / "generator.json").write_text(json.dumps(summary, indent=1))


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise GeneratorError(f"{what} within {timeout:g} s")
        gevent.sleep(0.05)


def _announce_start() -> float:
    start_at = time.time() + START_LEAD
    print(f"start_at {start_at!r}", flush=True)
    return start_at


def _result_deadline(plan: TrafficPlan, start_at: float) -> float:
    timeout = plan.scenario_workload.client.timeout
    return start_at - time.time() + plan.duration + plan.grace + timeout + RESULT_MARGIN


def run_local(plan: TrafficPlan, out: Path) -> None:
    env = _environment(plan.base_url)
    runner = env.create_local_runner()
    results = Results(expected=1)
    runner.register_message("traffic_result", results.on_result)
    pacer = Pacer(plan, process=0)
    TrafficUser.pacer = pacer
    runner.start(plan.users, spawn_rate=plan.users)
    _wait(lambda: runner.user_count == plan.users, READY_TIMEOUT, "the users did not start")
    start_at = _announce_start()
    pacer.go(start_at)
    pacer.done.wait(_result_deadline(plan, start_at))
    if not pacer.done.is_set():
        raise GeneratorError("the generator did not finish its schedule in time")
    runner.send_message("traffic_result", result_payload("local", pacer, runner))
    write_outputs(out, results, start_at, env)
    runner.quit()


def _start_local_worker(host: str, port: int, out: Path, index: int) -> subprocess.Popen[bytes]:
    logfile = (out / f"worker-{index}.log").open("wb")
    argv = [sys.executable, "-m", "loadtest.generator", "worker", "--master-host", host,
            "--master-port", str(port), "--parent-pid", str(os.getpid())]  # fmt: skip
    try:
        return subprocess.Popen(argv, stdout=logfile, stderr=subprocess.STDOUT)
    finally:
        logfile.close()


def run_master(plan: TrafficPlan, out: Path) -> None:
    env = _environment(plan.base_url)
    runner: MasterRunner = env.create_master_runner(plan.master_bind, plan.master_port)
    port: int = runner.server.port
    print(f"master_port {port}", flush=True)
    results = Results(expected=plan.workers)
    assigned: dict[str, int] = {}
    ready: set[str] = set()

    def on_hello(environment: Environment, msg: Any, **_kw: Any) -> None:
        if msg.node_id in assigned:
            return
        if len(assigned) >= plan.workers:
            log.warning("worker %s is one more than the %d expected: ignored", msg.node_id,
                        plan.workers)  # fmt: skip
            return
        assigned[msg.node_id] = process = len(assigned)
        runner.send_message(
            "traffic_plan", {"plan": plan.to_dict(), "process": process}, msg.node_id
        )

    def on_ready(environment: Environment, msg: Any, **_kw: Any) -> None:
        ready.add(msg.node_id)

    runner.register_message("traffic_hello", on_hello)
    runner.register_message("traffic_ready", on_ready)
    runner.register_message("traffic_result", results.on_result)
    host = "127.0.0.1" if plan.master_bind in LOOPBACK_BINDS else plan.master_bind
    workers = [_start_local_worker(host, port, out, i) for i in range(plan.local_workers)]
    try:

        def all_ready() -> bool:
            dead = [w.pid for w in workers if w.poll() is not None]
            if dead:
                raise GeneratorError(f"worker process {dead[0]} exited (see its log in {out})")
            return len(ready) >= plan.workers

        remote = plan.workers > plan.local_workers
        ready_timeout = REMOTE_READY_TIMEOUT if remote else READY_TIMEOUT
        _wait(all_ready, ready_timeout, f"not all {plan.workers} workers connected")
        runner.start(plan.users, spawn_rate=plan.users)
        _wait(lambda: runner.user_count == plan.users, READY_TIMEOUT, "the users did not start")
        start_at = _announce_start()
        runner.send_message("traffic_go", {"start_at": start_at})
        results.complete.wait(_result_deadline(plan, start_at))
        if not results.complete.is_set():
            missing = sorted(set(range(plan.workers)) - {
                int(p.removeprefix("worker-")) for p in results.by_process
            })  # fmt: skip
            raise GeneratorError(f"no result from worker(s) {missing} in time")
        write_outputs(out, results, start_at, env)
        runner.quit()
        for w in workers:
            w.wait(30)
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()


def run_worker(master_host: str, master_port: int) -> None:
    env = _environment()
    runner: WorkerRunner = env.create_worker_runner(master_host, master_port)
    state: dict[str, Pacer] = {}

    def on_plan(environment: Environment, msg: Any, **_kw: Any) -> None:
        plan = TrafficPlan.from_dict(msg.data["plan"])
        process: int = msg.data["process"]
        pacer = state["pacer"] = Pacer(plan, process)
        TrafficUser.pacer = pacer

        def report() -> None:
            pacer.done.wait()
            payload = result_payload(f"worker-{process}", pacer, runner)
            runner.send_message("traffic_result", payload)

        gevent.spawn(report)
        runner.send_message("traffic_ready", {"process": process})

    def on_go(environment: Environment, msg: Any, **_kw: Any) -> None:
        state["pacer"].go(msg.data["start_at"])

    runner.register_message("traffic_plan", on_plan)
    runner.register_message("traffic_go", on_go)
    # Only now: a plan sent before the listeners were registered would be dropped.
    runner.send_message("traffic_hello")
    runner.greenlet.join()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.generator")
    roles = parser.add_subparsers(dest="role", required=True)
    run = roles.add_parser("run", help="run a traffic plan (local runner or master)")
    run.add_argument("--out", type=Path, required=True)
    worker = roles.add_parser("worker", help="join a master as one more generator process")
    worker.add_argument("--master-host", required=True)
    worker.add_argument("--master-port", type=int, required=True)
    for p in (run, worker):
        p.add_argument("--parent-pid", type=int, default=0, help="die with this process")
    args = parser.parse_args(argv)
    if args.parent_pid:
        die_with_parent(args.parent_pid)
    setup_logging("INFO")  # type: ignore[no-untyped-call]
    try:
        if args.role == "worker":
            run_worker(args.master_host, args.master_port)
            return 0
        plan = TrafficPlan.from_json(sys.stdin.read())
        if plan.workers == 0:
            run_local(plan, args.out)
        else:
            run_master(plan, args.out)
    except GeneratorError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
