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
- `latency`, `loss` and `partition`, through the proxies (loadtest/proxy.py) a run that has them
  puts in front of the clients' link to the gateway and, on PostgreSQL, the services' link to
  the database: `latency` on both links (the processes share one machine, so a window's zones
  name no particular link), `loss` on the clients' link (what the sim's loss acts on), a
  `partition` on the link its endpoints name (`clients` and `gateway`, or `ledger` and anything)
  or, without endpoints, on one of them drawn from the seed.

Everything else cannot be applied here and is listed in the faults table and the verdict as
*not applied*, with the reason (zones and single processes cannot be cut apart on one machine
without root and network namespaces; the bank partner runs inside the settlement worker; ...),
never silently dropped.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import psutil

from loadtest.proxy import DOWN, UP, LinkProxy
from loadtest.system import ReferenceSystem
from reference_impl.adapters import open_store
from reference_impl.service import groups as coordinator
from scenarios.fault_specs import Crash, Fault, Latency, Loss, Partition, Pause, Rebalance
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
class Links:
    """The proxied links of a run (None: not proxied)."""

    clients: LinkProxy | None = None
    """The generator -> gateway link."""
    database: LinkProxy | None = None
    """The services -> PostgreSQL link."""

    def named(self) -> dict[str, LinkProxy]:
        links = {"clients<->gateway": self.clients, "services<->ledger": self.database}
        return {name: link for name, link in links.items() if link is not None}


def links_needed(windows: list[Window], postgres: bool) -> tuple[bool, bool]:
    """Whether the run needs a proxy on the clients' link, and on the database link."""
    clients = database = False
    for window in windows:
        fault = window.fault
        if isinstance(fault, Loss):
            clients = True
        elif isinstance(fault, Latency | Partition):
            between = fault.between if isinstance(fault, Partition) else None
            name = _link_between(*between)[0] if between else None  # None: any link
            clients |= name in (None, "clients<->gateway")
            database |= postgres and name in (None, "services<->ledger")
    return clients, database


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
    poisson = faults.background.families()
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
        self,
        system: ReferenceSystem,
        windows: list[Window],
        t0: float,
        rng: random.Random,
        links: Links | None = None,
        store_url: str | None = None,
    ) -> None:
        self.system = system
        self.links = links or Links()
        self.store_url = store_url or system.store_url
        """The store itself, not through a proxy (whose faults must not stop the faults)."""
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
        if isinstance(fault, Latency):
            return self._latency(fault)
        if isinstance(fault, Loss):
            return self._loss(fault)
        if isinstance(fault, Partition):
            return self._partition(fault)
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
        if self.store_url.startswith("postgres"):
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

        url = self.store_url
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
        store = open_store(self.store_url)
        try:
            with store.unit_of_work() as uow:
                revoked = coordinator.revoke_all(uow, group)
                uow.commit()
        finally:
            store.close()
        return group, f"{revoked} claims revoked", _nothing

    def _latency(self, fault: Latency) -> tuple[str, str, Undo]:
        links = self.links.named()
        if not links:
            return _target(fault), "not applied: no link of this run is proxied", _nothing
        for link in links.values():
            link.add_latency(fault.extra)

        def back() -> str:
            for link in links.values():
                link.remove_latency(fault.extra)
            return ""

        detail = f"+{fault.extra * 1000:g}ms each way"
        if fault.zones:
            detail += " (on every proxied link: the zones share one machine)"
        return ", ".join(links), detail, back

    def _loss(self, fault: Loss) -> tuple[str, str, Undo]:
        link = self.links.clients
        if link is None:
            return _target(fault), "not applied: the clients' link is not proxied", _nothing
        cut = link.counters.cut
        link.add_loss(fault.probability)

        def back() -> str:
            link.remove_loss(fault.probability)
            return f"{link.counters.cut - cut} connections cut"

        return "clients<->gateway", f"p={fault.probability:g} per chunk, connection cut", back

    def _partition(self, fault: Partition) -> tuple[str, str, Undo]:
        links = self.links.named()
        if fault.between is None:
            if not links:
                return _target(fault), "not applied: no link of this run is proxied", _nothing
            name = self.rng.choice(sorted(links))
            first = name.split("<->")[0]
        else:
            name, first = _link_between(*fault.between)
            if name not in links:
                why = (
                    "a partition in a load run cuts clients<->gateway or services<->ledger (on "
                    "PostgreSQL); zones and single processes share one machine"
                    if not name
                    else f"{name} is not proxied in this run"
                )
                return _target(fault), f"not applied: {why}", _nothing
        link = links[name]
        # `one_way` cuts first -> second: toward the upstream when the first is the client side.
        upstream_first = first in ("clients", "services")
        directions = [UP if upstream_first else DOWN] if fault.one_way else [UP, DOWN]
        held = link.counters.held
        for direction in directions:
            link.hold(direction)

        def heal() -> str:
            for direction in directions:
                link.release(direction)
            return f"{link.counters.held - held} chunks held until it healed"

        arrow = "->" if fault.one_way else "<->"
        a, b = name.split("<->")
        shown = f"{a}{arrow}{b}" if upstream_first else f"{b}{arrow}{a}"
        return shown, "one-way" if fault.one_way else "symmetric", heal


def _link_between(a: str, b: str) -> tuple[str, str]:
    """The proxied link two partition endpoints name, and which of its ends is `a`."""
    ends = {a, b}
    if "clients" in ends and ({"gateway"} | {e for e in ends if e.startswith("gateway-")}) & ends:
        return "clients<->gateway", "clients" if a == "clients" else "gateway"
    if "ledger" in ends and "clients" not in ends:
        return "services<->ledger", "ledger" if a == "ledger" else "services"
    return "", ""


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
    "duplicate": "the generator sends the workload's duplicates (client.duplicate_probability)",
    "reorder": "TCP delivers a connection's bytes in order; requests on separate connections"
    " already race",
    "clog": "swizzles links between zones, and the processes share one machine",
    "disk": "needs a faulty block device under the database",
    "failover": "the store has no replica in a load run",
    "poison": "the real workers run the correct handlers only",
    "partner": "the bank partner runs inside the settlement worker, with its default behaviour",
    "clock-skew": "the processes share this machine's clock",
}
