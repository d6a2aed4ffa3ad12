"""The ports the service layer needs from a store: a unit of work and the store that opens one.

A unit of work is one atomic commit of state + outbox events + consumer offsets. Every store
(memory, sqlite, postgres) implements it and passes the same contract suite
(tests/contract). Reads inside a unit of work see its own uncommitted writes; `journal_head`
takes the tenant's write lock, so two units of work that both write one tenant's ledger are
serialised (no lost update, no double post, no fork of the hash chain).
"""

from __future__ import annotations

import abc
import zlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

from reference_impl.core.journal import JournalEntry, JournalHead
from reference_impl.core.ledger import Account, LedgerChanges, StoredTransfer


class StoreError(Exception):
    """Base of the store errors: the store's fault or the environment's, never the caller's."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or opened; the message names the URL."""


class InvalidStoreURL(StoreError, ValueError):
    """The store URL is malformed or names an unknown scheme; the message names the URL."""


class ConcurrentUpdate(StoreError):
    """A serialization conflict: the unit of work was rolled back and may be retried whole."""


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append to the log: `topic` says who reads it (a consumer group subscribes to
    topics), `key` picks the partition, so one key stays in order within its topic."""

    topic: str
    type: str
    key: str
    payload: str
    """JSON text; the log never interprets it."""


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    topic: str
    partition: int
    offset: int
    type: str
    key: str
    payload: str
    at: float


@dataclass(frozen=True, slots=True)
class GroupMember:
    """A live member of a consumer group, as the store keeps it (see service/groups.py)."""

    group: str
    member: str
    pid: int
    host: str
    joined_at: float
    heartbeat_at: float
    lease_expires: float
    """The member counts as gone once a heartbeat finds this in the past."""


@dataclass(frozen=True, slots=True)
class PartitionClaim:
    """Who owns one partition of a group's subscription, and since which epoch.

    Every move of a claim bumps its epoch, and a member commits only while the epochs it holds
    are current (fencing): a member that lost a partition can no longer commit on it.
    """

    group: str
    partition: int
    member: str
    """"" while nobody owns it."""
    epoch: int


class UnitOfWork(abc.ABC):
    """One transaction. Use as a context manager: leaving it without `commit()` rolls back."""

    def __enter__(self) -> UnitOfWork:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.rollback()

    # -- ledger ---------------------------------------------------------------------------
    @abc.abstractmethod
    def journal_head(self, tenant: str) -> JournalHead:
        """The tenant's journal head; takes the tenant's write lock until commit or rollback."""

    @abc.abstractmethod
    def get_accounts(self, tenant: str, ids: Collection[str]) -> dict[str, Account]:
        """The named accounts that exist (missing ids are absent from the result)."""

    @abc.abstractmethod
    def list_accounts(self, tenant: str) -> list[Account]:
        """All of the tenant's accounts, ordered by id."""

    @abc.abstractmethod
    def insert_accounts(self, tenant: str, accounts: Sequence[Account]) -> None:
        """Insert new accounts (the caller has checked that none exists)."""

    @abc.abstractmethod
    def get_transfers(self, tenant: str, ids: Collection[str]) -> dict[str, StoredTransfer]:
        """The named transfers that exist."""

    def lock_and_load(
        self, tenant: str, account_ids: Collection[str], transfer_ids: Collection[str]
    ) -> tuple[JournalHead, dict[str, Account], dict[str, StoredTransfer]]:
        """`journal_head`, then `get_accounts` and `get_transfers` read under its lock.

        A store may send the three at once (the reads still run after the lock is taken): a
        batch's reads then cost one round trip instead of three.
        """
        head = self.journal_head(tenant)
        accounts = self.get_accounts(tenant, account_ids)
        return head, accounts, self.get_transfers(tenant, transfer_ids)

    @abc.abstractmethod
    def write_ledger(self, tenant: str, changes: LedgerChanges) -> None:
        """Write a batch's changes: account balances, new transfers, pending states, journal."""

    @abc.abstractmethod
    def read_journal(self, tenant: str, after: int, limit: int) -> list[JournalEntry]:
        """Journal entries with seq > after, in order, at most `limit`."""

    # -- records: the saga's, the gateway's and settlement's own state ---------------------
    @abc.abstractmethod
    def get_record(self, kind: str, tenant: str, key: str) -> str | None:
        """The JSON text stored under (kind, tenant, key), or None."""

    @abc.abstractmethod
    def put_record(self, kind: str, tenant: str, key: str, value: str) -> None:
        """Insert or replace the record."""

    @abc.abstractmethod
    def insert_record_if_absent(self, kind: str, tenant: str, key: str, value: str) -> str | None:
        """Insert unless the key exists; returns the existing value (None when inserted).

        Two concurrent inserts of one key: exactly one inserts, the other gets its value.
        """

    @abc.abstractmethod
    def list_records(
        self, kind: str, tenant: str, after_key: str = "", limit: int = 1000
    ) -> list[tuple[str, str]]:
        """(key, value) pairs of one kind and tenant with key > after_key, ordered by key."""

    @abc.abstractmethod
    def delete_records_if_unchanged(
        self, kind: str, tenant: str, values: Mapping[str, str]
    ) -> None:
        """Delete each record of `values` (key -> value) whose value is still exactly that.

        A record rewritten since it was read stays: a sweep that read an expired record never
        deletes the fresh one a concurrent request put in its place.
        """

    # -- event log ------------------------------------------------------------------------
    @abc.abstractmethod
    def append_events(self, events: Sequence[NewEvent], partitions: int, at: float) -> None:
        """Append to the outbox; each event goes to its topic's partition
        `partition_for(key, partitions)`, with the next offset of that (topic, partition)."""

    @abc.abstractmethod
    def read_events(self, topic: str, partition: int, after: int, limit: int) -> list[LoggedEvent]:
        """Events of one topic partition with offset > after, in order, at most `limit`."""

    @abc.abstractmethod
    def log_heads(self, topic: str) -> dict[int, int]:
        """The last offset of each partition of `topic` that has events."""

    @abc.abstractmethod
    def get_offset(self, group: str, topic: str, partition: int) -> int:
        """The group's committed offset in a topic partition (0 before the first event)."""

    @abc.abstractmethod
    def set_offset(self, group: str, topic: str, partition: int, offset: int) -> None: ...

    # -- consumer groups: membership and partition claims (service/groups.py) --------------
    @abc.abstractmethod
    def lock_group(self, group: str) -> None:
        """Serialise membership changes of `group` until commit or rollback."""

    @abc.abstractmethod
    def list_members(self, group: str) -> list[GroupMember]:
        """The group's members, ordered by member id."""

    @abc.abstractmethod
    def put_member(self, member: GroupMember) -> None:
        """Insert or replace the member."""

    @abc.abstractmethod
    def delete_members(self, group: str, members: Collection[str]) -> None: ...

    @abc.abstractmethod
    def list_claims(self, group: str) -> list[PartitionClaim]:
        """The group's partition claims, ordered by partition."""

    @abc.abstractmethod
    def put_claims(self, claims: Sequence[PartitionClaim]) -> None:
        """Insert or replace each claim."""

    @abc.abstractmethod
    def fence_claims(self, group: str, partitions: Collection[int]) -> dict[int, PartitionClaim]:
        """The claims of `partitions` (missing ones absent), which no other unit of work may
        change until this one ends: the read that fences a commit (see service/groups.py)."""

    @abc.abstractmethod
    def list_groups(self) -> list[str]:
        """Every group that has members, claims or committed offsets, ordered."""

    # -- transaction ----------------------------------------------------------------------
    @abc.abstractmethod
    def commit(self) -> None: ...

    @abc.abstractmethod
    def rollback(self) -> None:
        """Discard uncommitted writes and release locks; a no-op after commit."""


class Store(abc.ABC):
    """A database: opens units of work. Creating a Store must not connect at import time."""

    url: str
    serial: bool = False
    """True when this process runs the store's units of work one at a time (one store-wide
    lock): several threads gain nothing over one, so the gateway uses one (api/store_thread.py)."""

    @abc.abstractmethod
    def unit_of_work(self) -> UnitOfWork: ...

    @abc.abstractmethod
    def close(self) -> None: ...


SCHEMA_VERSION = 2
"""The SQL stores' table layout; a database of another version is refused, not migrated."""


class SchemaMismatch(StoreUnavailable):
    """The database was created by another version of the testbed; the message says which."""


def partition_for(key: str, partitions: int) -> int:
    """The event-log partition of `key`: stable across processes and stores (CRC-32)."""
    return zlib.crc32(key.encode()) % partitions


class Clock(Protocol):
    """Time as seconds; wall time in the real processes, simulated time in the sim."""

    def now(self) -> float: ...
