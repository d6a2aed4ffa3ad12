"""No generator process outlives the run that started it: Ctrl-C, or the caller SIGKILLed."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

RUNNER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from loadtest.traffic import run_traffic
    from scenarios.schema import Scenario
    sc = Scenario.model_validate({"description": "x", "duration": "60s",
                                  "workload": {"rate": "20/s"}})
    run_traffic(sc, sys.argv[1], {"tenant-1": "k"}, t0=time.time(), seed=1,
                out_dir=Path(sys.argv[2]), setup=False, locust_workers=2,
                on_start=lambda at: print("started", flush=True))
""")


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def start_run(url: str, out: Path) -> tuple[subprocess.Popen[str], list[int]]:
    """A caller of run_traffic with two workers, once its traffic has started; and the pids of
    the generator processes (master and workers)."""
    caller = subprocess.Popen(
        [sys.executable, "-c", RUNNER, url, str(out)], stdout=subprocess.PIPE, text=True
    )
    assert caller.stdout is not None
    line = caller.stdout.readline()  # blocks until the traffic starts, or the caller dies
    assert line == "started\n", f"the run did not start: {line!r}"
    generators = [
        p.pid for p in psutil.Process(caller.pid).children(recursive=True)
        if "loadtest.generator" in " ".join(p.cmdline())
    ]  # fmt: skip
    assert len(generators) == 3
    return caller, generators


def wait_gone(pids: list[int], timeout: float = 60.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := [p for p in pids if alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@pytest.mark.timeout(180)
def test_ctrl_c_stops_every_generator_process(
    fake_server: Callable[..., str], tmp_path: Path
) -> None:
    caller, generators = start_run(fake_server(), tmp_path)
    try:
        caller.send_signal(signal.SIGINT)
        assert caller.wait(60) != 0  # interrupted: KeyboardInterrupt propagates
        assert wait_gone(generators) == []
    finally:
        caller.kill()
        caller.wait()


@pytest.mark.timeout(180)
def test_generator_processes_die_with_a_killed_caller(
    fake_server: Callable[..., str], tmp_path: Path
) -> None:
    caller, generators = start_run(fake_server(), tmp_path)
    caller.kill()  # SIGKILL: no finally runs in the caller
    caller.wait()
    assert wait_gone(generators) == []
