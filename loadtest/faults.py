"""The scenario's faults, applied to the real processes of a load run, on the wall clock.

The same fault list the sim takes (timed windows, background Poisson windows, a swarm drawn from
the seed) is laid out as windows relative to the traffic's start, and a thread opens and
closes them. What a window does to real processes:

- `crash` of `payments-N`, `settlement`, `projector`: SIGKILL, started again after `duration`;
  of `gateway-N`: SIGKILL of the N-th uvicorn worker process (uvicorn starts a new one at once;
  with one replica, the gateway process, started again after `duration`); of `ledger` on
  PostgreSQL: every connection of the run ended (pg_terminate_backend), again and again for
  `duration`: the database is gone for the system, and comes back.
- `pause` of the same processes: SIGSTOP, SIGCONT after `duration` (past the lease, a consumer
  wakes fenced).
- `rebalance` of a group: every claim revoked through the store's coordinator.

Everything else cannot be applied here and is listed in the faults table and the verdict as
*not applied*, with the reason (network partitions need root and network namespaces; latency
and loss need a proxy in front of the link; the bank partner runs inside the settlement worker;
...), never silently dropped.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import psutil

from loadtest.system import ReferenceSystem
from reference_impl.adapters import open_store
from reference_impl.service import groups as coordinator
from scenarios.fault_specs import Crash, Fault, Pause, Rebalance
from scenarios.schema import Scenario
from sim.swarm import swarm_faults

CONSUMERS = ("settlement", "projector")
LEDGER_DOWN_EVERY_S = 0.1

Undo = Callable[[], str]


@dataclass(frozen=True, slots=True)
class FaultRow:
    """One window, as faults.parquet has it (seconds since the run's t0)."""

    start: float
    end: float
    kind: str
    target: str
    detail: str

    @property
    def applied(self) -> bool:
        return not self.detail.startswith("not applied")


@dataclass(frozen=True, slots=True)
class Window:
    at: float
    """Seconds after the traffic starts."""
    fault: Fault


def plan(scenario: Scenario, seed: int) -> list[Window]:
    """Every window of the run, in time order: timed, background Poisson, and a swarm's draw."""
    rng = random.Random(f"{seed}/faults")
    faults = scenario.faults
    windows = [Window(f.at or 0.0, f) for f in faults.timed]
    poisson = list(faults.background.poisson)
    bg = faults.background
    if bg.crashes is not None:
        spec = bg.crashes
        poisson += [
            Crash(kind="crash", node=n, rate=spec.rate, duration=spec.down) for n in spec.nodes
        ]
    if faults.swarm:
        poisson += swarm_faults(scenario, random.Random(f"{seed}/swarm"))
    for fault in poisson:
        t = 0.0
        while fault.rate:
            t += rng.expovariate(fault.rate)
            if t >= scenario.duration:
                break
            windows.append(Window(t, fault))
            t += fault.duration
    return sorted(windows, key=lambda w: (w.at, w.fault.kind))


class LoadFaults:
    """Opens and closes the planned windows on a thread; `rows` is the timeline so far."""

    def __init__(
        self, system: ReferenceSystem, windows: list[Window], t0: float, rng: random.Random
    ) -> None:
        self.system = system
        self.windows = windows
        self.t0 = t0
        self.rng = rng
        self.rows: list[FaultRow] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self, traffic_started: float) -> None:
        """Begin the schedule; `traffic_started` is seconds since t0."""
        for window in self.windows:
            thread = threading.Thread(
                target=self._window, args=(window, traffic_started), daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def stop(self) -> None:
        """Close every open window now (the run is over) and wait for the threads."""
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    @property
    def not_applied(self) -> list[dict[str, str]]:
        with self._lock:
            rows = sorted(self.rows, key=lambda r: (r.start, r.kind))
        return [
            {"kind": r.kind, "target": r.target, "reason": r.detail} for r in rows if not r.applied
        ]

    def _now(self) -> float:
        return time.time() - self.t0

    def _window(self, window: Window, traffic_started: float) -> None:
        start = traffic_started + window.at
        if self._stop.wait(max(0.0, start - self._now())):
            return
        fault = window.fault
        try:
            target, detail, undo = self._open(fault)
        except Exception as e:  # a fault that failed to apply is a finding about the harness
            target, detail, undo = _target(fault), f"not applied: {e}", _nothing
        opened = self._now()
        index = self._add(FaultRow(opened, opened + fault.duration, fault.kind, target, detail))
        if undo is _nothing:
            return
        self._stop.wait(max(0.0, opened + fault.duration - self._now()))
        effect = undo()
        with self._lock:
            row = self.rows[index]
            closed = self._now()
            self.rows[index] = replace(
                row, end=closed, detail=f"{row.detail}; {effect}".strip("; ")
            )

    def _add(self, row: FaultRow) -> int:
        with self._lock:
            self.rows.append(row)
            return len(self.rows) - 1

    # -- one window per kind ------------------------------------------------------------------
    def _open(self, fault: Fault) -> tuple[str, str, Undo]:
        if isinstance(fault, Crash | Pause):
            return self._node(fault)
        if isinstance(fault, Rebalance):
            return self._rebalance(fault)
        return (
            _target(fault),
            f"not applied: {_WHY_NOT.get(fault.kind, 'no real equivalent')}",
            _nothing,
        )

    def _node(self, fault: Crash | Pause) -> tuple[str, str, Undo]:
        name = fault.node or self.rng.choice(sorted(self._targets()))
        if name == "ledger":
            if isinstance(fault, Pause):
                return (
                    name,
                    "not applied: pausing the database server would stop every user of it",
                    _nothing,
                )
            return self._ledger_down(name)
        if name.startswith("gateway-"):
            return self._gateway(name, fault)
        if name not in self.system.processes:
            return name, f"not applied: no process {name!r} in this run", _nothing
        return self._process(name, name, fault)

    def _process(self, name: str, target: str, fault: Crash | Pause) -> tuple[str, str, Undo]:
        system = self.system
        if isinstance(fault, Crash):
            system.kill(name)

            def restart() -> str:
                system.release(name)
                return "started again"

            return target, "SIGKILL", restart
        system.pause(name)

        def resume() -> str:
            system.resume(name)
            return "SIGCONT"

        return target, "SIGSTOP", resume

    def _targets(self) -> list[str]:
        names = [n for n in self.system.processes if n != "gateway"]
        names += [f"gateway-{i + 1}" for i in range(len(self.system.gateway_workers()))]
        if self.system.store_url.startswith("postgres"):
            names.append("ledger")
        return names

    def _gateway(self, name: str, fault: Crash | Pause) -> tuple[str, str, Undo]:
        if self.system.scenario.topology.gateway.replicas == 1 and name == "gateway-1":
            return self._process("gateway", name, fault)
        workers = self.system.gateway_workers()
        index = int(name.removeprefix("gateway-")) - 1
        if index >= len(workers):
            return name, f"not applied: the gateway has {len(workers)} worker processes", _nothing
        worker = workers[index]
        if isinstance(fault, Crash):
            worker.kill()
            return name, f"SIGKILL pid {worker.pid}; uvicorn starts a new worker at once", _nothing
        worker.suspend()

        def resume() -> str:
            try:
                worker.resume()
            except psutil.Error:
                return "gone before SIGCONT"
            return "SIGCONT"

        return name, f"SIGSTOP pid {worker.pid}", resume

    def _ledger_down(self, name: str) -> tuple[str, str, Undo]:
        import psycopg

        url = self.system.store_url
        if not url.startswith("postgres"):
            return name, "not applied: the SQLite store is embedded in every process", _nothing
        app = _application_name(url)
        ended = {"n": 0}
        down = threading.Event()

        def terminate() -> None:
            admin_url = url.split("?", 1)[0]
            with psycopg.connect(admin_url, autocommit=True) as conn:
                while not down.wait(LEDGER_DOWN_EVERY_S):
                    rows = conn.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE application_name = %s AND pid <> pg_backend_pid()",
                        (app,),
                    ).fetchall()
                    ended["n"] += sum(1 for (ok,) in rows if ok)

        thread = threading.Thread(target=terminate, daemon=True)
        thread.start()

        def back() -> str:
            down.set()
            thread.join(10)
            return f"{ended['n']} connections ended"

        return name, "the run's database connections ended", back

    def _rebalance(self, fault: Rebalance) -> tuple[str, str, Undo]:
        group: str = fault.group or self.rng.choice(["payments", "reporting", "settlement"])
        store = open_store(self.system.store_url)
        try:
            with store.unit_of_work() as uow:
                revoked = coordinator.revoke_all(uow, group)
                uow.commit()
        finally:
            store.close()
        return group, f"{revoked} claims revoked", _nothing


