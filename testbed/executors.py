"""Where independent jobs run: in this process, on a local process pool, or on a Dask cluster.

Sweeps (and campaigns, which have their own pool in sim/campaign.py) are embarrassingly
parallel: each job is a module-level function applied to one picklable item, returning a small
result. `run_jobs` hides where that happens and yields `(index, result)` as jobs finish, in no
particular order; callers sort by index, so what they write does not depend on scheduling.

- one job: in this process (no pickling; simplest to debug);
- a local pool: `forkserver` (or `spawn`) workers, never `fork`, with at most two jobs per
  worker in flight;
- `--scheduler tcp://HOST:8786`: a dask.distributed cluster. Its workers must be able to import
  this project (the same virtualenv on every machine, e.g. `dask worker tcp://HOST:8786` started
  from it), and each job's result travels back to this process.
"""

from __future__ import annotations

import multiprocessing
import os
import re
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

_ADDRESS = re.compile(r"^(tcp|tls)://[^\s/:]+(:\d{1,5})?$")


class ExecutorError(ValueError):
    """The executor cannot be used; the message names the flag (`--jobs`, `--scheduler`)."""


def default_jobs() -> int:
    return os.cpu_count() or 1


def check_scheduler(address: str) -> None:
    if not _ADDRESS.match(address):
        raise ExecutorError(
            f"--scheduler: must be a Dask scheduler address like tcp://HOST:8786, got {address!r}"
        )


def run_jobs(
    fn: Callable[[T], R], items: Sequence[T], jobs: int = 1, scheduler: str | None = None
) -> Iterator[tuple[int, R]]:
    """(index into `items`, fn(item)) for every item, as each finishes."""
    if scheduler is not None:
        yield from _on_dask(fn, items, scheduler)
    elif jobs < 1:
        raise ExecutorError(f"--jobs: must be at least 1, got {jobs}")
    elif jobs == 1 or len(items) <= 1:
        for i, item in enumerate(items):
            yield i, fn(item)
    else:
        yield from _on_pool(fn, items, jobs)


def _pool_context() -> multiprocessing.context.BaseContext:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _on_pool(fn: Callable[[T], R], items: Sequence[T], jobs: int) -> Iterator[tuple[int, R]]:
    pending = iter(enumerate(items))
    with ProcessPoolExecutor(max_workers=min(jobs, len(items)), mp_context=_pool_context()) as pool:
        running: dict[Future[R], int] = {}

        def submit_next() -> None:
            nxt = next(pending, None)
            if nxt is not None:
                running[pool.submit(fn, nxt[1])] = nxt[0]

        for _ in range(2 * jobs):
            submit_next()
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                index = running.pop(future)
                yield index, future.result()
                submit_next()


def _on_dask(fn: Callable[[T], R], items: Sequence[T], address: str) -> Iterator[tuple[int, R]]:
    check_scheduler(address)
    from distributed import Client, as_completed

    try:
        client = Client(address, timeout="15s", set_as_default=False)  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError) as e:
        raise ExecutorError(f"--scheduler: cannot reach {address}: {e}") from None
    try:
        futures = {client.submit(fn, item, pure=False): i for i, item in enumerate(items)}
        for future in as_completed(futures, loop=client.loop):  # type: ignore[no-untyped-call]
            yield futures[future], future.result()
    finally:
        client.close()  # type: ignore[no-untyped-call]
