"""Store throughput: transfers/s per store and batch size, each against a baseline of the same run.

`python -m reference_impl.bench [--seconds S] [--postgres URL] [--skip-postgres]`

Every number is measured in this run, and every target is a ratio to a baseline measured in the
same run on the same machine, so the verdicts mean the same on any machine:

- memory and SQLite against their floors (reference_impl/bench_floors.py): the least a
  hash-chained double-entry ledger must do for the same transfers, in plain Python dicts and in
  raw sqlite3 with the store's durability (WAL, synchronous=FULL);
- PostgreSQL against `pgbench -b tpcb-like` run on the same server (scale 10, 8 clients).

Each cell submits single-phase transfers between random overdraft accounts (nothing is refused)
through `service.ledger.submit_transfers`, one unit of work per batch, from one client thread,
except the "8 clients" row: 8 spawned processes (each its own store and connection) drive one
transfer per transaction, as pgbench drives 8 clients, over 10 tenants as pgbench's scale 10 has
10 branches, and the row is their aggregate throughput over one shared wall-clock window (every
transfer committed inside it, divided by its length); it also prints the CPU (user + system)
its client processes spent per transaction, which bounds it on a machine with few cores. Exit
code 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reference_impl.adapters import open_store
from reference_impl.bench_floors import Batches, plain_memory, plain_sqlite
from reference_impl.core.ledger import Account, Transfer, TransferResult
from reference_impl.service.ledger import create_accounts, submit_transfers
from reference_impl.service.ports import Store

BATCH_SIZES = (1, 10, 100, 1000)
ACCOUNTS = 1000
TENANTS = 10  # as pgbench's 10 branches at scale 10
CLIENTS = 8
PGBENCH_DB = "testbed_pgbench"
MEMORY_RATIO_TARGET = 0.25
"""The in-memory ledger at batch 1000 within 4x of the plain-Python floor's cost per transfer."""
SQLITE_RATIO_TARGET = 0.5
"""SQLite at batch 1000 within 2x of raw sqlite3 doing the same durable writes."""
ONE_PER_TXN_RATIO_TARGET = 0.5
BATCHED_RATIO_TARGET = 3.0


@dataclass(frozen=True, slots=True)
class Cell:
    store: str
    clients: int
    batch: int
    transfers_per_s: float
    client_cpu_ms: float | None = None
    """For the CLIENTS row: the CPU (user + system) a client process spent per transaction."""


def _setup(store: Store, tenants: int) -> None:
    accounts = [Account(f"acc-{i}", "EUR", overdraft=True) for i in range(ACCOUNTS)]
    for t in range(tenants):
        create_accounts(store, f"tenant-{t}", accounts)


def _batch(rng: random.Random, prefix: str, n: int, size: int) -> list[Transfer]:
    out = []
    for j in range(size):
        debit, credit = rng.sample(range(ACCOUNTS), 2)
        out.append(Transfer(f"{prefix}-{n}-{j}", f"acc-{debit}", f"acc-{credit}", 1, "EUR"))
    return out


def _drive(store: Store, tenants: int, batch: int, seconds: float, prefix: str) -> float:
    """Submit batches for `seconds` of time spent in the store; transfers/s committed.

    Building the requests is left out of the clock: it is the client's cost, not the store's.
    """
    rng = random.Random(prefix)
    done = n = 0
    busy = 0.0
    while busy < seconds:
        tenant = f"tenant-{rng.randrange(tenants)}"
        transfers = _batch(rng, prefix, n, batch)
        start = time.perf_counter()
        results = submit_transfers(store, tenant, transfers, time.time())
        busy += time.perf_counter() - start
        if any(r is not TransferResult.OK for r in results):
            raise RuntimeError(f"benchmark transfer refused: {set(results)}")
        done += batch
        n += 1
    return done / busy


def _measure(name: str, store: Store, batch: int, seconds: float) -> Cell:
    _drive(store, 1, batch, min(0.3, seconds), f"warm-{batch}")  # caches, prepared statements
    return Cell(name, 1, batch, _drive(store, 1, batch, seconds, f"run-{batch}"))


