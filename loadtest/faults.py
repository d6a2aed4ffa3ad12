"""The scenario's faults, applied to the real processes of a load run, on the wall clock.

The same fault list the sim takes (timed windows, background Poisson windows, a swarm drawn from
the seed) is laid out as windows relative to the traffic's start, and a thread opens and
closes them. What a window does to real processes:

- `crash` of `payments-N`, `settlement`, `projector`, the checks' `sanctions-N`, `aml-N`,
  `fraud-N`: SIGKILL, started again after `duration`; of `gateway-N`: SIGKILL of the N-th
  uvicorn worker process (uvicorn starts a new one at once; with one replica, the gateway
  process, started again after `duration`); of `ledger` on
  PostgreSQL: every connection of the run ended (pg_terminate_backend), again and again for
  `duration`: the database is gone for the system, and comes back; on SQLite, which has no
  server (the store is embedded in every process that opens it), SIGKILL of every process that
  writes the store, together (gateway and its workers, payments, settlement, projector, checks),
  mid-transaction, started again after `duration`: the next to open the file recovers it.
- `pause` of the same processes: SIGSTOP, SIGCONT after `duration` (past the lease, a consumer
  wakes fenced).
- `rebalance` of a group: every claim revoked through the store's coordinator.
- `redis`: the run's redis-server (a shared rate limit's) SIGKILLed and started again, empty,
  after `duration`; the gateway fails closed meanwhile (503).
- `provider`: the stub screening provider's latency and error rate set through its /control
  for the window, then set back to the scenario's `checks.provider`.
- `latency`, `loss` and `partition`, through the proxies (loadtest/proxy.py) a run that has them
  puts in front of the clients' link to the gateway and, on PostgreSQL, in front of each service
  process's own link to the database (`gateway<->ledger`, shared by the gateway's worker
  processes, `payments-1<->ledger`, `settlement<->ledger`, `projector<->ledger`,
  `sanctions-1<->ledger`, ...): `latency` on every link (the processes share one machine, so a
  window's zones name no particular link), `loss` on the clients' link (what the sim's loss acts
  on), a `partition` on the link its endpoints name: `clients` and `gateway`; `ledger` and a
  process (that process's link only, so it alone cannot reach the store: a consumer's lease
  expires and its partitions move); `ledger` and `services` or a name that is no process (every
  service's link); without endpoints, `clients<->gateway` or `services<->ledger` drawn from the
  seed.

No network namespaces are needed to cut one process off: the links that exist between the
reference system's parts are all proxied. Its processes talk to each other only through the
store, and clients only to the gateway, so there is no link between two processes to cut: a
partition between them (`[payments-1, settlement]`) is not applied, and says so.

Everything else cannot be applied here and is listed in the faults table and the verdict as
*not applied*, with the reason (zones share one machine; two processes share no link; the bank
partner runs inside the settlement worker; ...), never silently dropped.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import httpx
import psutil

from loadtest.proxy import DOWN, UP, LinkProxy
from loadtest.system import ReferenceSystem
from reference_impl.adapters import open_store
from reference_impl.service import groups as coordinator
from reference_impl.service.checks import CHECKS
from scenarios.fault_specs import (
    Crash,
    Fault,
    Latency,
    Loss,
    Partition,
    Pause,
    ProviderTrouble,
    Rebalance,
    RedisDown,
)
from scenarios.schema import Scenario
from sim.swarm import swarm_faults

CONSUMERS = ("settlement", "projector")
CLIENTS_LINK = "clients<->gateway"
SERVICES_LINK = "services<->ledger"
"""Every service process's link to the database, together."""
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
    """The proxied links of a run (None, or no entry: not proxied)."""

    clients: LinkProxy | None = None
    """The generator -> gateway link."""
    database: dict[str, LinkProxy] = field(default_factory=dict)
    """Each service process's own link to PostgreSQL, by process name (`gateway`: the
    gateway's, which its worker processes share)."""

    def named(self) -> dict[str, LinkProxy]:
        links = {"clients<->gateway": self.clients} if self.clients is not None else {}
        return {**links, **{_ledger_link(n): link for n, link in self.database.items()}}


