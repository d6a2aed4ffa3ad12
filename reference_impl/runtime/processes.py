"""The entry points of a multi-process deployment, and the supervisor that runs them.

`testbed serve --workers N` starts N uvicorn gateway processes (uvicorn's own multiprocess
manager, app built by `gateway_app` from the config in the environment) plus worker processes:
N payments workers, members of the "payments" consumer group that share its partitions by claims
in the store (service/groups.py), one settlement worker and one projector (reporting). Every
child gets the same `RuntimeConfig` as JSON in `TESTBED_RUNTIME`, so they agree on store,
tenants and partitions, and a metrics directory of its own in `PROMETHEUS_MULTIPROC_DIR`
(prometheus_client's multiprocess mode), so any gateway process's /metrics counts every
process; each names its role in its process title (`testbed: payments worker 1`).

The supervisor restarts a worker process that dies (a crash loses nothing: the replacement
resumes from the committed offsets) and stops everything in order on SIGTERM/SIGINT: first the
gateway (stop accepting, finish in-flight requests), then the workers (finish and commit the
current batch). If the supervisor itself is SIGKILLed, every child dies with it (lifeline.py).
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from types import FrameType
from typing import TYPE_CHECKING

from reference_impl import lifeline
from reference_impl.runtime import Runtime, RuntimeConfig
from reference_impl.runtime.metrics import PublishedWorkerCounters
from reference_impl.runtime.workers import GROUPS

if TYPE_CHECKING:
    from fastapi import FastAPI

ENV = "TESTBED_RUNTIME"
METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus_client's multiprocess directory: every child writes its metrics there."""
STOP_TIMEOUT_S = 35.0
_RESTART_DELAY_S = 0.5


def gateway_app() -> FastAPI:
    """The uvicorn factory for gateway processes (`--factory`).

    Under `--workers N` uvicorn's manager spawns these processes itself, so they arm their own
    lifeline here: they die with the manager, which dies with the supervisor.
    """
    from reference_impl.api import create_app

    set_title("gateway")
    manager = multiprocessing.parent_process()
    if manager is not None and manager.pid is not None:
        lifeline.die_with_parent(manager.pid)

    runtime = Runtime.open(RuntimeConfig.from_json(os.environ[ENV]))
    # The workers run in processes of their own: nothing else here takes the store's lock.
    deps = replace(
        runtime.gateway_deps(), metrics_dir=os.environ.get(METRICS_ENV), store_thread=True
    )
    return create_app(deps)


def set_title(role: str) -> None:
    """Name this process's role in ps and top: `testbed: payments worker 1`."""
    import setproctitle

    setproctitle.setproctitle(f"testbed: {role}")


def worker_main(argv: Sequence[str] | None = None) -> int:
    """A worker process: the named consumer groups until SIGTERM/SIGINT or the parent dies."""
    parser = argparse.ArgumentParser(prog="python -m reference_impl.runtime.processes")
    parser.add_argument("--group", action="append", required=True)
    parser.add_argument("--title", default="", help="the process title's role")
    args = parser.parse_args(argv)
    set_title(args.title or " ".join(args.group))
    logging.basicConfig(level=logging.WARNING, format=f"%(asctime)s {args.title} %(message)s")
    stop = threading.Event()

    def on_signal(sig: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    runtime = Runtime.open(RuntimeConfig.from_json(os.environ[ENV]))
    runtime.start_workers(args.group)
    counters = PublishedWorkerCounters(runtime.loops)  # for the gateway processes' /metrics
    parent = os.getppid()
    while not stop.wait(0.5):
        counters.publish()
        if os.getppid() != parent:  # the supervisor is gone: never run unsupervised
            break
    ok = runtime.stop_workers()
    counters.publish()
    runtime.close()
    return 0 if ok else 1


@dataclass
class Child:
    name: str
    argv: list[str]
    restart: bool
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0

    def start(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(lifeline.command(self.argv), env=env)
        self.started_at = time.monotonic()
        print(f"started {self.name} pid {self.proc.pid}", flush=True)


@dataclass
class Supervisor:
    config: RuntimeConfig
    host: str
    port: int
    workers: int
    children: list[Child] = field(default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        py = sys.executable
        self.children.append(
            Child(
                "gateway",
                [py, "-m", "uvicorn", "--factory", f"{__name__}:gateway_app",
                 "--host", self.host, "--port", str(self.port), "--workers", str(self.workers),
                 "--log-level", "warning", "--no-access-log",
                 "--timeout-graceful-shutdown", "30"],
                restart=False,
            )
        )  # fmt: skip
        worker = [py, "-m", __name__]
        for i in range(self.workers):
            argv = [*worker, "--group", "payments", "--title", f"payments worker {i + 1}"]
            self.children.append(Child(f"payments-{i + 1}", argv, True))
        for group, title in (("settlement", "settlement worker"), ("reporting", "projector")):
            argv = [*worker, "--group", group, "--title", title]
            self.children.append(Child(group, argv, True))
        for group in self.config.groups[len(GROUPS) :]:  # the checks, when in parallel
            argv = [*worker, "--group", group, "--title", f"{group} check"]
            self.children.append(Child(f"{group}-1", argv, True))

    def run(self) -> int:
        """Start the children, restart dead workers until a signal, then stop in order."""

        def on_signal(sig: int, frame: FrameType | None) -> None:
            self._stopping.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        set_title("supervisor")
        with tempfile.TemporaryDirectory(prefix="testbed-metrics-") as metrics_dir:
            env = {**os.environ, ENV: self.config.to_json(), METRICS_ENV: metrics_dir}
            # A fraud model scores one payment at a time: scikit-learn waking a thread per core
            # for one row made its p99 tens of milliseconds on a busy machine.
            env.setdefault("OMP_NUM_THREADS", "1")
            return self._supervise(env)

    def _supervise(self, env: dict[str, str]) -> int:
        for child in self.children:
            child.start(env)
        gateway = self.children[0]
        while not self._stopping.wait(0.2):
            for child in self.children:
                assert child.proc is not None
                code = child.proc.poll()
                if code is None:
                    continue
                if not child.restart:
                    print(f"{child.name} exited with {code}; stopping", flush=True)
                    self._stopping.set()
                    break
                if time.monotonic() - child.started_at >= _RESTART_DELAY_S:
                    print(f"{child.name} exited with {code}; restarting", flush=True)
                    child.start(env)
        # In order: no new payments once the workers stop, and the gateway's in-flight ones commit.
        ok = self._stop([gateway])
        ok = self._stop(self.children[1:]) and ok
        print("stopped" if ok else "stopped (not cleanly)", flush=True)
        return 0 if ok else 1

    def _stop(self, children: Sequence[Child]) -> bool:
        for child in children:
            if child.proc is not None and child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        clean = True
        for child in children:
            assert child.proc is not None
            try:
                child.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"{child.name} did not stop in {STOP_TIMEOUT_S:g}s; killing", flush=True)
                child.proc.kill()
                child.proc.wait()
                clean = False
            if child.proc.returncode not in (0, -signal.SIGTERM):
                print(f"{child.name} exited with {child.proc.returncode}", flush=True)
                clean = False
        return clean


if __name__ == "__main__":
    sys.exit(worker_main())
