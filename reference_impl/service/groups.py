"""Consumer-group coordination kept in the store: membership, partition claims, fencing.

Kafka's group coordinator and Axon's token claims, reduced to what a store can hold, so it runs
on memory, SQLite and PostgreSQL alike and needs no broker:

- A member is a row (id, pid, host, joined_at, last heartbeat, lease expiry). Its heartbeat
  renews the lease and, in the same unit of work, recomputes the group's assignment.
- A partition claim is a row (partition, member, epoch). The assignment gives partitions to the
  live members (contiguous ranges over members ordered by id, like Kafka's RangeAssignor; an
  exclusive group gives every partition to its oldest member, the others stand by). Every claim
  that changes hands gets epoch + 1.
- A member is gone when a heartbeat (anyone's) finds its lease expired, or when it leaves.
  Either way its partitions move at once to the members that are left.
- Fencing: a member commits effects and offsets only together with `check_fence`, in the same
  unit of work, which reads the claims it believes it holds under a lock that keeps them from
  moving until the commit. A member that lost a claim (paused past its lease: a zombie) fails
  that check and commits nothing; it learns its new assignment at its next heartbeat.

Membership changes of one group are serialised by `lock_group`. Leases are compared with the
members' own clocks, so those clocks must agree to well within a lease (one host, or NTP).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from reference_impl.service.ports import GroupMember, PartitionClaim, UnitOfWork


class Fenced(Exception):
    """A commit refused because the member no longer holds the claims it worked under."""

    def __init__(self, group: str, partitions: Sequence[int]) -> None:
        super().__init__(group, list(partitions))  # rebuildable from its args, as SimPy does
        self.group = group
        self.partitions = list(partitions)

    def __str__(self) -> str:
        return f"{self.group}: partitions {self.partitions} moved to another member"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a member is: a unique id per incarnation, and where it runs (for `testbed groups`)."""

    member: str
    pid: int = 0
    host: str = ""


def assign(partitions: int, members: Sequence[GroupMember], exclusive: bool) -> list[str]:
    """The owner of each partition ("" when there is no member)."""
    if not members:
        return [""] * partitions
    if exclusive:
        oldest = min(members, key=lambda m: (m.joined_at, m.member))
        return [oldest.member] * partitions
    ids = sorted(m.member for m in members)
    return [ids[p * len(ids) // partitions] for p in range(partitions)]


def _reassign(
    uow: UnitOfWork, group: str, partitions: int, live: Sequence[GroupMember], exclusive: bool
) -> dict[int, PartitionClaim]:
    """Write the claims the assignment over `live` changes; returns every claim."""
    claims = {c.partition: c for c in uow.list_claims(group)}
    changed = []
    for p, owner in enumerate(assign(partitions, live, exclusive)):
        current = claims.get(p)
        if current is None or current.member != owner:
            claims[p] = PartitionClaim(group, p, owner, (current.epoch if current else 0) + 1)
            changed.append(claims[p])
    uow.put_claims(changed)
    return claims


def heartbeat(
    uow: UnitOfWork,
    group: str,
    partitions: int,
    me: Identity,
    now: float,
    session_timeout: float,
    exclusive: bool = False,
) -> dict[int, int]:
    """Renew `me`'s lease (joining if needed), expire the others' and rebalance.

    Returns the partitions `me` now holds, with their epochs.
    """
    uow.lock_group(group)
    members = {m.member: m for m in uow.list_members(group)}
    mine = members.get(me.member)
    members[me.member] = GroupMember(
        group,
        me.member,
        me.pid,
        me.host,
        mine.joined_at if mine is not None else now,
        now,
        now + session_timeout,
    )
    uow.put_member(members[me.member])
    expired = [m for m in members.values() if m.lease_expires <= now]
    uow.delete_members(group, [m.member for m in expired])
    live = [m for m in members.values() if m.lease_expires > now]
    claims = _reassign(uow, group, partitions, live, exclusive)
    return {p: c.epoch for p, c in claims.items() if c.member == me.member and p < partitions}


def leave(
    uow: UnitOfWork, group: str, partitions: int, member: str, now: float, exclusive: bool = False
) -> None:
    """`member` leaves: its partitions move to the live members at once."""
    uow.lock_group(group)
    uow.delete_members(group, [member])
    live = [m for m in uow.list_members(group) if m.member != member and m.lease_expires > now]
    _reassign(uow, group, partitions, live, exclusive)


def revoke_all(uow: UnitOfWork, group: str) -> int:
    """Every claim of `group` moves to nobody and every member must rejoin (a forced rebalance,
    as a coordinator failover or a group-wide restart causes); returns the claims revoked."""
    uow.lock_group(group)
    uow.delete_members(group, [m.member for m in uow.list_members(group)])
    claims = uow.list_claims(group)
    uow.put_claims([PartitionClaim(group, c.partition, "", c.epoch + 1) for c in claims])
    return len(claims)


def check_fence(uow: UnitOfWork, group: str, member: str, held: Mapping[int, int]) -> None:
    """Raise Fenced unless `member` still holds every partition of `held` at its epoch.

    Call it in the unit of work that commits the effects, last before the commit: the claims
    stay locked from this read to the commit.
    """
    current = uow.fence_claims(group, held.keys())
    moved = [
        p
        for p, epoch in sorted(held.items())
        if (c := current.get(p)) is None or c.member != member or c.epoch != epoch
    ]
    if moved:
        raise Fenced(group, moved)


@dataclass(frozen=True, slots=True)
class PartitionState:
    """One partition of a group as `testbed groups` shows it."""

    partition: int
    member: str
    epoch: int
    lag: dict[str, int]
    """Per topic: events after the group's committed offset."""


@dataclass(frozen=True, slots=True)
class GroupState:
    group: str
    members: list[GroupMember]
    partitions: list[PartitionState]


def describe(uow: UnitOfWork, group: str, topics: Sequence[str], partitions: int) -> GroupState:
    """Members, claims, epochs and lag of one group (like kafka-consumer-groups --describe)."""
    claims = {c.partition: c for c in uow.list_claims(group)}
    heads = {t: uow.log_heads(t) for t in topics}
    rows = []
    for p in range(max(partitions, len(claims))):
        claim = claims.get(p)
        lag = {t: max(0, heads[t].get(p, 0) - uow.get_offset(group, t, p)) for t in topics}
        rows.append(
            PartitionState(p, claim.member if claim else "", claim.epoch if claim else 0, lag)
        )
    return GroupState(group, uow.list_members(group), rows)
