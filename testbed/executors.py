"""Where independent jobs run: in this process, on a local process pool, or on a Dask cluster.

Sweeps and seed campaigns are embarrassingly parallel: each job is a module-level function
(or a `functools.partial` of one) applied to one picklable item, returning a small result.
`run_jobs` hides where that happens and yields `(index, result)` as jobs finish, in no
particular order; callers sort by index, so what they write does not depend on scheduling.

- one job: in this process (no pickling; simplest to debug);
- a local pool: `forkserver` (or `spawn`) workers, never `fork` (a forked child would inherit
  the parent's threads and half-written state, and what a job computes must not depend on what
  the parent happened to hold), with at most two jobs per worker in flight, so a campaign of a
  million seeds does not hold a million futures;
- `--scheduler tcp://HOST:8786`: a dask.distributed cluster. Its workers must be able to import
  this project (the same virtualenv on every machine, e.g. `dask worker tcp://HOST:8786` started
  from it), and each job's result travels back to this process.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

_ADDRESS = re.compile(r"^(tcp|tls)://[^\s/:]+(:\d{1,5})?$")


class ExecutorError(ValueError):
    """The executor cannot be used; the message names the flag (`--jobs`, `--scheduler`)."""


class ExecutorLost(ExecutorError):
    """The executor went away while jobs ran (the Dask scheduler stopped or became unreachable,
    a pool worker process was killed): the results already yielded stand, the rest never ran."""


def default_jobs() -> int:
    return os.cpu_count() or 1


def check_executor(jobs: int | None, scheduler: str | None) -> None:
    """`--jobs` and `--scheduler` before anything runs: a local pool's size or a cluster, not
    both, since a cluster runs as many jobs at once as its workers have threads."""
    if scheduler is None:
        if jobs is not None and jobs < 1:
            raise ExecutorError(f"--jobs: must be at least 1, got {jobs}")
        return
    if jobs is not None:
        raise ExecutorError(
            "--jobs: not with --scheduler (a Dask cluster runs as many jobs at once as its "
            "workers have threads)"
        )
    check_scheduler(scheduler)


def check_scheduler(address: str) -> None:
    if not _ADDRESS.match(address):
        raise ExecutorError(
            f"--scheduler: must be a Dask scheduler address like tcp://HOST:8786, got {address!r}"
        )


def _probe(address: str) -> None:
    """Fail at once on a scheduler nobody listens at (refused, unknown host), rather than after
    the Dask client's 15 s of retries; a host that does not answer still takes the timeout."""
    where = address.split("://", 1)[1]
    host, _, port = where.rpartition(":") if ":" in where else (where, "", "8786")
    try:
        socket.create_connection((host, int(port)), timeout=15).close()
    except OSError as e:
        reason = e.strerror or str(e) or type(e).__name__
        raise ExecutorError(f"--scheduler: cannot reach {address}: {reason}") from None


def run_jobs(
    fn: Callable[[T], R], items: Sequence[T], jobs: int = 1, scheduler: str | None = None
) -> Iterator[tuple[int, R]]:
    """(index into `items`, fn(item)) for every item, as each finishes."""
    if scheduler is not None:
        yield from _on_dask(fn, items, scheduler)
    elif jobs < 1:
        raise ExecutorError(f"--jobs: must be at least 1, got {jobs}")
    elif jobs == 1 or len(items) <= 1:
        with _interrupt_between_jobs() as asked:
            for i, item in enumerate(items):
                yield i, fn(item)
                if asked and i + 1 < len(items):
                    raise KeyboardInterrupt
    else:
        yield from _on_pool(fn, items, jobs)


def _pool_context() -> multiprocessing.context.BaseContext:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


@contextmanager
def _interrupt_between_jobs() -> Iterator[list[int]]:
    """Jobs in this process stop as a pool's do: a first Ctrl-C lets the running job finish
    (a failing seed's record is written whole) and stops before the next; a second one
    interrupts the job at once. The list holds the signals received."""
    if threading.current_thread() is not threading.main_thread():
        yield []  # only the main thread receives signals
        return
    asked: list[int] = []
    previous = signal.getsignal(signal.SIGINT)
    restore = signal.default_int_handler if previous is None else previous

    def first(signum: int, frame: object) -> None:
        asked.append(signum)
        signal.signal(signal.SIGINT, restore)

    signal.signal(signal.SIGINT, first)
    try:
        yield asked
    finally:
        signal.signal(signal.SIGINT, restore)


