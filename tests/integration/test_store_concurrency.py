"""Many writers against one tenant: the stores must keep the ledger invariants under contention.

Threads (and, for the SQL stores, spawned processes that open their own store from the URL)
submit overlapping batches to one tenant with few accounts: the same transfer ids from several
writers, pending transfers that one writer posts while another voids them, linked pairs, and
amounts large enough to hit insufficient funds. Then the journal and the balances are checked
from the outside: each transfer once, each pending transfer settled at most once, no overdraft
at any point of the journal, debits equal credits, balances equal a replay, the chain verifies.
"""

from __future__ import annotations

import multiprocessing
import random
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from reference_impl.adapters import open_store
from reference_impl.core.journal import first_broken_link
from reference_impl.core.ledger import (
    Account,
    AccountResult,
    PendingState,
    Transfer,
    TransferKind,
    TransferResult,
)
from reference_impl.service.ledger import create_accounts, read_journal, submit_transfers
from reference_impl.service.ports import ConcurrentUpdate, NewEvent, Store, partition_for

TENANT = "acme"
ACCOUNTS = ["a0", "a1", "a2", "a3"]
START_BALANCE = 1_000
POOL = 40  # transfer ids per family: small, so writers collide on them
Outcome = tuple[str, str]  # (transfer id, result code)


def _pair(rng: random.Random) -> tuple[str, str]:
    debit, credit = rng.sample(ACCOUNTS, 2)
    return debit, credit


def _op(rng: random.Random) -> list[Transfer]:
    """One operation; its content is a function of its id, so a repeat is an identical resubmit."""
    family = rng.choice("tppsl")
    k = rng.randrange(POOL)
    content = random.Random(f"{family}{k}")
    if family == "t":
        debit, credit = _pair(content)
        return [Transfer(f"t{k}", debit, credit, content.randint(1, 400), "EUR")]
    if family == "p":
        debit, credit = _pair(content)
        return [
            Transfer(f"p{k}", debit, credit, content.randint(1, 300), "EUR", TransferKind.PENDING)
        ]
    if family == "s":  # second phase: post and void race for the same pending transfer
        if rng.random() < 0.5:
            return [Transfer(f"post-p{k}", kind=TransferKind.POST_PENDING, pending_id=f"p{k}")]
        return [Transfer(f"void-p{k}", kind=TransferKind.VOID, pending_id=f"p{k}")]
    first, second = _pair(content), _pair(content)
    amount = content.randint(1, 300)
    return [
        Transfer(f"l{k}a", *first, amount, "EUR", linked=True),
        Transfer(f"l{k}b", *second, amount, "EUR"),
    ]


def hammer(store: Store, seed: int, rounds: int) -> list[Outcome]:
    """Submit `rounds` batches of 1-3 operations; retry a batch whole on ConcurrentUpdate."""
    rng = random.Random(seed)
    outcomes: list[Outcome] = []
    for n in range(rounds):
        batch = [t for _ in range(rng.randint(1, 3)) for t in _op(rng)]
        for _attempt in range(100):
            try:
                codes = submit_transfers(store, TENANT, batch, seed * 1000.0 + n)
                break
            except ConcurrentUpdate:
                continue
        else:
            raise AssertionError(f"batch {n} of seed {seed} kept conflicting")
        outcomes += [(t.id, c.value) for t, c in zip(batch, codes, strict=True)]
    return outcomes


def hammer_in_threads(store: Store, seeds: list[int], rounds: int) -> list[Outcome]:
    with ThreadPoolExecutor(len(seeds)) as pool:
        results = list(pool.map(lambda s: hammer(store, s, rounds), seeds))
    return [o for r in results for o in r]


def hammer_process(url: str, seeds: list[int], rounds: int, start: Any, out: Any) -> None:
    """A spawned process: its own store from the URL, a thread per seed, outcomes to `out`."""
    store = open_store(url)
    try:
        start.wait()
        out.put(hammer_in_threads(store, seeds, rounds))
    finally:
        store.close()


def setup_ledger(store: Store) -> None:
    accounts = [Account("mint", "EUR", overdraft=True)] + [Account(a, "EUR") for a in ACCOUNTS]
    assert set(create_accounts(store, TENANT, accounts)) == {AccountResult.OK}
    funding = [Transfer(f"fund-{a}", "mint", a, START_BALANCE, "EUR") for a in ACCOUNTS]
    assert set(submit_transfers(store, TENANT, funding, 0.0)) == {TransferResult.OK}


def run_hammer(
    store: Store, url: str | None, threads: int, processes: int, rounds: int
) -> list[Outcome]:
    """`threads` writers here, and `processes` spawned processes of two writers each."""
    if not processes or url is None:
        return hammer_in_threads(store, list(range(threads)), rounds)
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(processes + 1)
    out = ctx.Queue()
    procs = [
        ctx.Process(
            target=hammer_process,
            args=(url, [100 + 2 * i, 101 + 2 * i], rounds, start, out),
        )
        for i in range(processes)
    ]
    for p in procs:
        p.start()
    start.wait(timeout=60)  # everyone starts together, so the writers really overlap
    outcomes = hammer_in_threads(store, list(range(threads)), rounds)
    for _ in procs:
        outcomes += out.get(timeout=60)
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    return outcomes


