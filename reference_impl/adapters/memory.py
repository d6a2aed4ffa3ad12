"""The in-memory store: the sim's store, with production semantics and modelled failure.

State is a set of named tables (dict of key -> immutable value). A unit of work buffers its
writes and applies them at commit under one lock, so units of work are serialisable. Each commit
is a write set with a sequence number; the store can model:

- durability: with `durable_commits=False`, a commit is visible at once but durable only after
  `sync()`; `crash()` drops every commit that was not yet durable (volatile state lost);
- replication: a replica applies write sets `sync`hronously at commit or `async`hronously when
  `replicate()` is called (the sim decides the lag); `failover()` promotes the replica and
  returns how many acknowledged commits it did not have (the data that async replication loses).

One bug-zoo variant lives here because it is about what a read sees: with `lost-update` in
`bugs`, account reads come from a view refreshed only by `refresh_reads()` (the sim calls it on
a short interval), so two units of work in one interval read the same balance and the second
write discards the first: a read-modify-write without a lock.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any, Literal

from reference_impl.core.journal import JournalEntry, JournalHead
from reference_impl.core.ledger import Account, LedgerChanges, StoredTransfer
from reference_impl.core.serial import evolve
from reference_impl.service.ports import (
    GroupMember,
    LoggedEvent,
    NewEvent,
    PartitionClaim,
    Store,
    UnitOfWork,
    partition_for,
)

Tables = dict[str, dict[Any, Any]]
WriteSet = list[tuple[str, Any, Any]]
Replication = Literal["none", "sync", "async"]

_MISSING = object()
_DELETED = object()
"""Written in place of a row to delete it: the row is gone once the write set is applied."""


def _empty_tables() -> Tables:
    return {}


def _apply(tables: Tables, writes: WriteSet) -> None:
    for table, key, value in writes:
        t = tables.get(table)
        if t is None:
            t = tables[table] = {}
        if value is _DELETED:
            t.pop(key, None)
        else:
            t[key] = value


def _copy(tables: Tables) -> Tables:
    return {name: dict(t) for name, t in tables.items()}


class MemoryStore(Store):
    def __init__(
        self,
        *,
        durable_commits: bool = True,
        replication: Replication = "none",
        url: str = "memory://",
        bugs: frozenset[str] = frozenset(),
    ) -> None:
        self.url = url
        self.bugs = bugs
        self._read_view: dict[Any, Any] | None = None
        self.durable_commits = durable_commits
        self.replication = replication
        self._lock = threading.RLock()
        self._live: Tables = _empty_tables()
        self._tracking = not durable_commits or replication != "none"
        # Commit log, kept only while something (durability or a replica) lags behind live.
        self._log: list[WriteSet] = []
        self._log_base = 0  # commit seq of self._log[0] minus one
        self._committed = 0
        self._durable_seq = 0
        self._replica_seq = 0
        self._durable: Tables = _empty_tables()
        self._replica: Tables = _empty_tables()
        self.replica_connected = True
        """A sync replica that cannot be reached gets nothing until `reconnect_replica()`."""

    # -- Store ----------------------------------------------------------------------------
    def unit_of_work(self) -> MemoryUnitOfWork:
        return MemoryUnitOfWork(self)

    def close(self) -> None:
        pass

    # -- failure model --------------------------------------------------------------------
    @property
    def committed_seq(self) -> int:
        return self._committed

    @property
    def durable_seq(self) -> int:
        return self._committed if not self._tracking or self.durable_commits else self._durable_seq

    @property
    def replica_seq(self) -> int:
        return self._replica_seq if self.replication != "none" else 0

    def sync(self) -> None:
        """Make every commit so far durable (an fsync)."""
        with self._lock:
            if self._tracking:
                self._durable_seq = self._advance(self._durable, self._durable_seq, self._committed)
                self._trim()

    def replicate(self, upto: int | None = None) -> None:
        """Ship write sets to the replica up to commit seq `upto` (all when None)."""
        with self._lock:
            if self.replication == "none":
                return
            target = self._committed if upto is None else min(upto, self._committed)
            self._replica_seq = self._advance(self._replica, self._replica_seq, target)
            self._trim()

    def reconnect_replica(self) -> None:
        """A sync replica is reachable again: it catches up with every commit it missed."""
        self.replica_connected = True
        self.replicate()

    def crash(self) -> int:
        """Lose what was not durable; returns how many commits were lost."""
        with self._lock:
            if not self._tracking or self.durable_commits:
                return 0
            lost = self._committed - self._durable_seq
            self._live = _copy(self._durable)
            self._reset_to(self._durable_seq)
            return lost

    def failover(self) -> int:
        """Promote the replica; returns how many acknowledged commits it did not have."""
        with self._lock:
            if self.replication == "none":
                raise RuntimeError("failover needs a replica: replication is 'none'")
            lost = self._committed - self._replica_seq
            self._live = _copy(self._replica)
            self._durable = _copy(self._replica)
            self._reset_to(self._replica_seq)
            return lost

    def _reset_to(self, seq: int) -> None:
        self.replica_connected = True
        self._committed = self._durable_seq = self._replica_seq = self._log_base = seq
        self._log = []
        self._durable = _copy(self._live) if not self.durable_commits else self._durable
        self._replica = _copy(self._live)

    def _advance(self, tables: Tables, at: int, target: int) -> int:
        for seq in range(at + 1, target + 1):
            _apply(tables, self._log[seq - self._log_base - 1])
        return max(at, target)

    def _trim(self) -> None:
        floor = self._committed
        if not self.durable_commits:
            floor = min(floor, self._durable_seq)
        if self.replication != "none":
            floor = min(floor, self._replica_seq)
        drop = floor - self._log_base
        if drop > 0:
            del self._log[:drop]
            self._log_base = floor

    def _commit(self, writes: WriteSet) -> None:
        _apply(self._live, writes)
        self._committed += 1
        if not self._tracking:
            return
        self._log.append(writes)
        if self.durable_commits:
            self._durable_seq = self._committed
        if self.replication == "sync" and self.replica_connected:
            self._replica_seq = self._advance(self._replica, self._replica_seq, self._committed)
        self._trim()

    def refresh_reads(self) -> None:
        """`lost-update`: the account balances reads see, as of now (a no-op without the bug)."""
        if "lost-update" in self.bugs:
            self._read_view = dict(self._live.get("accounts", {}))

    def table(self, name: str) -> dict[Any, Any]:
        """Committed rows of one table (read-only use: tests and the sim's exporters)."""
        return self._live.get(name, {})

    def records(self, kind: str) -> list[tuple[str, str, str]]:
        """Committed records of one kind as (tenant, key, value), ordered (for exporters)."""
        prefix = f"records/{kind}/"
        return sorted(
            (name[len(prefix) :], key, value)
            for name, rows in self._live.items()
            if name.startswith(prefix)
            for key, value in rows.items()
        )


class MemoryUnitOfWork(UnitOfWork):
    """Holds the store's lock from creation to commit/rollback: serialisable by construction."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        store._lock.acquire()
        self._open = True
        self._writes: dict[tuple[str, Any], Any] = {}
        self._order: WriteSet = []

    # -- generic rows ---------------------------------------------------------------------
    def get(self, table: str, key: Any, default: Any = None) -> Any:
        # The hottest call of the sim: most reads come before any write of the unit of work.
        if self._writes:
            value = self._writes.get((table, key), _MISSING)
            if value is not _MISSING:
                return default if value is _DELETED else value
        rows = self._store._live.get(table)
        return default if rows is None else rows.get(key, default)

    def put(self, table: str, key: Any, value: Any) -> None:
        self._writes[(table, key)] = value
        self._order.append((table, key, value))

    def scan(self, table: str) -> Iterator[tuple[Any, Any]]:
        """Every row of `table` as this unit of work sees it (committed rows + own writes)."""
        committed = self._store._live.get(table, {})
        if not self._writes:
            # Nothing else commits while this unit of work holds the lock, and its own writes
            # go to `_writes`: the committed rows stay as they are while the caller iterates.
            return iter(committed.items())
        merged = dict(committed)
        for (t, key), value in self._writes.items():
            if t == table:
                if value is _DELETED:
                    merged.pop(key, None)
                else:
                    merged[key] = value
        return iter(merged.items())

    # -- ledger ---------------------------------------------------------------------------
    def journal_head(self, tenant: str) -> JournalHead:
        head: JournalHead = self.get("heads", tenant, JournalHead())
        return head

    def get_accounts(self, tenant: str, ids: Collection[str]) -> dict[str, Account]:
        found = {}
        stale = self._store._read_view
        for i in ids:
            key = (tenant, i)
            acc = self.get("accounts", key)
            if stale is not None and key in stale and ("accounts", key) not in self._writes:
                acc = stale[key]
            if acc is not None:
                found[i] = acc
        return found

    def list_accounts(self, tenant: str) -> list[Account]:
        rows = [a for (t, _), a in self.scan("accounts") if t == tenant]
        return sorted(rows, key=lambda a: a.id)

    def insert_accounts(self, tenant: str, accounts: Sequence[Account]) -> None:
        for a in accounts:
            self.put("accounts", (tenant, a.id), a.copy())

    def get_transfers(self, tenant: str, ids: Collection[str]) -> dict[str, StoredTransfer]:
        found = {}
        for i in ids:
            t = self.get("transfers", (tenant, i))
            if t is not None:
                found[i] = t
        return found

    def write_ledger(self, tenant: str, changes: LedgerChanges) -> None:
        for acc in changes.accounts.values():
            self.put("accounts", (tenant, acc.id), acc)
        for t in changes.transfers:
            self.put("transfers", (tenant, t.id), t)
        for tid, state in changes.pending_states.items():
            stored = self.get("transfers", (tenant, tid))
            self.put("transfers", (tenant, tid), evolve(stored, pending_state=state))
        for e in changes.journal:
            self.put("journal", (tenant, e.seq), e)
        if changes.head is not None:
            self.put("heads", tenant, changes.head)

    def read_journal(self, tenant: str, after: int, limit: int) -> list[JournalEntry]:
        out: list[Any] = []
        seq = after + 1
        while len(out) < limit:
            e = self.get("journal", (tenant, seq))
            if e is None:
                break
            out.append(e)
            seq += 1
        return out

    # -- records --------------------------------------------------------------------------
    # One table per (kind, tenant), so listing one kind never scans another's rows.
    def get_record(self, kind: str, tenant: str, key: str) -> str | None:
        value: str | None = self.get(f"records/{kind}/{tenant}", key)
        return value

    def put_record(self, kind: str, tenant: str, key: str, value: str) -> None:
        self.put(f"records/{kind}/{tenant}", key, value)

    def insert_record_if_absent(self, kind: str, tenant: str, key: str, value: str) -> str | None:
        existing = self.get_record(kind, tenant, key)
        if existing is None:
            self.put_record(kind, tenant, key, value)
        return existing

    def list_records(
        self, kind: str, tenant: str, after_key: str = "", limit: int = 1000
    ) -> list[tuple[str, str]]:
        # Sort only the page: a sweep pages through every key, and sorting (key, value) pairs
        # of the whole table for each page was most of the idempotency purge's time.
        table = f"records/{kind}/{tenant}"
        rows = dict(self.scan(table)) if self._writes else self._store._live.get(table, {})
        return [(k, rows[k]) for k in heapq.nsmallest(limit, (k for k in rows if k > after_key))]

    def delete_records_if_unchanged(
        self, kind: str, tenant: str, values: Mapping[str, str]
    ) -> None:
        for key, value in values.items():
            if self.get_record(kind, tenant, key) == value:
                self.put(f"records/{kind}/{tenant}", key, _DELETED)

    # -- event log ------------------------------------------------------------------------
    def append_events(self, events: Sequence[NewEvent], partitions: int, at: float) -> None:
        for ev in events:
            head = (ev.topic, partition_for(ev.key, partitions))
            offset = self.get("event_heads", head, 0) + 1
            self.put("event_heads", head, offset)
            self.put(
                "events",
                (*head, offset),
                LoggedEvent(ev.topic, head[1], offset, ev.type, ev.key, ev.payload, at),
            )

    def read_events(self, topic: str, partition: int, after: int, limit: int) -> list[LoggedEvent]:
        # Consumers poll every partition they hold, from a unit of work that has written
        # nothing: then the committed rows are the answer, read without `get`'s checks.
        committed = None if self._writes else self._store._live.get("events", {})
        out: list[Any] = []
        offset = after + 1
        while len(out) < limit:
            key = (topic, partition, offset)
            ev = self.get("events", key) if committed is None else committed.get(key)
            if ev is None:
                break
            out.append(ev)
            offset += 1
        return out

    def log_heads(self, topic: str) -> dict[int, int]:
        return {p: offset for (t, p), offset in sorted(self.scan("event_heads")) if t == topic}

    def get_offset(self, group: str, topic: str, partition: int) -> int:
        if not self._writes:  # a fetch: see read_events
            committed = self._store._live.get("offsets")
            return committed.get((group, topic, partition), 0) if committed else 0
        offset: int = self.get("offsets", (group, topic, partition), 0)
        return offset

    def set_offset(self, group: str, topic: str, partition: int, offset: int) -> None:
        self.put("offsets", (group, topic, partition), offset)

    # -- consumer groups ------------------------------------------------------------------
    # Units of work are serialisable here (one lock), so neither lock needs more than that.
    def lock_group(self, group: str) -> None:
        pass

    def list_members(self, group: str) -> list[GroupMember]:
        return [m for (g, _), m in sorted(self.scan("members")) if g == group]

    def put_member(self, member: GroupMember) -> None:
        self.put("members", (member.group, member.member), member)

    def delete_members(self, group: str, members: Collection[str]) -> None:
        for m in members:
            self.put("members", (group, m), _DELETED)

    def list_claims(self, group: str) -> list[PartitionClaim]:
        return [c for (g, _), c in sorted(self.scan("claims")) if g == group]

    def put_claims(self, claims: Sequence[PartitionClaim]) -> None:
        for c in claims:
            self.put("claims", (c.group, c.partition), c)

    def fence_claims(self, group: str, partitions: Collection[int]) -> dict[int, PartitionClaim]:
        found = {}
        for p in partitions:
            claim = self.get("claims", (group, p))
            if claim is not None:
                found[p] = claim
        return found

    def list_groups(self) -> list[str]:
        groups = {
            key[0] for table in ("members", "claims", "offsets") for key, _ in self.scan(table)
        }
        return sorted(groups)

    # -- transaction ----------------------------------------------------------------------
    def commit(self) -> None:
        if not self._open:
            raise RuntimeError("unit of work already finished")
        try:
            if self._order:
                self._store._commit(self._order)
        finally:
            self._finish()

    def rollback(self) -> None:
        if self._open:
            self._finish()

    def _finish(self) -> None:
        self._open = False
        self._writes = {}
        self._order = []
        self._store._lock.release()
