"""`testbed serve --workers N` when its supervisor is SIGKILLed: every child dies with it.

A supervisor killed with -9 runs no cleanup. Its children (the uvicorn manager, the gateway
processes uvicorn spawns, the worker processes) must not outlive it: a gateway left behind keeps
answering 202 for payments no worker will ever process, and holds the port against a restart.
Only the supervisor's pid is signalled here, never its process group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import test_serve_load
from test_serve_load import serve

store_url = test_serve_load.store_url  # the fixture: on SQLite and on PostgreSQL


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process on the machine, from /proc."""
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            # The command name may hold spaces and parentheses: the fields follow the last ")".
            found[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    return found


def descendants(pid: int) -> set[int]:
    parents = _parents()
    family: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - family
        family |= frontier
    return family


def alive(pid: int) -> bool:
    """Running, not merely a zombie waiting for whoever adopted it to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


@pytest.mark.timeout(180)
def test_every_child_dies_with_a_sigkilled_supervisor_and_the_port_is_free_again(
    store_url: str,
) -> None:
    server = serve(store_url, workers=2).start()
    try:
        supervisor = server.proc
        assert supervisor is not None
        gateway = server.pids()["gateway"]
        # uvicorn's manager spawns its gateway processes after the first one may already answer.
        wait_for(lambda: len(descendants(gateway)) >= 2, 60, "both uvicorn gateway processes")
        family = descendants(supervisor.pid)
        named = set(server.pids().values())
        assert named <= family and len(family - named) >= 2, (family, server.output)

        os.kill(supervisor.pid, signal.SIGKILL)
        supervisor.wait(30)
        wait_for(
            lambda: not [p for p in family if alive(p)],
            60,
            f"the children of the killed supervisor to die: {[p for p in family if alive(p)]}",
        )
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{server.url}/healthz", timeout=2.0)
        # Nothing holds the port: a new server starts on it.
        with serve(store_url, workers=1, port=server.port) as again:
            assert httpx.get(f"{again.url}/healthz", timeout=10.0).status_code == 200
    finally:
        server.kill()  # whatever survived (before the fix: all of it), so nothing leaks
