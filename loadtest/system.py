"""The reference system as real processes for one load run, started from the scenario's topology.

One gateway (uvicorn, a worker process per `topology.gateway.replicas`), a payments worker process
per `topology.payments.workers`, a settlement worker (with its bank partner) and a projector, all
on one store: SQLite in the run directory by default, or the PostgreSQL database `--store` names
(in a schema of the run's own, unless the URL names one). Every process is started through
`reference_impl.runtime.lifeline`, so it dies with this process even if this process is
SIGKILLed, and in a session of its own, so a signal meant for one never reaches the others.
The process names are the sim's node names (`gateway`, `payments-1`, `settlement`, `projector`),
which is what the scenario's faults name. A scenario with a shared rate limit
(`topology.gateway.rate_limit.shared`) also gets `redis`, a `redis-server` of the run's own on
a free port, which the gateway processes keep their token buckets in.

`ReferenceSystem` is a context manager: whatever happens inside (an error, Ctrl-C), leaving it
stops every process: SIGCONT first (a paused process cannot stop), SIGTERM, then SIGKILL for
any that overstays. A process that dies while the run goes on is restarted, as a supervisor
would, unless a fault holds it down (`kill` ... `release`).

Processes are only ever started by the thread that entered the context (the main thread):
the kernel's parent-death signal follows the thread that forked a child, so a child started by
a short-lived thread would die with that thread. Other threads (the fault schedule) only mark
what to restart; `supervise()`, called on the main thread, starts it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import psutil

from reference_impl import lifeline
from reference_impl.runtime import RuntimeConfig
from reference_impl.runtime.processes import ENV, METRICS_ENV
from reference_impl.timings import ENV as TIMINGS_ENV
from scenarios.checks_spec import check_nodes
from scenarios.schema import Scenario
from scenarios.workload import tenant_ids

RUN_DIR_ENV = "TESTBED_RUN_DIR"
SQLITE_POLL_S = 0.05
"""Every process of a run carries its run directory, so it can be found (and none forgotten)."""
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
RESTART_DELAY_S = 0.5
"""An unexpected death is restarted after this, as `testbed serve --workers` does."""


class SystemError_(RuntimeError):
    """The system could not be started: the message says which part and why."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def run_store_url(store: str | None, run_dir: Path) -> str:
    """The store of this run: SQLite in the run directory, or `store` in a schema of its own
    (unless it names one) with an application_name that tells the run's connections apart."""
    if store is None:
        return f"sqlite:///{run_dir.resolve() / 'store.db'}"
    if not store.startswith(("postgresql://", "postgres://")):
        return store
    parts = urlsplit(store)
    query = parse_qsl(parts.query, keep_blank_values=True)
    names = {name for name, _ in query}
    run = f"run_{secrets.token_hex(6)}"
    if "schema" not in names:
        query.append(("schema", run))
    if "application_name" not in names:
        query.append(("application_name", f"testbed_{run}"))
    return urlunsplit(parts._replace(query=urlencode(query)))


@dataclass
class Process:
    """One supervised process of the system."""

    name: str
    argv: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    held: bool = False
    """A fault keeps it down: not restarted until released."""
    paused: bool = False
    died_at: float | None = None
    restarts: int = 0
    _out: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, env: dict[str, str]) -> None:
        if self._out is None:
            self._out = self.log.open("ab")
        self.proc = subprocess.Popen(
            lifeline.command(self.argv),
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.died_at = None
        self.paused = False

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, sig)

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


