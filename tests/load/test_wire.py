"""The generator's HTTP/1.1 answer reader, fed in awkward pieces."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from loadtest.wire import ProtocolError, post_request, read_response, request_head


def feeder(*pieces: bytes) -> Callable[[int], bytes]:
    """A recv() that returns the pieces one by one, then b"" (the connection closed)."""
    queue = list(pieces)

    def recv(_size: int) -> bytes:
        return queue.pop(0) if queue else b""

    return recv


def test_content_length_body_across_reads_and_bytes_after_it() -> None:
    recv = feeder(b"HTTP/1.1 202 Accepted\r\nContent-Le", b"ngth: 11\r\nIdempotency-Replay: true",
                  b"\r\n\r\n{\"id\":", b"\"p1\"}NEXT")  # fmt: skip
    response, rest = read_response(recv)
    assert (response.status, response.body, response.keep_alive) == (202, b'{"id":"p1"}', True)
    assert response.headers["idempotency-replay"] == "true"
    assert rest == b"NEXT"


def test_chunked_body_with_extensions_and_trailers() -> None:
    recv = feeder(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nWi",
                  b"ki\r\n5\r\npedia\r\n0\r\nTrailer: 1\r\n\r\n")  # fmt: skip
    response, rest = read_response(recv)
    assert (response.body, rest) == (b"Wikipedia", b"")


def test_interim_answers_are_skipped() -> None:
    response, _ = read_response(
        feeder(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 409 Conflict\r\nContent-Length: 0\r\n\r\n")
    )
    assert response.status == 409 and response.body == b""


@pytest.mark.parametrize(
    ("head", "keep"),
    [
        (b"HTTP/1.1 202 A\r\nContent-Length: 0\r\n", True),
        (b"HTTP/1.1 202 A\r\nConnection: close\r\nContent-Length: 0\r\n", False),
        (b"HTTP/1.0 202 A\r\nContent-Length: 0\r\n", False),
        (b"HTTP/1.0 202 A\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n", True),
        (b"HTTP/1.1 204 No Content\r\n", True),
    ],
)
def test_whether_the_connection_stays_open(head: bytes, keep: bool) -> None:
    response, _ = read_response(feeder(head + b"\r\n"))
    assert response.keep_alive is keep


def test_a_body_without_length_runs_to_the_end_of_the_connection() -> None:
    response, rest = read_response(feeder(b"HTTP/1.1 500 X\r\n\r\nboom", b" again"))
    assert (response.body, response.keep_alive, rest) == (b"boom again", False, b"")


@pytest.mark.parametrize(
    ("pieces", "message"),
    [
        ((), "closed before the answer's head"),
        ((b"SSH-2.0-OpenSSH\r\n\r\n",), "not an HTTP/1.x status line"),
        (
            (b"HTTP/1.1 202 A\r\nContent-Length: 10\r\n\r\nshort",),
            "closed inside the answer's body",
        ),
        ((b"HTTP/1.1 202 A\r\nContent-Length: -1\r\n\r\n",), "bad Content-Length"),
        ((b"HTTP/1.1 200 A\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",), "bad chunk size"),
    ],
)
def test_broken_answers_are_protocol_errors(pieces: tuple[bytes, ...], message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        read_response(feeder(*pieces))


def test_a_request_is_the_tenants_head_the_key_and_the_body() -> None:
    head = request_head("/v1/payments", "127.0.0.1:8080", "sk_1")
    assert post_request(head, "r1-k7", b'{"a":1}') == (
        b"POST /v1/payments HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
        b"User-Agent: payments-testbed-loadtest\r\nAuthorization: Bearer sk_1\r\n"
        b"Content-Type: application/json\r\nIdempotency-Key: r1-k7\r\nContent-Length: 7\r\n\r\n"
        b'{"a":1}'
    )
