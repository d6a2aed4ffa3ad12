"""Every long-running process of `testbed serve` names its role in its process title, so ps and
top tell them apart (docs/consumers.md): the single process of a plain `testbed serve` is
`testbed: serve`; under `--workers N` the supervisor and each child it starts name theirs.

Titles are read from /proc/PID/cmdline, where setproctitle writes them.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from test_serve_load import serve


def title(pid: int) -> str:
    """The process title: argv as /proc shows it, NUL- and padding-stripped."""
    raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    return raw.split(b"\0")[0].decode(errors="replace").strip()


def wait_for_title(pid: int, expected: str, timeout: float = 60.0) -> None:
    """A child names itself once its interpreter has started: wait for it, generously."""
    deadline = time.monotonic() + timeout
    while (found := title(pid)) != expected:
        assert time.monotonic() < deadline, f"pid {pid} is titled {found!r}, not {expected!r}"
        time.sleep(0.1)


@pytest.mark.timeout(120)
def test_a_single_process_serve_is_titled_testbed_serve(tmp_path: Path) -> None:
    with serve(f"sqlite:///{tmp_path / 'serve.db'}") as server:
        assert server.proc is not None
        # Ready (/healthz answered) means uvicorn runs, and the title is set before it starts.
        assert title(server.proc.pid) == "testbed: serve", server.output
        assert server.stop() == 0, server.output


@pytest.mark.timeout(120)
def test_each_supervised_process_names_its_role(tmp_path: Path) -> None:
    with serve(f"sqlite:///{tmp_path / 'serve.db'}", workers=1) as server:
        assert server.proc is not None
        wait_for_title(server.proc.pid, "testbed: supervisor")
        pids = server.pids()
        roles = {
            "payments-1": "testbed: payments worker 1",
            "settlement": "testbed: settlement worker",
            "reporting": "testbed: projector",
        }
        assert set(roles) <= set(pids), server.output
        for name, expected in roles.items():
            wait_for_title(pids[name], expected)
        assert server.stop() == 0, server.output
