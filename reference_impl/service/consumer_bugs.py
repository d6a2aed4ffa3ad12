"""The bug zoo's consumer variants, as strategies of the one consumer engine.

Each replaces how the engine commits (service/consumer.py `Commit` and `Compensation`), so
both runtimes run the same broken code when a scenario selects the bug, and the correct path
keeps no branch for it:

- `commit-offset-before-effect`: the offsets commit in one unit of work, the effects in a later
  one after the work; a crash between loses the effects for good, since nothing delivers those
  events again.
- `non-idempotent-consumer` (with the service's unkeyed effects): the effects commit first, the
  offsets in a later unit of work; a crash or a failure between delivers the events again.
- `double-compensation` (with the service's unguarded, unkeyed `fail_payment`): the give-up
  action commits on its own, neither fenced nor with the offset past the event, which moves in a
  later unit of work, and a compensation whose answer is lost is sent again as it is, until
  acknowledged. If the partition moved meanwhile (a rebalance, a pause past the lease), or the
  consumer failed between the two commits, the event is delivered again, fails again and is
  compensated again; the second run finds the reservation voided and refunds the debtor.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

from reference_impl.service.consumer import (
    Batch,
    Commit,
    Compensation,
    Member,
    Part,
    StepRun,
    Write,
)
from reference_impl.service.ports import LoggedEvent

log = logging.getLogger(__name__)


def commit_offsets_first(member: Member, batch: Batch, held: Mapping[int, int]) -> StepRun:
    try:
        yield Write(lambda uow: member.apply(uow, batch, held, effects=False))
    except Exception as e:
        member.failed(batch, e)
        return
    yield batch.work(member.spec.name)
    try:
        emitted = yield Write(
            lambda uow: member.handle(uow, batch.handled, member.clock.now()), len(batch.handled)
        )
    except Exception as e:  # the bug: the offsets are past these events; nobody applies them
        log.error("%s: effects lost after their offsets committed: %r", member.spec.name, e)
        return
    member.committed(batch, emitted)


def commit_effects_first(member: Member, batch: Batch, held: Mapping[int, int]) -> StepRun:
    yield batch.work(member.spec.name)
    try:
        emitted = yield Write(
            lambda uow: member.apply(uow, batch, held, offsets=False), len(batch.handled)
        )
    except Exception as e:
        member.failed(batch, e)
        return
    member.committed(batch, emitted)
    try:  # the bug: a failure here leaves the offsets behind effects already applied
        yield Write(lambda uow: member.apply(uow, batch, held, effects=False))
    except Exception as e:
        member.failed(None, e)


def compensate_apart(
    member: Member,
    key: tuple[str, int],
    event: LoggedEvent,
    reason: str,
    held: Mapping[int, int],
    failures: int = 0,
) -> StepRun:
    give_up = member.give_up
    assert give_up is not None
    try:  # the bug: neither fenced nor with the offset, and blind to what happened before
        emitted = yield Write(lambda uow: give_up(uow, event, reason, member.clock.now()))
    except Exception as e:
        if member.classify(e) != "unavailable":
            member.failed(None, e)
            return
        # No answer is taken to mean "not done": sent again as it is, until acknowledged.
        if key in member.suspects:
            member.suspects[key].retry_at = math.inf
        member.later(
            member.spec.retry.delay(failures + 1),
            "compensate",
            lambda: compensate_apart(member, key, event, reason, held, failures + 1),
        )
        return
    if emitted:
        member.on_commit(emitted)
    try:  # only now past the event: until this commits, the event can be delivered again
        yield Write(lambda uow: member.apply(uow, _past(event), held, effects=False))
    except Exception as e:
        member.failed(None, e)
        return
    member.compensated(key, event, ())


def _past(event: LoggedEvent) -> Batch:
    """A batch of the one event, with nothing to handle: applying it moves the offset."""
    return Batch((Part(event.topic, event.partition, event.offset - 1, (event,)),), (), 1)


def strategies(bugs: frozenset[str]) -> tuple[Commit | None, Compensation | None]:
    """The commit and compensation strategies the selected bugs replace (None: the correct one)."""
    commit: Commit | None = None
    if "commit-offset-before-effect" in bugs:
        commit = commit_offsets_first
    elif "non-idempotent-consumer" in bugs:
        commit = commit_effects_first
    compensation = compensate_apart if "double-compensation" in bugs else None
    return commit, compensation