def _pool_worker(parent: int) -> None:
    """A pool worker leaves Ctrl-C to the parent, which stops handing out jobs and waits for
    the ones running (a worker interrupted mid-job would die with a traceback each); and it
    exits when the parent is gone, however it went: a parent killed with SIGKILL runs no
    cleanup, and its workers would wait on the job queue for ever (the forkserver that forked
    them outlives it, so the kernel's parent-death signal cannot be tied to the right process).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with, args=(parent,), name="lifeline", daemon=True).start()


def _exit_with(pid: int) -> None:
    """Return never: exit this process once `pid` has exited (looked at once a second, which
    costs nothing next to a job and works where there is no pidfd)."""
    while _alive(pid):
        time.sleep(1.0)
    os._exit(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, and someone else's
        pass
    return True


def _on_pool(fn: Callable[[T], R], items: Sequence[T], jobs: int) -> Iterator[tuple[int, R]]:
    pending = iter(enumerate(items))
    with ProcessPoolExecutor(
        max_workers=min(jobs, len(items)),
        mp_context=_pool_context(),
        initializer=_pool_worker,
        initargs=(os.getpid(),),
    ) as pool:
        running: dict[Future[R], int] = {}

        def submit_next() -> None:
            nxt = next(pending, None)
            if nxt is not None:
                running[pool.submit(fn, nxt[1])] = nxt[0]

        try:
            for _ in range(2 * jobs):
                submit_next()
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    index = running.pop(future)
                    try:
                        result = future.result()
                    except BrokenProcessPool as e:
                        raise ExecutorLost(f"--jobs: a worker process died: {e}") from None
                    yield index, result
                    submit_next()
        except KeyboardInterrupt:  # the queued jobs never start; leaving waits for the running
            pool.shutdown(wait=False, cancel_futures=True)
            raise


@contextmanager
def _lost(address: str) -> Iterator[None]:
    """The cluster went away: distributed's CommClosedError is an OSError, and a cancelled
    future is what the client hands back for the jobs in flight once it lost its scheduler."""
    try:
        yield
    except CancelledError:
        raise ExecutorLost(
            f"--scheduler: lost {address}: the connection to it broke and its jobs were cancelled"
        ) from None
    except (OSError, TimeoutError) as e:
        raise ExecutorLost(f"--scheduler: lost {address}: {str(e) or type(e).__name__}") from None


def _on_dask(fn: Callable[[T], R], items: Sequence[T], address: str) -> Iterator[tuple[int, R]]:
    """Like the local pool, at most two jobs per worker thread in flight, so a campaign of a
    million seeds does not hold a million tasks on the scheduler; counted again as each job
    finishes, so workers that join midway get work."""
    check_scheduler(address)
    _probe(address)
    from distributed import Client, as_completed
    from distributed import Future as DaskFuture

    # The client logs its failed reconnections with tracebacks; the loss is reported once, below.
    logging.getLogger("distributed.client").setLevel(logging.CRITICAL)
    try:
        client = Client(address, timeout="15s", set_as_default=False)  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError) as e:
        raise ExecutorError(f"--scheduler: cannot reach {address}: {e}") from None
    try:
        pending = iter(enumerate(items))
        running: dict[DaskFuture[R], int] = {}
        finished = as_completed(loop=client.loop)  # type: ignore[no-untyped-call]

        def top_up() -> None:
            threads = sum(client.nthreads().values())  # type: ignore[no-untyped-call]
            while len(running) < 2 * max(threads, 1):
                nxt = next(pending, None)
                if nxt is None:
                    return
                future = client.submit(fn, nxt[1], pure=False)
                running[future] = nxt[0]
                finished.add(future)  # type: ignore[no-untyped-call]

        with _lost(address):
            top_up()
        for future in finished:
            index = running.pop(future)
            if future.status == "error":
                future.result()  # the job itself raised: its own exception, not a lost cluster
            with _lost(address):
                result = future.result()
            yield index, result
            with _lost(address):
                top_up()
    finally:
        client.close()  # type: ignore[no-untyped-call]
