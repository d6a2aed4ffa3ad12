"""lifeline: a process started through `command()` dies when its parent is SIGKILLed.

Real processes on the real kernel (Linux): an intermediate "supervisor" starts a long sleep
through the lifeline and is then killed with -9; the sleep must go too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from reference_impl import lifeline

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")


def running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_a_child_dies_with_its_sigkilled_parent() -> None:
    supervisor = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(
            """
            import subprocess, sys, time
            from reference_impl import lifeline
            child = subprocess.Popen(lifeline.command(["sleep", "300"]))
            print(child.pid, flush=True)
            time.sleep(300)
            """
        )],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert supervisor.stdout is not None
    child = int(supervisor.stdout.readline())
    try:
        deadline = time.monotonic() + 30
        while Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")[0] != b"sleep":
            assert time.monotonic() < deadline, "the child never exec'd its command"
            time.sleep(0.05)
        supervisor.kill()
        supervisor.wait(30)
        deadline = time.monotonic() + 30
        while running(child):
            assert time.monotonic() < deadline, "the child outlived its SIGKILLed parent"
            time.sleep(0.05)
    finally:
        if running(child):
            os.kill(child, signal.SIGKILL)


def test_a_child_whose_parent_is_already_gone_kills_itself() -> None:
    # The parent named is not the real one: as if the parent had died before prctl took effect.
    argv = lifeline.command(["sleep", "300"], parent=os.getpid() + 10_000_000)
    done = subprocess.run(argv, timeout=30)
    assert done.returncode == -signal.SIGKILL


def test_usage_errors_exit_2() -> None:
    argv = [sys.executable, "-m", "reference_impl.lifeline", "sleep", "1"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "usage:" in done.stderr
