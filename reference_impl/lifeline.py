"""Processes that die with their parent, even when the parent is SIGKILLed.

A supervisor killed with -9 runs no cleanup, so its children cannot count on being stopped:
left behind, a gateway keeps answering 202 for payments that no worker will process and holds
its port against a restart. Each child therefore asks the kernel, with prctl(PR_SET_PDEATHSIG),
to be sent SIGKILL the moment its parent dies. Everything the runtime does is safe to kill at
any instant (nothing is acknowledged before it commits), so no gentler signal is needed.

Two ways in, for the two kinds of child:
- `command(argv)` wraps a command a supervisor starts (uvicorn's CLI, a worker process, a load
  generator): `python -m reference_impl.lifeline PARENT -- argv...` arms the signal and
  then execs argv, which keeps it (PR_SET_PDEATHSIG survives exec). No `preexec_fn`, which is
  unsafe in a parent that has threads.
- `die_with_parent(pid)` for a process that runs our code but is started by someone else, such
  as the gateway processes uvicorn's manager spawns (their app factory calls it).

"Parent" means the parent *thread*: the kernel signals the child when the thread that forked it
exits, so a supervisor must start its children from a thread that lives as long as it does
(its main thread). Linux only; elsewhere `die_with_parent` returns False and arms nothing.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Sequence

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> bool:
    """Have the kernel SIGKILL this process when `parent`, its parent, exits.

    If `parent` is already gone (it died before this call, and the kernel would never send the
    signal) the process kills itself at once. False on a platform without PR_SET_PDEATHSIG.
    """
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGKILL)
    return True


def command(argv: Sequence[str], parent: int | None = None) -> list[str]:
    """`argv`, run so that it dies with `parent` (default: this process, which starts it)."""
    who = os.getpid() if parent is None else parent
    return [sys.executable, "-m", __name__, str(who), "--", *argv]


def main(args: Sequence[str]) -> int:
    """`python -m reference_impl.lifeline PARENT -- COMMAND...`: exec COMMAND, armed."""
    if len(args) < 3 or not args[0].isdigit() or args[1] != "--":
        print(f"usage: python -m {__name__} PARENT_PID -- COMMAND [ARG]...", file=sys.stderr)
        return 2
    die_with_parent(int(args[0]))
    os.execvp(args[2], list(args[2:]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