@dataclass
class ReferenceSystem:
    scenario: Scenario
    run_dir: Path
    store_url: str
    bugs: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    port: int = 0
    api_keys: dict[str, str] = field(default_factory=dict)
    """tenant -> API key (generated)."""
    processes: dict[str, Process] = field(default_factory=dict)
    _env: dict[str, str] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _metrics_dir: tempfile.TemporaryDirectory[str] | None = None
    operator_key: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    """The load runtime's own operator key (the set-up approves funding the checks held)."""
    provider_port: int = 0
    """The stub screening provider's port, when the scenario screens names at one."""
    redis_port: int = 0
    """The run's redis-server's port, when the scenario shares its rate limit."""
    store_urls: dict[str, str] = field(default_factory=dict)
    """A process's own store URL (its own proxied link to PostgreSQL), by process name; the
    others use `store_url`."""
    _envs: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def timings_dir(self) -> Path:
        """Where the processes write their stage timings (reference_impl/timings.py)."""
        return self.run_dir / "timings"

    @property
    def consumer_poll(self) -> float:
        """Seconds between an idle consumer's polls when nothing wakes it: SQLite has no
        cross-process wake-up (PostgreSQL's commits wake the consumers), so they poll often."""
        return SQLITE_POLL_S if self.store_url.startswith("sqlite:") else 0.0

    @property
    def provider_url(self) -> str | None:
        return f"http://{self.host}:{self.provider_port}" if self.provider_port else None

    @property
    def redis_url(self) -> str | None:
        return f"redis://{self.host}:{self.redis_port}/0" if self.redis_port else None

    @property
    def config(self) -> RuntimeConfig:
        topo = self.scenario.topology
        limit = topo.gateway.rate_limit
        return RuntimeConfig(
            self.store_url,
            {key: tenant for tenant, key in self.api_keys.items()},
            redis_url=self.redis_url,
            partitions=topo.event_log.partitions,
            rate_limit=limit.rate if limit is not None else 1_000_000.0,
            rate_burst=limit.tokens if limit is not None else None,
            idle_wait=self.consumer_poll or 0.25,
            batch_size=topo.payments.batch,
            session_timeout=topo.payments.session_timeout,
            settlement_cutoff=topo.settlement.cutoff,
            partner_day=topo.settlement.cutoff,
            bugs=self.bugs,
            checks=self.scenario.checks.config(),
            operator_keys=(self.operator_key,),
            checkers=replace(self.scenario.checks.settings(), sanctions_provider=self.provider_url),
        )

    # -- start and stop -------------------------------------------------------------------
    def __enter__(self) -> ReferenceSystem:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        topo = self.scenario.topology
        if not self.api_keys:
            self.api_keys = {
                t: secrets.token_urlsafe(18) for t in tenant_ids(self.scenario.workload.tenants)
            }
        if not self.port:
            self.port = free_port(self.host)
        checks = self.scenario.checks
        if checks.on and checks.provider is not None and "sanctions" in checks.run:
            self.provider_port = free_port(self.host)
        limit = self.scenario.topology.gateway.rate_limit
        if limit is not None and limit.shared:
            self.redis_port = free_port(self.host)
        logs = self.run_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.timings_dir.mkdir(exist_ok=True)
        self._metrics_dir = tempfile.TemporaryDirectory(prefix="testbed-metrics-")
        self._env = {
            **os.environ,
            ENV: self.config.to_json(),
            METRICS_ENV: self._metrics_dir.name,
            RUN_DIR_ENV: str(self.run_dir.resolve()),
            TIMINGS_ENV: str(self.timings_dir.resolve()),
            "PYTHONUNBUFFERED": "1",
            # A fraud model scores one payment at a time, on one thread (docs/compliance.md).
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        }
        py = sys.executable
        worker = [py, "-m", "reference_impl.runtime.processes"]
        wanted = {
            **({"redis": self._redis_argv()} if self.redis_port else {}),
            "gateway": [
                py, "-m", "uvicorn", "--factory",
                "reference_impl.runtime.processes:gateway_app",
                "--host", self.host, "--port", str(self.port),
                "--workers", str(topo.gateway.replicas),
                "--log-level", "warning", "--no-access-log", "--timeout-graceful-shutdown", "10",
            ],
            **{
                f"payments-{i + 1}": [
                    *worker, "--group", "payments", "--title", f"payments worker {i + 1}"
                ]
                for i in range(topo.payments.workers)
            },
            "settlement": [*worker, "--group", "settlement", "--title", "settlement worker"],
            "projector": [*worker, "--group", "reporting", "--title", "projector"],
            **{
                name: [*worker, "--group", name.rsplit("-", 1)[0], "--title", f"{name} check"]
                for name in check_nodes(self.scenario.checks)
            },
            **({"provider": self._provider_argv()} if self.provider_port else {}),
        }  # fmt: skip
        for name, argv in wanted.items():
            self.processes[name] = Process(name, argv, logs / f"{name}.log")
            if name in self.store_urls:
                own = replace(self.config, store_url=self.store_urls[name])
                self._envs[name] = {**self._env, ENV: own.to_json()}
        self._check_port()
        for process in self.processes.values():
            process.start(self._env_of(process.name))
        self._wait_ready()

    @staticmethod
    def store_users(scenario: Scenario) -> list[str]:
        """The processes of a run that open the store (the gateway's workers share the
        gateway's name): not redis, nor the stub screening provider (a vendor's service)."""
        topo = scenario.topology
        return [
            "gateway",
            *(f"payments-{i + 1}" for i in range(topo.payments.workers)),
            "settlement",
            "projector",
            *check_nodes(scenario.checks),
        ]

    def _env_of(self, name: str) -> dict[str, str]:
        return self._envs.get(name, self._env)

    def _provider_argv(self) -> list[str]:
        """The stub screening provider (reference_impl/compliance/provider.py), as configured."""
        provider = self.scenario.checks.provider
        assert provider is not None
        sanctions = self.scenario.checks.sanctions
        return [
            sys.executable, "-m", "reference_impl.compliance.provider",
            "--port", str(self.provider_port),
            "--latency", str(provider.latency), "--error-rate", str(provider.error_rate),
            "--threshold", str(sanctions.threshold), "--reject-at", str(sanctions.reject_at),
            "--seed", str(self.scenario.seed),
        ]  # fmt: skip

    def _redis_argv(self) -> list[str]:
        """A throwaway redis-server: this run's port, no persistence (a restart comes back
        empty, as the `redis` fault means), its files in the run directory. Redis 6.2 or later
        (`set-proc-title`)."""
        server = shutil.which("redis-server")
        if server is None:
            raise SystemError_(
                "redis: redis-server not found on PATH (topology.gateway.rate_limit.shared"
                " needs it)"
            )
        where = self.run_dir / "redis"
        where.mkdir(parents=True, exist_ok=True)
        return [
            server, "--port", str(self.redis_port), "--bind", self.host,
            "--save", "", "--appendonly", "no", "--dir", str(where.resolve()),
            "--daemonize", "no", "--loglevel", "warning",
            # Its own title would overwrite the environment that names the run (RUN_DIR_ENV).
            "--set-proc-title", "no",
        ]  # fmt: skip

    def _check_port(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((self.host, self.port))
            except OSError as e:
                raise SystemError_(
                    f"port {self.port}: cannot listen on it ({e.strerror})"
                ) from None

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            for process in self.processes.values():
                if not process.alive:
                    raise SystemError_(
                        f"{process.name} exited with {process.proc and process.proc.returncode}"
                        f" while starting: {self.tail(process.name)}"
                    )
            try:
                healthy = httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200
                if healthy and self._redis_ready():
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise SystemError_(f"gateway: not ready on {self.url} within {READY_TIMEOUT_S:g}s")

    def _redis_ready(self) -> bool:
        """True without a redis-server, or once it answers PING."""
        if self.redis_url is None:
            return True
        import redis

        client = redis.Redis.from_url(self.redis_url, socket_timeout=1.0)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def tail(self, name: str) -> str:
        """The last line a process wrote (for a one-line error message)."""
        path = self.processes[name].log
        text = path.read_text(errors="replace") if path.exists() else ""
        lines = text.strip().splitlines()
        return lines[-1].strip() if lines else "(no output)"

    def stop(self) -> None:
        """Stop every process: the gateway first, then the workers; SIGKILL what overstays."""
        with self._lock:
            for process in self.processes.values():
                process.held = True  # nothing is restarted any more
                if process.paused:
                    process.signal(signal.SIGCONT)
                    process.paused = False
            gateway = [p for n, p in self.processes.items() if n == "gateway"]
            workers = [p for n, p in self.processes.items() if n != "gateway"]
            for batch in (gateway, workers):
                for process in batch:
                    process.signal(signal.SIGTERM)
                deadline = time.monotonic() + STOP_TIMEOUT_S
                for process in batch:
                    if process.proc is None:
                        continue
                    try:
                        process.proc.wait(max(0.0, deadline - time.monotonic()))
                    except subprocess.TimeoutExpired:
                        process.proc.kill()
                        process.proc.wait()
            for process in self.processes.values():
                process.close()
            if self._metrics_dir is not None:
                self._metrics_dir.cleanup()
                self._metrics_dir = None

    # -- supervision and faults -----------------------------------------------------------
    def supervise(self) -> None:
        """Restart a process that died, unless a fault holds it down (call it often)."""
        with self._lock:
            now = time.monotonic()
            for process in self.processes.values():
                if process.held or process.alive or process.proc is None:
                    continue
                if process.died_at is None:
                    process.died_at = now
                elif now - process.died_at >= RESTART_DELAY_S:
                    process.restarts += 1
                    process.start(self._env_of(process.name))

    def kill(self, name: str) -> None:
        """SIGKILL the process and keep it down until `release`."""
        with self._lock:
            process = self.processes[name]
            process.held = True
            process.signal(signal.SIGKILL)
            if process.proc is not None:
                process.proc.wait()

    def store_writers(self) -> list[str]:
        """The running processes that hold the store open and write it (`store_users`)."""
        return [n for n in self.store_users(self.scenario) if n in self.processes]

    def kill_all(self, names: list[str]) -> list[int]:
        """SIGKILL the processes together (the gateway's worker processes with it) and keep them
        down until each is released; returns the pids killed."""
        with self._lock:
            processes = [self.processes[n] for n in names]
            workers = self.gateway_workers() if "gateway" in names else []
            pids = [p.pid for p in processes if p.alive and p.pid is not None]
            for process in processes:
                process.held = True
            for process in processes:
                process.signal(signal.SIGKILL)
            for worker in workers:  # they would die with the manager, but not at this instant
                with contextlib.suppress(psutil.Error):
                    if worker.pid not in pids:
                        worker.kill()
                        pids.append(worker.pid)
            for process in processes:
                if process.proc is not None:
                    process.proc.wait()
            return pids

    def release(self, name: str) -> None:
        """Let a held-down process be started again (by the next `supervise()`)."""
        with self._lock:
            process = self.processes[name]
            process.held = False
            process.died_at = -float("inf")

    def pause(self, name: str) -> None:
        with self._lock:
            process = self.processes[name]
            process.signal(signal.SIGSTOP)
            process.paused = True

    def resume(self, name: str) -> None:
        with self._lock:
            process = self.processes[name]
            process.signal(signal.SIGCONT)
            process.paused = False

    def gateway_workers(self) -> list[psutil.Process]:
        """The gateway's worker processes, oldest first (`gateway-1` is the first): uvicorn's
        spawned workers, or its own process when it runs one replica."""
        gateway = self.processes.get("gateway")
        if gateway is None or gateway.pid is None or not gateway.alive:
            return []
        try:
            manager = psutil.Process(gateway.pid)
            if self.scenario.topology.gateway.replicas == 1:
                return [manager]
            # Every child but multiprocessing's resource tracker; a worker's cmdline is its
            # process title ("testbed: gateway") once it has started, `spawn_main` before.
            spawned = [
                p for p in manager.children() if "resource_tracker" not in " ".join(p.cmdline())
            ]
            return sorted(spawned, key=lambda p: p.create_time())
        except psutil.Error:
            return []

    def pids(self) -> dict[str, int]:
        """Each live process by its node name (`gateway-N` for the gateway's workers)."""
        found = {
            n: p.pid
            for n, p in self.processes.items()
            if n != "gateway" and p.pid is not None and p.alive
        }
        for i, worker in enumerate(self.gateway_workers()):
            found[f"gateway-{i + 1}"] = worker.pid
        return found
