"""`run_jobs`: every job's result once, on one process or a pool; a pool whose worker dies
says so (ExecutorLost) after handing back the results that finished; a pool's processes do not
outlive a parent killed with SIGKILL; in this process, a first Ctrl-C lets the running job
finish and stops before the next, a second stops it at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from functools import partial

import psutil
import pytest

from testbed.executors import ExecutorError, ExecutorLost, run_jobs


def square(n: int) -> int:
    return n * n


def square_or_die(n: int) -> int:
    if n == 3:
        os._exit(9)  # a worker killed mid-job, as the OOM killer would
    return n * n


def square_interrupted(n: int, times: int) -> int:
    if n == 1:
        for _ in range(times):  # Ctrl-C pressed `times` while job 1 runs
            os.kill(os.getpid(), signal.SIGINT)
    return n * n


@pytest.mark.parametrize("jobs", [1, 2])
def test_every_job_gives_its_result_once(jobs: int) -> None:
    results = dict(run_jobs(square, list(range(6)), jobs))
    assert results == {i: i * i for i in range(6)}


def test_a_pool_whose_worker_dies_reports_it_after_the_results_that_finished() -> None:
    got: dict[int, int] = {}
    with pytest.raises(ExecutorLost, match=r"^--jobs: a worker process died"):
        for index, result in run_jobs(square_or_die, [0, 1, 2, 3, 4, 5, 6, 7], 2):
            got[index] = result
    assert 3 not in got
    assert all(result == index * index for index, result in got.items())


def test_a_pools_processes_exit_when_its_parent_is_killed() -> None:
    """SIGKILL runs no cleanup in the parent; its workers would wait on the job queue for ever."""
    parent = subprocess.Popen(
        [sys.executable, "-c", "import time; from testbed.executors import run_jobs; "
         "list(run_jobs(time.sleep, [600.0] * 4, 2))"]
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120  # the resource tracker, the forkserver, two workers
        while len(pool := psutil.Process(parent.pid).children(recursive=True)) < 4:
            assert time.monotonic() < deadline, f"the pool never started: {pool}"
            time.sleep(0.1)
    finally:
        parent.kill()
        parent.wait()
    _, left = psutil.wait_procs(pool, timeout=60)
    assert left == [], [p.cmdline() for p in left]


def test_jobs_below_one_are_refused() -> None:
    with pytest.raises(ExecutorError, match="--jobs: must be at least 1, got 0"):
        list(run_jobs(square, [1], 0))


@pytest.mark.parametrize(
    ("items", "times", "got", "stopped"),
    [
        (4, 1, {0: 0, 1: 1}, True),  # job 1 finishes, job 2 never starts
        (2, 1, {0: 0, 1: 1}, False),  # interrupted in the last job: nothing was left to run
        (4, 2, {0: 0}, True),  # the second Ctrl-C stops job 1 itself
    ],
)
def test_ctrl_c_in_this_process_stops_between_jobs_or_at_once_when_pressed_twice(
    items: int, times: int, got: dict[int, int], stopped: bool
) -> None:
    before = signal.getsignal(signal.SIGINT)
    results: dict[int, int] = {}
    try:
        for index, result in run_jobs(partial(square_interrupted, times=times), range(items)):
            results[index] = result
    except KeyboardInterrupt:
        assert stopped
    else:
        assert not stopped
    assert results == got
    assert signal.getsignal(signal.SIGINT) is before, "the handler is put back"