def _nothing() -> str:
    return ""


def _target(fault: Fault) -> str:
    for attr in ("node", "zone", "group", "partner"):
        value = getattr(fault, attr, None)
        if value:
            return str(value)
    between = getattr(fault, "between", None)
    return "<->".join(between) if between else "all"


def _application_name(url: str) -> str:
    from urllib.parse import parse_qsl, urlsplit

    for key, value in parse_qsl(urlsplit(url).query):
        if key == "application_name":
            return value
    raise ValueError(f"store URL {url!r} has no application_name to find its connections by")


_WHY_NOT = {
    "zone-outage": "every process runs on this one machine: there are no zones to take down",
    "latency": "needs a proxy in front of the link; none is started for this run",
    "loss": "client<->gateway loss would need a lossy proxy in front of the gateway",
    "duplicate": "the generator sends the workload's duplicates (client.duplicate_probability)",
    "reorder": "needs a proxy in front of the link",
    "partition": "needs root and the components in network namespaces, cut with iptables",
    "clog": "needs root and the components in network namespaces",
    "disk": "needs a faulty block device under the database",
    "failover": "the store has no replica in a load run",
    "poison": "the real workers run the correct handlers only",
    "partner": "the bank partner runs inside the settlement worker, with its default behaviour",
    "clock-skew": "the processes share this machine's clock",
}