def check_invariants(store: Store, outcomes: list[Outcome]) -> None:
    entries = read_journal(store, TENANT, 0, 1_000_000)
    assert first_broken_link(entries) == 0
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))

    ids = [e.transfer_id for e in entries]
    assert len(ids) == len(set(ids)), "a transfer id is in the journal twice"
    ok = Counter(i for i, code in outcomes if code == "ok")
    assert max(ok.values()) == 1, "two writers were both told 'ok' for one transfer id"
    assert set(ok) == set(ids) - {f"fund-{a}" for a in ACCOUNTS}

    with store.unit_of_work() as uow:
        stored = uow.get_transfers(TENANT, ids)
        final = {a.id: a for a in uow.list_accounts(TENANT)}
    settled = Counter(stored[i].pending_id for i in ids if stored[i].pending_id)
    assert max(settled.values(), default=0) <= 1, "a pending transfer was posted or voided twice"
    for i in ids:
        t = stored[i]
        if t.kind is TransferKind.PENDING:
            second = {stored[j].kind for j in ids if stored[j].pending_id == i}
            expected = {
                frozenset(): PendingState.PENDING,
                frozenset({TransferKind.POST_PENDING}): PendingState.POSTED,
                frozenset({TransferKind.VOID}): PendingState.VOIDED,
            }[frozenset(second)]
            assert t.pending_state is expected

    replay = {a: Account(a, "EUR", a == "mint") for a in final}
    for e in entries:
        t = stored[e.transfer_id]
        debit, credit = replay[e.debit_account], replay[e.credit_account]
        if e.kind in ("post_pending", "void"):
            reserved = stored[t.pending_id].amount
            debit.debits_pending -= reserved
            credit.credits_pending -= reserved
        if e.kind == "pending":
            debit.debits_pending += e.amount
            credit.credits_pending += e.amount
        elif e.kind != "void":
            debit.debits_posted += e.amount
            credit.credits_posted += e.amount
        for acc in (debit, credit):
            if not acc.overdraft:
                assert acc.debits_posted + acc.debits_pending <= acc.credits_posted, (
                    f"{acc.id} overdrawn at journal seq {e.seq}"
                )
    assert final == replay, "balances differ from a replay of the journal"
    assert sum(a.debits_posted for a in final.values()) == sum(
        a.credits_posted for a in final.values()
    )
    assert sum(a.debits_pending for a in final.values()) == sum(
        a.credits_pending for a in final.values()
    )

    # The workload must really have raced, or the checks above prove little.
    codes = Counter(code for _, code in outcomes)
    assert codes["exists"] > 0
    assert codes["pending_already_posted"] + codes["pending_already_voided"] > 0
    assert codes["insufficient_funds"] + codes["linked_event_failed"] > 0


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_and_url(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Store, str | None]]:
    if request.param == "memory":
        yield open_store("memory://"), None
        return
    url = (
        f"sqlite:///{tmp_path}/ledger.db"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    store = open_store(url)
    yield store, url
    store.close()


def test_contended_transfers_keep_the_ledger_invariants(
    store_and_url: tuple[Store, str | None],
) -> None:
    store, url = store_and_url
    setup_ledger(store)
    threads, processes, rounds = 6, 2, 100
    outcomes = run_hammer(store, url, threads, processes, rounds)
    writers = threads + (2 * processes if url else 0)
    assert len(outcomes) >= writers * rounds  # every writer, spawned ones too, reported back
    check_invariants(store, outcomes)


def test_concurrent_insert_record_if_absent_has_one_winner_per_key(
    store_and_url: tuple[Store, str | None],
) -> None:
    store, _ = store_and_url
    keys = [f"idem-{i}" for i in range(5)]
    barrier = threading.Barrier(8)

    def claim(writer: int) -> list[tuple[str, str | None]]:
        barrier.wait()
        seen = []
        for key in keys:
            with store.unit_of_work() as uow:
                seen.append((key, uow.insert_record_if_absent("idem", TENANT, key, f"w{writer}")))
                uow.commit()
        return seen

    with ThreadPoolExecutor(8) as pool:
        results = [r for rs in pool.map(claim, range(8)) for r in rs]
    with store.unit_of_work() as uow:
        winners = dict(uow.list_records("idem", TENANT))
    for key in keys:
        answers = [value for k, value in results if k == key]
        assert answers.count(None) == 1, f"{key}: not exactly one insert"
        assert {v for v in answers if v is not None} == {winners[key]}


def test_concurrent_appends_keep_offsets_gapless(
    store_and_url: tuple[Store, str | None],
) -> None:
    store, _ = store_and_url
    partitions, writers, rounds = 3, 6, 20

    def append(writer: int) -> None:
        for n in range(rounds):
            events = [NewEvent("t", "E", f"w{writer}-{n}-{j}", "{}") for j in range(3)]
            with store.unit_of_work() as uow:
                uow.append_events(events, partitions, float(n))
                uow.commit()

    with ThreadPoolExecutor(writers) as pool:
        list(pool.map(append, range(writers)))
    with store.unit_of_work() as uow:
        logged = {p: uow.read_events("t", p, 0, 10_000) for p in range(partitions)}
    total = 0
    for p, events in logged.items():
        assert [e.offset for e in events] == list(range(1, len(events) + 1))
        assert all(partition_for(e.key, partitions) == p for e in events)
        for writer in range(writers):  # one writer's commits keep their order in a partition
            mine = [e.key for e in events if e.key.startswith(f"w{writer}-")]
            assert mine == sorted(mine, key=lambda k: [int(x) for x in k[1:].split("-")])
        total += len(events)
    assert total == writers * rounds * 3
