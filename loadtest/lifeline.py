"""Generator processes never outlive the process that started them.

Each child asks the kernel to kill it when its parent dies, however it dies (SIGKILL included):
`die_with_parent`, the reference system's own (reference_impl/lifeline.py). `run_traffic` starts the
Locust process in a session of its own, so a Ctrl-C at the terminal reaches only the caller,
which then stops the whole group in order (`stop_group`): the master's local workers are in
that group too, and die with the master besides.

The kernel ties the signal to the thread that forked the child: a caller that starts the
traffic from a thread must keep that thread alive until `run_traffic` returns (it does, since
`run_traffic` blocks).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess

from reference_impl.lifeline import die_with_parent

__all__ = ["die_with_parent", "stop_group"]


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
