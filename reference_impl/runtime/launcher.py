"""Start `testbed serve` as a child process on a free local port and stop it: for the e2e tests,
the crash tests and the API benchmark, which all need the real server, not an ASGI transport.

The child runs in a session of its own so that stopping it (or, on a test failure, killing
its whole process group) never touches the caller; its output is collected by a reader thread
so a chatty child can never block on a full pipe, and is shown when it fails to start.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

READY_TIMEOUT_S = 90.0
_STARTED = re.compile(r"^started (\S+) pid (\d+)$")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ServeProcess:
    def __init__(
        self,
        store_url: str,
        api_keys: Mapping[str, str],
        *,
        workers: int | None = None,
        port: int | None = None,
        extra: Sequence[str] = (),
    ) -> None:
        """`api_keys` is tenant -> key. Call `start()` (or use as a context manager)."""
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        testbed = Path(sys.executable).with_name("testbed")
        self.argv = [str(testbed), "serve", "--port", str(self.port), "--store", store_url]
        for tenant, key in api_keys.items():
            self.argv += ["--api-key", f"{tenant}:{key}"]
        if workers is not None:
            self.argv += ["--workers", str(workers)]
        self.argv += list(extra)
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> ServeProcess:
        self.proc = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        threading.Thread(target=self._read, daemon=True).start()
        self._wait_ready()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"testbed serve exited {self.proc.returncode}:\n{self.output}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"testbed serve not ready in {READY_TIMEOUT_S:g}s:\n{self.output}")

    def pids(self) -> dict[str, int]:
        """The latest pid of each supervised child, from the supervisor's "started" lines."""
        found: dict[str, int] = {}
        with self._lock:
            for line in self.lines:
                if m := _STARTED.match(line):
                    found[m.group(1)] = int(m.group(2))
        return found

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 45.0) -> int:
        """Signal the server and wait for it; kills the whole group if it overstays."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL the server and every process it started (its session's group)."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.stop(timeout=10.0)
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):  # children of a killed supervisor
                os.killpg(self.proc.pid, signal.SIGKILL)
