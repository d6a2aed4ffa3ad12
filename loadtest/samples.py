"""What a load run samples while it runs: each process's CPU, and each group partition's lag.

Every second, from outside the system: the CPU share of each process (psutil), and from the
store, each consumer group's claims and the events waiting after its committed offsets. A
consumer process's lag is the sum over the partitions its member holds (members carry their
pid). These become the run record's nodes and partitions tables; a real process cannot say how
long its threads waited on the database, so in a load run `utilization` is its CPU share too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil

from reference_impl.adapters import open_store
from reference_impl.service.members import GROUP_TOPICS
from reference_impl.service.ports import Store, UnitOfWork

INTERVAL_S = 1.0


@dataclass
class Samples:
    nodes: list[dict[str, object]] = field(default_factory=list)
    partitions: list[dict[str, object]] = field(default_factory=list)


class Sampler:
    """Samples every `interval` seconds on a thread of its own until `stop()`."""

    def __init__(
        self,
        pids: Callable[[], dict[str, int]],
        store_url: str,
        partitions: int,
        t0: float,
        interval: float = INTERVAL_S,
    ) -> None:
        self._pids = pids
        self._store_url = store_url
        self._partitions = partitions
        self._t0 = t0
        self._interval = interval
        self.samples = Samples()
        self._procs: dict[int, psutil.Process] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> Samples:
        self._done.set()
        self._thread.join(30)
        return self.samples

    def _run(self) -> None:
        store = open_store(self._store_url)
        try:
            while not self._done.wait(self._interval):
                try:
                    self._sample(store)
                except Exception:  # the store down (a fault): this second has no sample
                    continue
        finally:
            store.close()

    def _cpu(self, pid: int) -> float:
        proc = self._procs.get(pid)
        try:
            if proc is None:
                proc = self._procs[pid] = psutil.Process(pid)
                proc.cpu_percent(None)  # the first call only starts the measurement
                return float("nan")
            return float(proc.cpu_percent(None)) / 100.0
        except psutil.Error:
            return float("nan")

    def _sample(self, store: Store) -> None:
        at = time.time() - self._t0
        pids = self._pids()
        with store.unit_of_work() as uow:
            lag_by_pid = self._lags(uow, at)
        for name, pid in sorted(pids.items()):
            cpu = self._cpu(pid)
            self.samples.nodes.append(
                {
                    "at": at,
                    "node": name,
                    "utilization": cpu,
                    "cpu": cpu,
                    "queue_length": 0,
                    "busy_workers": 0,
                    "lag": lag_by_pid.get(pid, 0),
                    "headroom": float("nan"),
                }
            )

    def _lags(self, uow: UnitOfWork, at: float) -> dict[int, int]:
        by_pid: dict[int, int] = {}
        for group, topics in GROUP_TOPICS.items():
            pid_of = {m.member: m.pid for m in uow.list_members(group)}
            owners = {c.partition: c.member for c in uow.list_claims(group)}
            heads = {t: uow.log_heads(t) for t in topics}
            for p in range(self._partitions):
                lag = sum(
                    max(0, h.get(p, 0) - uow.get_offset(group, t, p)) for t, h in heads.items()
                )
                member = owners.get(p, "")
                self.samples.partitions.append(
                    {"at": at, "group": group, "partition": p, "member": member, "lag": lag}
                )
                if member in pid_of:
                    by_pid[pid_of[member]] = by_pid.get(pid_of[member], 0) + lag
        return by_pid
