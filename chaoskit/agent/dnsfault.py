"""Answer chosen DNS names wrongly for one network namespace; forward every other query untouched.

Started inside a pod's network namespace for a DNS fault (by
:mod:`chaoskit.faults.dns`, from the node or the injector agent). ``nat``
rules in the namespace redirect the pod's queries (UDP and TCP port 53) to
this process. A query for one of the fault's names (the name itself, or any
name that begins with it and a dot: the resolver's search-path expansions of
``backend`` are ``backend.shop.svc.cluster.local`` and so on) gets the fault's
answer: NXDOMAIN, SERVFAIL, a wrong address, or the true answer late. Every
other query goes to the pod's own nameserver, from a socket marked with
``--mark`` so the redirect lets it pass, and its answer comes back as it was.

It ends by itself when its rules are gone from the namespace (checked every
second) or no other process is left in it, and on SIGTERM/SIGINT. Stdlib
only, one file: it is copied to the node as it is and run with ``python3``.
"""

from __future__ import annotations

import argparse
import select
import signal
import socket
import struct
import sys
import threading
import time

from chaoskit.agent.helperlib import Watch

SO_MARK = 36
UPSTREAM_TIMEOUT = 3.0
ANSWERS = ("nxdomain", "servfail", "address", "delay")
TTL = 1


def question(message: bytes) -> tuple[str, int, int] | None:
    """The first question's name (lower case, no trailing dot), its type, and where the question ends."""
    if len(message) < 12 or struct.unpack_from("!H", message, 4)[0] < 1:
        return None
    labels = []
    at = 12
    while at < len(message):
        length = message[at]
        if length == 0:
            at += 1
            break
        if length & 0xC0 or at + 1 + length > len(message):
            return None
        labels.append(message[at + 1 : at + 1 + length].decode("ascii", "replace").lower())
        at += 1 + length
    else:
        return None
    if at + 4 > len(message):
        return None
    qtype = struct.unpack_from("!H", message, at)[0]
    return ".".join(labels), qtype, at + 4


def matches(name: str, names: list[str]) -> bool:
    """Whether ``name`` is one of ``names`` or a search-path expansion of one (the name, a dot, more)."""
    return any(name == n or name.startswith(n + ".") for n in names)


def reply(message: bytes, end: int, rcode: int, address: str | None = None, qtype: int = 1) -> bytes:
    """A response to ``message`` with its question, ``rcode``, and an A record when ``address`` is given."""
    ident, flags = struct.unpack_from("!HH", message, 0)
    answers = 1 if address and qtype == 1 else 0
    header = struct.pack("!HHHHHH", ident, 0x8000 | (flags & 0x0100) | 0x0080 | rcode, 1, answers, 0, 0)
    body = message[12:end]
    if answers:
        assert address is not None
        body += struct.pack("!HHHIH", 0xC00C, 1, 1, TTL, 4) + socket.inet_aton(address)
    return header + body


class Responder:
    def __init__(self, names: list[str], answer: str, address: str | None, delay: float, upstream: str, mark: int):
        self.names = [n.lower().rstrip(".") for n in names]
        self.answer = answer
        self.address = address
        self.delay = delay
        self.upstream = upstream
        self.mark = mark
        self.hits = 0

    def _forward_udp(self, query: bytes) -> bytes | None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_MARK, self.mark)
            sock.settimeout(UPSTREAM_TIMEOUT)
            sock.sendto(query, (self.upstream, 53))
            return sock.recv(65535)
        except OSError:
            return None
        finally:
            sock.close()

    def _forward_tcp(self, query: bytes) -> bytes | None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_MARK, self.mark)
            sock.settimeout(UPSTREAM_TIMEOUT)
            sock.connect((self.upstream, 53))
            sock.sendall(struct.pack("!H", len(query)) + query)
            return read_framed(sock)
        except OSError:
            return None
        finally:
            sock.close()

    def answer_for(self, query: bytes, tcp: bool = False) -> bytes | None:
        """The response to send (None: none, the client retries or times out)."""
        asked = question(query)
        forward = self._forward_tcp if tcp else self._forward_udp
        if asked is None or not matches(asked[0], self.names):
            return forward(query)
        self.hits += 1
        _name, qtype, end = asked
        if self.answer == "nxdomain":
            return reply(query, end, 3)
        if self.answer == "servfail":
            return reply(query, end, 2)
        if self.answer == "address":
            return reply(query, end, 0, self.address, qtype)
        time.sleep(self.delay)
        return forward(query)


def read_framed(sock: socket.socket) -> bytes | None:
    head = b""
    while len(head) < 2:
        chunk = sock.recv(2 - len(head))
        if not chunk:
            return None
        head += chunk
    (length,) = struct.unpack("!H", head)
    data = b""
    while len(data) < length:
        chunk = sock.recv(length - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def serve(responder: Responder, port: int, tag: str | None) -> str:
    # 127.0.0.1, where the redirect sends the queries: a reply from any other address (the pod's own) would
    # miss the redirect's conntrack entry, reach the resolver from the wrong source, and be dropped by it.
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", port))
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind(("127.0.0.1", port))
    tcp.listen(64)
    watch = Watch("nat", tag)

    def on_signal(signum: int, _frame: object) -> None:
        watch.reason = f"signal {signum}"
        watch.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def on_udp(query: bytes, client: tuple[str, int]) -> None:
        response = responder.answer_for(query)
        if response is not None:
            udp.sendto(response, client)

    def on_tcp(conn: socket.socket) -> None:
        try:
            conn.settimeout(10)
            while True:
                query = read_framed(conn)
                if query is None:
                    break
                response = responder.answer_for(query, tcp=True)
                if response is None:
                    break
                conn.sendall(struct.pack("!H", len(response)) + response)
        except OSError:
            pass
        finally:
            conn.close()

    watch.start()
    print(f"ready port={port} answer={responder.answer} names={','.join(responder.names)}", flush=True)
    while not watch.stop.is_set():
        ready, _, _ = select.select([udp, tcp], [], [], 0.5)
        for sock in ready:
            if sock is udp:
                query, client = udp.recvfrom(65535)
                threading.Thread(target=on_udp, args=(query, client), daemon=True).start()
            else:
                conn, _ = tcp.accept()
                threading.Thread(target=on_tcp, args=(conn,), daemon=True).start()
    udp.close()
    tcp.close()
    return watch.reason or "stopped"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the pod's own nameserver (an IPv4 address)")
    parser.add_argument("--name", action="append", required=True, dest="names")
    parser.add_argument("--answer", choices=ANSWERS, required=True)
    parser.add_argument("--address", help="the wrong address, for --answer address")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="for --answer delay")
    parser.add_argument("--mark", type=lambda v: int(v, 0), required=True, help="the mark of forwarded queries")
    parser.add_argument("--tag", help="the rules' comment: exit once no rule carries it")
    args = parser.parse_args(argv)
    responder = Responder(args.names, args.answer, args.address, args.delay_ms / 1000, args.upstream, args.mark)
    try:
        why = serve(responder, args.port, args.tag)
    except OSError as exc:
        print(f"chaoskit-dnsfault: {exc}", file=sys.stderr, flush=True)
        return 3
    print(f"stopped: {why}; {responder.hits} queries answered wrongly", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