def links_needed(windows: list[Window], postgres: bool) -> tuple[bool, bool]:
    """Whether the run needs a proxy on the clients' link, and on the services' links to the
    database (every service process's, when any)."""
    clients = database = False
    for window in windows:
        fault = window.fault
        if isinstance(fault, Loss):
            clients = True
        elif isinstance(fault, Latency | Partition):
            between = fault.between if isinstance(fault, Partition) else None
            name = _link_between(*between)[0] if between else None  # None: any link
            clients |= name in (None, CLIENTS_LINK)
            database |= postgres and (name is None or name.endswith("<->ledger"))
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
        if isinstance(fault, ProviderTrouble):
            return self._provider(fault)
        if isinstance(fault, RedisDown):
            return self._redis()
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

    def _redis(self) -> tuple[str, str, Undo]:
        """SIGKILL the run's redis-server; the supervisor starts it again (empty) after."""
        if "redis" not in self.system.processes:
            return "redis", "not applied: this run has no redis-server", _nothing
        return self._process("redis", "redis", Crash(kind="crash", node="redis"))

    def _provider(self, fault: ProviderTrouble) -> tuple[str, str, Undo]:
        """The stub provider slows down or fails for the window, through its /control."""
        url, configured = self.system.provider_url, self.system.scenario.checks.provider
        assert url is not None and configured is not None
        trouble = {"latency": fault.latency, "error_rate": fault.error_rate}
        httpx.post(f"{url}/control", json=trouble, timeout=5.0).raise_for_status()

        def back() -> str:
            again = {"latency": configured.latency, "error_rate": configured.error_rate}
            httpx.post(f"{url}/control", json=again, timeout=5.0).raise_for_status()
            return "provider as configured again"

        return "provider", f"latency {fault.latency:g}s, error rate {fault.error_rate:g}", back

    def _targets(self) -> list[str]:
        # Not the stub provider: it stands for a vendor's service, which the sim does not crash.
        # Nor redis: the `redis` fault is how a scenario takes it down.
        names = [n for n in self.system.processes if n not in ("gateway", "provider", "redis")]
        names += [f"gateway-{i + 1}" for i in range(len(self.system.gateway_workers()))]
        return [*names, "ledger"]

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
            return self._writers_down(name)
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

    def _writers_down(self, name: str) -> tuple[str, str, Undo]:
        """An embedded SQLite store crashes with the processes that hold it open: every writer
        SIGKILLed at once, each started again after the window (as a `crash` of one is)."""
        system = self.system
        writers = system.store_writers()
        pids = system.kill_all(writers)

        def restart() -> str:
            for writer in writers:
                system.release(writer)
            return "started again"

        detail = f"SIGKILL of every store writer ({', '.join(writers)}: {len(pids)} processes)"
        return name, detail, restart

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
        if self.links.database:
            detail += f" (services<->ledger: {len(self.links.database)} links, one per process)"
        if fault.zones:
            detail += " (on every proxied link: the zones share one machine)"
        return ", ".join(self._shown(list(links))), detail, back

    def _shown(self, names: list[str]) -> list[str]:
        """Link names, every service's link to the ledger together as `services<->ledger`."""
        every = {_ledger_link(n) for n in self.links.database}
        if not every or not every <= set(names):
            return names
        return [n for n in names if n not in every] + [SERVICES_LINK]

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
            # One of the run's two kinds of link, drawn from the seed: the clients' link, or
            # every service's link to the database.
            drawn = [CLIENTS_LINK] if self.links.clients is not None else []
            drawn += [SERVICES_LINK] if self.links.database else []
            if not drawn:
                return _target(fault), "not applied: no link of this run is proxied", _nothing
            name = self.rng.choice(drawn)
            first = name.split("<->")[0]
        else:
            name, first = _link_between(*fault.between)
        cut, why = self._cuts(name, fault.between or ("", ""))
        if not cut:
            return _target(fault), f"not applied: {why}", _nothing
        # `one_way` cuts first -> second: toward the upstream when the first is the client side.
        upstream_first = first not in ("gateway", "ledger")
        directions = [UP if upstream_first else DOWN] if fault.one_way else [UP, DOWN]
        held = sum(links[n].counters.held for n in cut)
        for link_name in cut:
            for direction in directions:
                links[link_name].hold(direction)

        def heal() -> str:
            # Answers first: released after the requests, an answer to a request let through
            # could still be held on its way back, and counted.
            for link_name in cut:
                for direction in reversed(directions):
                    links[link_name].release(direction)
            now = sum(links[n].counters.held for n in cut)
            return f"{now - held} chunks held until it healed"

        arrow = "->" if fault.one_way else "<->"
        a, b = name.split("<->")
        shown = f"{a}{arrow}{b}" if upstream_first else f"{b}{arrow}{a}"
        detail = "one-way" if fault.one_way else "symmetric"
        if name == SERVICES_LINK:
            detail += f" ({len(cut)} links, one per process)"
        elif name == _ledger_link("gateway") and self.system.scenario.topology.gateway.replicas > 1:
            detail += " (the gateway's worker processes share one link)"
        return shown, detail, heal

    def _cuts(self, name: str, between: Sequence[str]) -> tuple[list[str], str]:
        """The proxied links a partition of link `name` cuts, or none and why."""
        links = self.links.named()
        if name == SERVICES_LINK:
            every = [_ledger_link(n) for n in self.links.database]
            return every, "" if every else f"{SERVICES_LINK} is not proxied in this run"
        if name in links:
            return [name], ""
        if name.endswith("<->ledger"):
            if not self.links.database:
                return [], f"{SERVICES_LINK} is not proxied in this run"
            return [], f"no process {name.removesuffix('<->ledger')!r} in this run"
        if name:
            return [], f"{name} is not proxied in this run"
        if "ledger" not in between and all(_is_node(e) or e == "clients" for e in between):
            a, b = between
            return [], (
                f"there is no link between {a} and {b} to cut: the reference system's processes"
                " talk to each other only through the store (and clients only to the gateway);"
                f" cut one of them from ledger instead (between: [{a}, ledger])"
            )
        return [], (
            "a partition in a load run cuts clients<->gateway or a service process's link to"
            " ledger (on PostgreSQL); zones share one machine"
        )


def _link_between(a: str, b: str) -> tuple[str, str]:
    """The proxied link two partition endpoints name ("" for none), and which of its ends is
    `a`: `clients` and the gateway (or one of its workers), or `ledger` and a service process
    (`services`, or a name that is no process, such as a zone: every service's link)."""
    ends = {a, b}
    if "clients" in ends and ({"gateway"} | {e for e in ends if e.startswith("gateway-")}) & ends:
        return CLIENTS_LINK, "clients" if a == "clients" else "gateway"
    if "ledger" in ends and "clients" not in ends:
        other = b if a == "ledger" else a
        first = "ledger" if a == "ledger" else "services"
        if other.startswith("gateway-") or other == "gateway":
            return _ledger_link("gateway"), first
        if other != "ledger" and _is_node(other):
            return _ledger_link(other), first
        return SERVICES_LINK, first
    return "", ""


def _ledger_link(process: str) -> str:
    return f"{process}<->ledger"


_NODE = re.compile(
    rf"^({'|'.join(('gateway', 'payments', *CHECKS))})-\d+$|^(gateway|settlement|projector)$"
)


def _is_node(name: str) -> bool:
    """Whether `name` is a node of the reference system as the scenario and the sim name them."""
    return bool(_NODE.match(name))


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