def _client_process(url: str, index: int, ready: Any, window: Any, out: Any) -> None:
    """One of the CLIENTS: warm up, then count the transfers it commits inside the window.

    It also reports the CPU it spent from the window's start and the transactions it made in
    that time (the last one ends after the window).
    """
    store = open_store(url)
    try:
        _drive(store, TENANTS, 1, 0.3, f"warm-c{index}")
        ready.wait()  # everyone is warm
        ready.wait()  # the parent has set the window
        start_at, end_at = window[0], window[1]
        rng = random.Random(f"run-c{index}")
        committed = n = 0
        time.sleep(max(0.0, start_at - time.monotonic()))
        cpu_start = time.process_time()
        while True:
            tenant = f"tenant-{rng.randrange(TENANTS)}"
            transfers = _batch(rng, f"run-c{index}", n, 1)
            n += 1
            results = submit_transfers(store, tenant, transfers, time.time())
            if any(r is not TransferResult.OK for r in results):
                raise RuntimeError(f"benchmark transfer refused: {set(results)}")
            if time.monotonic() > end_at:  # committed after the window closed: not counted
                break
            committed += 1
        out.put((committed, time.process_time() - cpu_start, n))
    finally:
        store.close()


def _measure_clients(url: str, seconds: float) -> Cell:
    """Aggregate throughput of CLIENTS processes over one wall-clock window they all share.

    CLOCK_MONOTONIC is system-wide, so the window the parent sets is the same instant in every
    process; a client's rate over its own span could not be added to another's.
    """
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Barrier(CLIENTS + 1)
    window = ctx.Array("d", 2)
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_client_process, args=(url, i, ready, window, out))
        for i in range(CLIENTS)
    ]
    for p in procs:
        p.start()
    ready.wait(timeout=120)
    window[0] = time.monotonic() + 0.2
    window[1] = window[0] + seconds
    ready.wait(timeout=120)
    reports = [out.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    committed = sum(r[0] for r in reports)
    cpu_ms = 1000 * sum(r[1] for r in reports) / sum(r[2] for r in reports)
    return Cell("postgres", CLIENTS, 1, committed / seconds, cpu_ms)


def _pgbench(url: str, seconds: float) -> float:
    """TPS of pgbench tpcb-like (scale 10, 8 clients) in its own database on the same server."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(url.split("?")[0])
    with psycopg.connect(url.split("?")[0], autocommit=True) as conn:
        if not conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (PGBENCH_DB,)
        ).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(PGBENCH_DB)))
    env = dict(os.environ)
    if params.get("password"):
        env["PGPASSWORD"] = str(params["password"])
    where = [
        f"--host={params.get('host') or '127.0.0.1'}",
        f"--port={params.get('port') or 5432}",
        f"--username={params.get('user') or 'postgres'}",
    ]
    pgbench = shutil.which("pgbench") or "/usr/bin/pgbench"
    subprocess.run(
        [pgbench, "-i", "-s", "10", "-q", *where, PGBENCH_DB],
        check=True,
        env=env,
        capture_output=True,
    )
    jobs = str(min(CLIENTS, os.cpu_count() or 1))
    seconds_arg = str(max(1, round(seconds)))
    run = subprocess.run(
        [pgbench, "-b", "tpcb-like", "-c", str(CLIENTS), "-j", jobs, "-T", seconds_arg, *where,
         PGBENCH_DB],
        check=True, env=env, capture_output=True, text=True,
    )  # fmt: skip
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", run.stdout)
    if match is None:
        raise RuntimeError(f"cannot read pgbench's TPS from: {run.stdout!r}")
    return float(match.group(1))


def _with_schema(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"


def _drop_schema(url: str, schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(url.split("?")[0], autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def _bench_postgres(url: str, seconds: float, report: Callable[[Cell], None]) -> list[Cell]:
    schema = f"testbed_bench_{os.getpid()}"
    bench_url = _with_schema(url, schema)
    cells = []
    try:
        store = open_store(bench_url)
        try:
            _setup(store, TENANTS)
            for size in BATCH_SIZES:
                cells.append(_measure("postgres", store, size, seconds))
                report(cells[-1])
        finally:
            store.close()
        cells.append(_measure_clients(bench_url, seconds))
        report(cells[-1])
    finally:
        _drop_schema(url, schema)
    return cells


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _batches(size: int) -> Batches:
    rng = random.Random(f"floor-{size}")
    return lambda n: _batch(rng, "floor", n, size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reference_impl.bench", description=__doc__)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args(argv)
    accounts = [f"acc-{i}" for i in range(ACCOUNTS)]

    print(f"{os.cpu_count()} cores; {args.seconds:g} s per measurement")
    print(f"{'store':<24}{'clients':>8}{'batch':>8}{'transfers/s':>14}{'baseline':>12}{'ratio':>8}")

    def report(cell: Cell, baseline: float | None = None) -> None:
        line = f"{cell.store:<24}{cell.clients:>8}{cell.batch:>8}{cell.transfers_per_s:>14,.0f}"
        if baseline is not None:
            line += f"{baseline:>12,.0f}{cell.transfers_per_s / baseline:>8.2f}"
        if cell.client_cpu_ms is not None:
            line += f"  (client CPU {cell.client_cpu_ms:.2f} ms/transfer)"
        print(line)

    cells: list[Cell] = []
    floors: dict[tuple[str, int], float] = {}
    memory = open_store("memory://")
    _setup(memory, 1)
    for size in BATCH_SIZES:
        cells.append(_measure("memory", memory, size, args.seconds))
        floors["memory", size] = plain_memory(accounts, _batches(size), args.seconds)
        report(cells[-1], floors["memory", size])
    with tempfile.TemporaryDirectory(prefix="testbed-bench-") as tmp:
        sqlite = open_store(f"sqlite:///{tmp}/bench.db")
        try:
            _setup(sqlite, 1)
            for size in BATCH_SIZES:
                cells.append(_measure("sqlite (WAL, sync=FULL)", sqlite, size, args.seconds))
                floor = plain_sqlite(
                    f"{tmp}/floor-{size}.db", accounts, _batches(size), args.seconds
                )
                floors["sqlite", size] = floor
                report(cells[-1], floor)
        finally:
            sqlite.close()
    print("baseline: the floor of a hash-chained double-entry ledger for the same transfers,")
    print("          in plain Python dicts (memory) and raw sqlite3 (SQLite); see bench_floors.py")

    pgbench_tps = None
    if not args.skip_postgres:
        cells += _bench_postgres(args.postgres, args.seconds, report)
        pgbench_tps = _pgbench(args.postgres, args.seconds)
        print(
            f"{'pgbench tpcb-like':<24}{CLIENTS:>8}{'':>8}{pgbench_tps:>14,.0f}"
            "  (TPS; scale 10, same server, same run: the PostgreSQL rows' baseline)"
        )

    def rate(store: str, clients: int, batch: int) -> float:
        return next(
            c.transfers_per_s
            for c in cells
            if c.store.startswith(store) and c.clients == clients and c.batch == batch
        )

    top = BATCH_SIZES[-1]
    checks: list[tuple[str, float, float]] = [
        (
            f"memory, batch {top} / plain Python",
            rate("memory", 1, top) / floors["memory", top],
            MEMORY_RATIO_TARGET,
        ),
        (
            f"sqlite, batch {top} / raw sqlite3",
            rate("sqlite", 1, top) / floors["sqlite", top],
            SQLITE_RATIO_TARGET,
        ),
    ]
    if pgbench_tps:
        checks += [
            (
                f"postgres 1/txn, {CLIENTS} clients / pgbench",
                rate("postgres", CLIENTS, 1) / pgbench_tps,
                ONE_PER_TXN_RATIO_TARGET,
            ),
            (
                f"postgres batch {top}, 1 client / pgbench",
                rate("postgres", 1, top) / pgbench_tps,
                BATCHED_RATIO_TARGET,
            ),
        ]
    print()
    print(f"{'target':<40}{'ratio':>12}{'target':>12}  verdict")
    for name, value, target in checks:
        goal = f">= {target:.2f}"
        print(f"{name:<40}{value:>12.2f}{goal:>12}  {_verdict(value >= target)}")
    return 0 if all(value >= target for _, value, target in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
