"""The generator's HTTP/1.1 client: one keep-alive connection that POSTs prebuilt requests.

At saturation the generator shares the machine with the system it measures, so every
microsecond it spends per request is taken from the server. geventhttpclient's `HTTPClient`
(the engine of Locust's FastHttpUser) rebuilds and validates each header of each request and
parses answers through Python callbacks per header: about 160 us of CPU a request, half what a
trivial FastAPI endpoint spends answering it. Here a request is bytes joined once (the fixed
head per tenant is built at start), and the answer is read by `read_response`, which knows just
what an HTTP/1.1 client must: interim 1xx answers, Content-Length, chunked bodies, bodyless
statuses, and whether the server keeps the connection.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult

import gevent.socket
import gevent.ssl
from gevent import select

MAX_HEAD = 65536
IDLE_CHECK_AFTER = 1.0
"""A connection idle this long is checked before reuse: the server may have closed it."""


class ProtocolError(ConnectionError):
    """The server's answer is not HTTP/1.x as this client reads it."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]
    """Lower-cased names; a repeated header keeps its last value."""
    body: bytes
    keep_alive: bool


def request_head(path: str, netloc: str, api_key: str) -> bytes:
    """The fixed start of a tenant's POST; the idempotency key, then `post_request` follows."""
    return (
        f"POST {path} HTTP/1.1\r\nHost: {netloc}\r\nUser-Agent: payments-testbed-loadtest\r\n"
        f"Authorization: Bearer {api_key}\r\nContent-Type: application/json\r\n"
        "Idempotency-Key: "
    ).encode("latin-1")


def post_request(head: bytes, key: str, body: bytes) -> bytes:
    return b"%s%s\r\nContent-Length: %d\r\n\r\n%s" % (head, key.encode(), len(body), body)


def read_response(recv: Callable[[int], bytes], buffered: bytes = b"") -> tuple[Response, bytes]:
    """Read one final answer to a request that is not HEAD; returns it and any bytes after it."""
    buf = buffered
    while True:
        end = buf.find(b"\r\n\r\n")
        while end < 0:
            if len(buf) > MAX_HEAD:
                raise ProtocolError("answer head over 64 KiB")
            chunk = recv(MAX_HEAD)
            if not chunk:
                raise ProtocolError("connection closed before the answer's head")
            buf += chunk
            end = buf.find(b"\r\n\r\n")
        lines = buf[:end].decode("latin-1").split("\r\n")
        buf = buf[end + 4 :]
        version, _, rest = lines[0].partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise ProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
        status = int(code)
        if status >= 200:
            break  # 1xx answers are interim: the final one follows
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    connection = headers.get("connection", "").lower()
    keep = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
    if status in (204, 304):
        return Response(status, headers, b"", keep), buf
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body, buf = _chunked(recv, buf)
        return Response(status, headers, body, keep), buf
    length = headers.get("content-length")
    if length is None:  # the body runs to the end of the connection
        while chunk := recv(MAX_HEAD):
            buf += chunk
        return Response(status, headers, buf, False), b""
    if not length.isdigit():
        raise ProtocolError(f"bad Content-Length {length[:40]!r}")
    size = int(length)
    while len(buf) < size:
        chunk = recv(max(MAX_HEAD, size - len(buf)))
        if not chunk:
            raise ProtocolError("connection closed inside the answer's body")
        buf += chunk
    return Response(status, headers, buf[:size], keep), buf[size:]


def _chunked(recv: Callable[[int], bytes], buf: bytes) -> tuple[bytes, bytes]:
    def line() -> bytes:
        nonlocal buf
        end = buf.find(b"\r\n")
        while end < 0:
            chunk = recv(MAX_HEAD)
            if not chunk:
                raise ProtocolError("connection closed inside a chunked body")
            buf += chunk
            end = buf.find(b"\r\n")
        found, buf = buf[:end], buf[end + 2 :]
        return found

    parts: list[bytes] = []
    while True:
        size_text = line().split(b";")[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ProtocolError(f"bad chunk size {size_text[:20]!r}") from None
        if size == 0:
            while line():  # trailers, up to the empty line
                pass
            return b"".join(parts), buf
        while len(buf) < size + 2:
            chunk = recv(MAX_HEAD)
            if not chunk:
                raise ProtocolError("connection closed inside a chunk")
            buf += chunk
        parts.append(buf[:size])
        buf = buf[size + 2 :]


class Connection:
    """A keep-alive connection to the system (TLS for https URLs, certificates verified)."""

    def __init__(self, url: SplitResult) -> None:
        host = url.hostname or "127.0.0.1"
        port = url.port or (443 if url.scheme == "https" else 80)
        sock = gevent.socket.create_connection((host, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if url.scheme == "https":
            sock = gevent.ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        self.sock: Any = sock
        self.buffered = b""
        self.used = time.monotonic()

    def stale(self) -> bool:
        """Idle a while and readable: the server closed it (keep-alive timeout) or misspoke."""
        if time.monotonic() - self.used < IDLE_CHECK_AFTER:
            return False
        readable, _, _ = select.select([self.sock], [], [], 0.0)
        return bool(readable)

    def post(self, request: bytes) -> Response:
        self.sock.sendall(request)
        response, self.buffered = read_response(self.sock.recv, self.buffered)
        self.used = time.monotonic()
        return response

    def close(self) -> None:
        self.sock.close()
