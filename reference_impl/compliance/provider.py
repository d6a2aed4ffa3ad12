"""An external sanctions-screening provider: the stub process a load run screens against, and
the client the sanctions check uses to call it.

Many payment systems do not screen names themselves: they call a vendor's API, and that call is
where a slow or failing dependency enters the payment path. The stub answers as such a vendor
would, with the real screen (reference_impl/compliance/sanctions.py) behind a configurable
latency and error rate that a fault window can change while it runs:

    python -m reference_impl.compliance.provider --port 8790 --latency 0.05 --error-rate 0.01

- `POST /screen` `{"names": ["...", ...]}` -> `{"results": [{"verdict", "reason", "score"},
  ...]}` (bulk screening: one call per batch), after `latency` seconds; with probability
  `error_rate` a 503 instead;
- `POST /control` `{"latency": s, "error_rate": p}` sets either (a fault window opens or ends);
- `GET /healthz` -> 200.

`RemoteScreen` is the sanctions check's name screen when `--sanctions-provider URL` is given:
one call per batch of payments, before its unit of work; a 5xx, a refused connection or a
timeout raises `ProviderUnavailable`, and the sanctions check decides "review" for those
payments (fail closed: held for a person) rather than fail the batch (docs/compliance.md).
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from reference_impl.compliance.sanctions import SanctionsScreen, load_watchlist
from reference_impl.core.checks import CheckUnavailable, Decision


class ProviderUnavailable(CheckUnavailable):
    """The screening provider did not answer (refused, timed out, or a 5xx)."""


class RemoteScreen:
    """A name screen at a provider's URL (the check calls it once per name)."""

    remote = True
    """Called before the unit of work, from the consumer's `prepare` (service/checkers.py)."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(timeout=timeout)

    def decide(self, name: str) -> Decision:
        return self.decide_many([name])[0]

    def decide_many(self, names: Sequence[str]) -> list[Decision]:
        """One call for a batch's names (what screening APIs offer for bulk screening)."""
        try:
            r = self._http.post(f"{self.url}/screen", json={"names": list(names)})
        except httpx.HTTPError as e:
            raise ProviderUnavailable(f"screening provider {self.url}: {e!r}") from None
        if r.status_code != 200:
            raise ProviderUnavailable(f"screening provider {self.url}: HTTP {r.status_code}")
        return [
            Decision(d["verdict"], str(d["reason"]), float(d["score"])) for d in r.json()["results"]
        ]


class Behaviour:
    """The stub's latency and error rate, changed by /control while it serves."""

    def __init__(self, latency: float, error_rate: float, seed: int) -> None:
        self.latency = latency
        self.error_rate = error_rate
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def fails(self) -> bool:
        with self._lock:
            return self._rng.random() < self.error_rate

    def set(self, changes: dict[str, Any]) -> None:
        latency = float(changes.get("latency", self.latency))
        error_rate = float(changes.get("error_rate", self.error_rate))
        if latency < 0 or not 0 <= error_rate <= 1:
            raise ValueError("latency must be >= 0 and error_rate in [0, 1]")
        with self._lock:
            self.latency, self.error_rate = latency, error_rate


def make_server(
    port: int, screen: SanctionsScreen, behaviour: Behaviour, host: str = "127.0.0.1"
) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            del format, args  # quiet: a load run screens thousands of names

        def _answer(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            data = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(data, dict):
                raise ValueError("body: must be a JSON object")
            return data

        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._answer(200, {"ok": True})
            else:
                self._answer(404, {"detail": f"no {self.path}"})

        def do_POST(self) -> None:
            try:
                body = self._body()
                if self.path == "/control":
                    behaviour.set(body)
                    self._answer(
                        200, {"latency": behaviour.latency, "error_rate": behaviour.error_rate}
                    )
                    return
                if self.path != "/screen":
                    self._answer(404, {"detail": f"no {self.path}"})
                    return
                names = body.get("names")
                if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                    raise ValueError("names: must be a list of strings")
            except ValueError as e:
                self._answer(422, {"detail": str(e)})
                return
            time.sleep(behaviour.latency)
            if behaviour.fails():
                self._answer(503, {"detail": "provider unavailable (injected)"})
                return
            results = [screen.decide(n) for n in names]
            rows = [{"verdict": d.verdict, "reason": d.reason, "score": d.score} for d in results]
            self._answer(200, {"results": rows})

    return ThreadingHTTPServer((host, port), Handler)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reference_impl.compliance.provider")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per call")
    parser.add_argument("--error-rate", type=float, default=0.0, help="share of calls -> 503")
    parser.add_argument("--watchlist", type=Path, default=None)
    parser.add_argument("--threshold", type=float, default=0.90)
    parser.add_argument("--reject-at", type=float, default=0.97)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    behaviour = Behaviour(0.0, 0.0, args.seed)
    try:
        behaviour.set({"latency": args.latency, "error_rate": args.error_rate})
    except ValueError as e:
        parser.error(str(e))
    screen = SanctionsScreen(load_watchlist(args.watchlist), args.threshold, args.reject_at)
    server = make_server(args.port, screen, behaviour)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
