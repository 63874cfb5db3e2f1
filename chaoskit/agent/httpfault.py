"""Abort or delay a share of the HTTP requests a pod's port receives: a transparent HTTP/1.1 proxy in its namespace.

Started inside a pod's network namespace by an HTTP fault
(:mod:`chaoskit.faults.http`). A ``nat PREROUTING`` rule redirects the
port's incoming connections to this process; it reads each request, answers a
share of them itself with the fault's status (``--abort-percent``), holds a
share for ``--delay-ms`` (``--delay-percent``), and passes the rest to the
connection's original destination (``SO_ORIGINAL_DST``), relaying the
response. Requests and responses are framed by ``Content-Length`` or chunked
encoding, so kept-alive connections stay in step; a response without either
is relayed until the application closes it. A connection it cannot parse as
HTTP/1.1 is closed (the fault refuses a port that does not answer plain HTTP,
so that is a client's malformed request, not TLS it was not told about).

On SIGTERM it stops injecting and keeps relaying the connections it holds
(up to ``DRAIN_SECONDS``), so an undo does not cut live clients. Stdlib only.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import socket
import struct
import sys

from chaoskit.agent.helperlib import Watch

SO_ORIGINAL_DST = 80
MAX_HEAD = 64 * 1024
DRAIN_SECONDS = 10.0
REASONS = {400: "Bad Request", 429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway"}
REASONS |= {503: "Service Unavailable", 504: "Gateway Timeout"}


class Framing(ValueError):
    """A message the proxy cannot frame (it then relays raw bytes)."""


def parse_head(head: bytes) -> tuple[str, dict[str, str]]:
    """The start line and the headers (lower-case names) of a request or response head."""
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise Framing(f"bad header line {line!r}")
        headers[name.strip().lower()] = value.strip()
    return lines[0], headers


def body_kind(headers: dict[str, str], request: bool, status: int = 200, method: str = "GET") -> str | int:
    """How a message's body ends: a byte count, ``chunked``, or ``close`` (a response read until EOF)."""
    if not request and (method == "HEAD" or 100 <= status < 200 or status in (204, 304)):
        return 0
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return "chunked"
    if "content-length" in headers:
        try:
            return int(headers["content-length"])
        except ValueError:
            raise Framing(f"bad content-length {headers['content-length']!r}") from None
    return 0 if request else "close"


async def read_body(reader: asyncio.StreamReader, kind: str | int) -> bytes:
    """The body bytes as they came (chunked encoding kept), by ``kind``."""
    if kind == "close":
        return await reader.read()
    if kind == "chunked":
        parts = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            parts.append(size_line)
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, up to the empty line
                    line = await reader.readuntil(b"\r\n")
                    parts.append(line)
                    if line == b"\r\n":
                        return b"".join(parts)
            parts.append(await reader.readexactly(size + 2))
    return await reader.readexactly(int(kind)) if kind else b""


def canned(status: int, tag: str, keep_alive: bool) -> bytes:
    body = f"{status} {REASONS.get(status, 'Error')} (injected by chaoskit)\n".encode()
    head = [
        f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}",
        "Content-Type: text/plain",
        f"Content-Length: {len(body)}",
        f"X-Chaoskit-Fault: {tag}",
        "Connection: keep-alive" if keep_alive else "Connection: close",
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class Proxy:
    def __init__(self, abort_percent: float, status: int, delay_percent: float, delay: float, tag: str) -> None:
        self.abort_percent = abort_percent
        self.status = status
        self.delay_percent = delay_percent
        self.delay = delay
        self.tag = tag
        self.injecting = True
        self.rng = random.Random()
        self.counts = {"requests": 0, "aborted": 0, "delayed": 0}
        self.connections: set[asyncio.Task[None]] = set()

    def decide(self) -> str:
        """``abort``, ``delay`` or ``pass`` for the next request."""
        if not self.injecting:
            return "pass"
        roll = self.rng.uniform(0, 100)
        if roll < self.abort_percent:
            return "abort"
        if roll < self.abort_percent + self.delay_percent:
            return "delay"
        return "pass"

    async def handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        sock = client_w.get_extra_info("socket")
        try:
            raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
            port, packed = struct.unpack_from("!2xH4s", raw)
            upstream = (socket.inet_ntoa(packed), port)
        except OSError:
            client_w.close()
            return
        await self.serve(client_r, client_w, upstream)

    async def serve(
        self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter, upstream: tuple[str, int]
    ) -> None:
        up_r: asyncio.StreamReader | None = None
        up_w: asyncio.StreamWriter | None = None
        try:
            while True:
                try:
                    head = await client_r.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    return
                start, headers = parse_head(head)
                method = start.split(" ", 1)[0]
                body = await read_body(client_r, body_kind(headers, request=True))
                keep = headers.get("connection", "").lower() != "close"
                self.counts["requests"] += 1
                action = self.decide()
                if action == "abort":
                    self.counts["aborted"] += 1
                    client_w.write(canned(self.status, self.tag, keep))
                    await client_w.drain()
                    if not keep:
                        return
                    continue
                if action == "delay":
                    self.counts["delayed"] += 1
                    await asyncio.sleep(self.delay)
                if up_w is None:
                    up_r, up_w = await asyncio.open_connection(*upstream)
                assert up_r is not None
                up_w.write(head + body)
                await up_w.drain()
                response_head = await up_r.readuntil(b"\r\n\r\n")
                status_line, response_headers = parse_head(response_head)
                status = int(status_line.split(" ", 2)[1])
                kind = body_kind(response_headers, request=False, status=status, method=method)
                client_w.write(response_head + await read_body(up_r, kind))
                await client_w.drain()
                if kind == "close" or not keep or response_headers.get("connection", "").lower() == "close":
                    return
        except (Framing, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            return
        finally:
            for writer in (client_w, up_w):
                if writer is not None:
                    writer.close()


async def run(args: argparse.Namespace) -> str:
    proxy = Proxy(args.abort_percent, args.status, args.delay_percent, args.delay_ms / 1000, args.tag or "")
    watch = Watch("nat", args.tag)
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()

    def stop(reason: str) -> None:
        watch.reason = watch.reason or reason
        loop.call_soon_threadsafe(stopped.set)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop, f"signal {signum}")

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        proxy.connections.add(task)
        try:
            await proxy.handle(r, w)
        finally:
            proxy.connections.discard(task)

    server = await asyncio.start_server(handle, "0.0.0.0", args.port, limit=MAX_HEAD, reuse_address=True)
    watch.start()
    print(
        f"ready port={args.port} abort={args.abort_percent}% status={args.status} delay={args.delay_ms}ms", flush=True
    )
    while not stopped.is_set() and not watch.stop.is_set():
        try:
            await asyncio.wait_for(stopped.wait(), 0.5)
        except TimeoutError:
            pass
    proxy.injecting = False
    server.close()
    if proxy.connections:
        await asyncio.wait(proxy.connections, timeout=DRAIN_SECONDS)
    done = ", ".join(f"{n} {k}" for k, n in proxy.counts.items())
    return f"{watch.reason or 'stopped'}; {done}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="where the redirect sends the connections")
    parser.add_argument("--abort-percent", type=float, default=0.0)
    parser.add_argument("--status", type=int, default=503)
    parser.add_argument("--delay-percent", type=float, default=0.0)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--tag", help="the rules' comment: exit once no rule carries it")
    args = parser.parse_args(argv)
    try:
        why = asyncio.run(run(args))
    except OSError as exc:
        print(f"chaoskit-httpfault: {exc}", file=sys.stderr, flush=True)
        return 3
    print(f"stopped: {why}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
