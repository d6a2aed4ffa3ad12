"""Consumer-group claims under real concurrency: threads and processes race, SQLite and PostgreSQL.

Two guarantees the consumer engine rests on (service/groups.py):
- of members racing for the one claim of an exclusive group, exactly one wins: one may be told
  it holds the claim and lose it to a later joiner at once, but then at an older epoch, so
  exactly one of them can still commit under what it was told (passes the fence check);
- a zombie's commit and the rebalance that takes its partition serialise: if the zombie's commit
  passed its fence check, the new owner reads the offset it committed (the claim could not move
  between the check and the commit); otherwise the zombie was fenced and committed nothing.
"""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from reference_impl.adapters import open_store
from reference_impl.service import groups
from reference_impl.service.groups import Fenced, Identity
from reference_impl.service.ports import ConcurrentUpdate, Store

GROUP = "g"


def _join(store: Store, member: str, now: float) -> dict[int, int]:
    for _ in range(100):
        try:
            with store.unit_of_work() as uow:
                held = groups.heartbeat(uow, GROUP, 1, Identity(member), now, 10.0, True)
                uow.commit()
            return held
        except ConcurrentUpdate:
            continue
    raise AssertionError("heartbeat kept conflicting")


def _join_in_process(url: str, member: str, barrier: Any) -> dict[int, int]:
    store = open_store(url)
    try:
        barrier.wait(30)
        return _join(store, member, 0.0)
    finally:
        store.close()


def _owners(store: Store) -> list[str]:
    with store.unit_of_work() as uow:
        return [c.member for c in uow.list_claims(GROUP)]


def _can_commit(store: Store, results: dict[str, dict[int, int]]) -> list[str]:
    """The members whose claims (as their heartbeat told them) pass the fence check now."""
    passed = []
    for member, held in sorted(results.items()):
        if not held:
            continue
        with store.unit_of_work() as uow:
            try:
                groups.check_fence(uow, GROUP, member, held)
            except Fenced:
                continue
            passed.append(member)
    return passed


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/claims.db"
    else:
        yield request.getfixturevalue("postgres_url")


def test_threads_racing_for_one_claim_exactly_one_wins(url: str) -> None:
    store = open_store(url)
    barrier = threading.Barrier(6)

    def race(n: int) -> dict[int, int]:
        barrier.wait(30)
        return _join(store, f"m{n}", 0.0)

    try:
        with ThreadPoolExecutor(6) as pool:
            results = dict(zip([f"m{n}" for n in range(6)], pool.map(race, range(6)), strict=True))
        winners = _can_commit(store, results)
        assert len(winners) == 1
        assert _owners(store) == winners
    finally:
        store.close()


def test_processes_racing_for_one_claim_exactly_one_wins(url: str) -> None:
    open_store(url).close()  # create the tables before the race
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(3)
        with ctx.Pool(3) as pool:
            joined = pool.starmap(_join_in_process, [(url, f"p{n}", barrier) for n in range(3)])
    results = dict(zip([f"p{n}" for n in range(3)], joined, strict=True))
    store = open_store(url)
    try:
        winners = _can_commit(store, results)
        assert len(winners) == 1
        assert _owners(store) == winners
    finally:
        store.close()


def _race_zombie_and_rebalance(store: Store, group: str, rng: random.Random) -> dict[str, Any]:
    """A zombie commits an offset under its old claim while a new member takes the claim."""
    with store.unit_of_work() as uow:
        held = groups.heartbeat(uow, group, 1, Identity("zombie"), 0.0, 1.0)
        uow.commit()
    seen: dict[str, Any] = {}

    def zombie() -> None:
        try:
            with store.unit_of_work() as uow:
                uow.set_offset(group, "t", 0, 1)
                time.sleep(rng.uniform(0, 0.02))
                groups.check_fence(uow, group, "zombie", held)
                time.sleep(rng.uniform(0, 0.02))
                uow.commit()
            seen["zombie"] = "committed"
        except Fenced:
            seen["zombie"] = "fenced"

    def rebalance() -> None:
        time.sleep(rng.uniform(0, 0.02))
        for _ in range(100):
            try:
                with store.unit_of_work() as uow:
                    seen["taken"] = groups.heartbeat(uow, group, 1, Identity("new"), 5.0, 1.0)
                    uow.commit()
                break
            except ConcurrentUpdate:
                continue
        with store.unit_of_work() as uow:
            seen["offset"] = uow.get_offset(group, "t", 0)

    threads = [threading.Thread(target=zombie), threading.Thread(target=rebalance)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return seen


def test_a_zombie_commit_and_the_rebalance_that_fences_it_serialise(url: str) -> None:
    store = open_store(url)
    rng = random.Random(7)
    try:
        for round_ in range(12):
            seen = _race_zombie_and_rebalance(store, f"g{round_}", rng)
            assert seen["taken"] == {0: 2}
            if seen["zombie"] == "committed":
                assert seen["offset"] == 1, "the claim moved between the fence check and commit"
            else:
                assert seen["zombie"] == "fenced" and seen["offset"] == 0
    finally:
        store.close()


@pytest.mark.postgres
@pytest.mark.timeout(120)
def test_a_silent_client_mid_transaction_loses_its_group_lock_to_the_server(
    postgres_url: str,
) -> None:
    """A worker stopped between two statements of a unit of work (SIGSTOP, a frozen VM) must not
    hold the group's lock and its fenced claims for as long as it is stopped: the server ends
    its session after the idle-in-transaction timeout and another member's heartbeat goes on.
    (In pipeline mode the server arms that timeout only after a Sync: a read that only flushed
    left the session 'active' and the lock held for good.)"""
    from reference_impl.adapters.postgres import IDLE_IN_TRANSACTION_TIMEOUT_MS

    store = open_store(postgres_url)
    other = open_store(postgres_url)
    try:
        _join(store, "a", 0.0)
        stalled = store.unit_of_work()
        stalled.lock_group(GROUP)
        stalled.fence_claims(GROUP, [0])
        # The stalled unit of work now sends nothing more, as a stopped process would.
        started = time.monotonic()
        _join(other, "b", 100.0)  # blocks on the group's lock until the server frees it
        waited = time.monotonic() - started
        assert waited >= IDLE_IN_TRANSACTION_TIMEOUT_MS / 1000 * 0.5
        assert _owners(other) == ["b"]  # a's lease (10 s from 0) had expired at 100
        stalled.rollback()
    finally:
        store.close()
        other.close()
