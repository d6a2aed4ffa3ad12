"""Fixtures of the traffic generator's tests: a stand-in endpoint.

Every server a test starts listens on 127.0.0.1 and is stopped (and reaped) when the test ends.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

FAKE_SERVER = Path(__file__).with_name("fake_server.py")


@pytest.fixture
def fake_server() -> Iterator[Callable[..., str]]:
    """Start fake_server.py with the given flags; returns its base URL."""
    procs: list[subprocess.Popen[str]] = []

    def start(*flags: str) -> str:
        proc = subprocess.Popen(
            [sys.executable, str(FAKE_SERVER), *flags], stdout=subprocess.PIPE, text=True
        )
        procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until it listens (or dies: then "")
        assert line.startswith("listening "), f"fake server did not start: {line!r}"
        return f"http://127.0.0.1:{int(line.split()[1])}"

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()
