"""A stand-in payments endpoint for the traffic generator's tests, with faults on request.

    python fake_server.py [--stall-after N --stall SECONDS] [--fail-first-every K]

It answers POST /v1/payments 202 with a payment id, one per idempotency key (a repeated key gets
the same id with `Idempotency-Replay: true`), and GET /healthz. `--stall-after N`: the Nth POST
starts a stall of SECONDS during which no request is answered (every answer waits for its end),
as a paused process or a stop-the-world pause would. `--fail-first-every K`: the first sight of
every Kth key (by crc32) is answered 503, so the client must retry it with the same key. It
listens on a free port of 127.0.0.1 and prints `listening PORT`; plain asyncio, so that its own
cost stays far below the generator's.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
import zlib


class Server:
    def __init__(self, stall_after: int, stall: float, fail_first_every: int) -> None:
        self.stall_after = stall_after
        self.stall = stall
        self.fail_first_every = fail_first_every
        self.posts = 0
        self.stall_until = 0.0
        self.ids: dict[str, str] = {}

    def answer(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes, str]:
        if method == "GET" and path == "/healthz":
            return 200, b'{"status":"ok"}', ""
        if method != "POST" or path != "/v1/payments":
            return 404, b'{"status":404}', ""
        self.posts += 1
        loop = asyncio.get_running_loop()
        if self.posts == self.stall_after:
            self.stall_until = loop.time() + self.stall
        key = headers.get("idempotency-key", "")
        every = self.fail_first_every
        if key not in self.ids and every and zlib.crc32(key.encode()) % every == 0:
            self.ids[key] = ""  # seen: the next try succeeds
            return 503, b'{"status":503}', ""
        replay = bool(self.ids.get(key))
        if not replay:
            self.ids[key] = uuid.uuid4().hex
        extra = "Idempotency-Replay: true\r\n" if replay else ""
        return 202, b'{"id":"%s","status":"received"}' % self.ids[key].encode(), extra

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                lines = head.split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                await reader.readexactly(int(headers.get("content-length") or 0))
                status, body, extra = self.answer(method, path, headers)
                wait = self.stall_until - asyncio.get_running_loop().time()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(
                    b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                    b"%s\r\n%s" % (status, len(body), extra.encode(), body)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stall-after", type=int, default=0)
    parser.add_argument("--stall", type=float, default=0.0)
    parser.add_argument("--fail-first-every", type=int, default=0)
    args = parser.parse_args()
    server = Server(args.stall_after, args.stall, args.fail_first_every)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    print(f"listening {listener.sockets[0].getsockname()[1]}", flush=True)
    async with listener:
        await listener.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
