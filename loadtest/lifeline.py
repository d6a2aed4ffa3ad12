"""Generator processes never outlive the process that started them.

Each child asks the kernel (Linux `prctl(PR_SET_PDEATHSIG, SIGKILL)`) to be killed when its
parent dies, however it dies (SIGKILL included), then checks that the parent is still the one
that started it, since it may have died before the request was made. `run_traffic` starts the
Locust process in a session of its own, so a Ctrl-C at the terminal reaches only the caller,
which then stops the whole group in order (`stop_group`): the master's local workers are in
that group too, and die with the master besides.

The kernel ties the signal to the thread that forked the child: a caller that starts the
traffic from a thread must keep that thread alive until `run_traffic` returns (it does, since
`run_traffic` blocks).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Be SIGKILLed when the parent dies; exit now if `parent_pid` is already gone."""
    if sys.platform != "linux":
        return  # no PDEATHSIG elsewhere: stop_group and Locust's heartbeats remain
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:
        os._exit(1)


def stop_group(proc: subprocess.Popen[bytes], grace: float) -> int:
    """SIGTERM the process group led by `proc`, SIGKILL it after `grace` seconds; the exit code.

    The group is killed in the end either way, so no child of `proc` is left behind."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait()
