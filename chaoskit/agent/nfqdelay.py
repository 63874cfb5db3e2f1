"""Delay the packets a network namespace receives, in user space, where the kernel has no netem.

Started inside a pod's network namespace for a latency fault (by
:mod:`chaoskit.faults.shaping`, from the node or the injector agent). An
iptables rule in the namespace's ``mangle`` table sends the packets to be
delayed to an NFQUEUE; this process reads the queue over netlink (metadata
only, never the payload) and gives each packet its verdict ``accept`` once it
has waited the delay, plus a uniform jitter. Releases keep the packets'
order (a packet never leaves before one queued ahead of it), so one batch
verdict releases everything due. Every packet is delayed, connections
opened before the fault as much as new ones: nothing is proxied or reset.

Safe by construction: the rule carries ``--queue-bypass``, so when no reader
is bound (this process died or was never started) packets pass undelayed, and
the queue fails open when full. The process ends by itself when its rule is
gone from the namespace (checked every second), when no other process is left
in the namespace, or on SIGTERM/SIGINT, each time releasing what it holds.

Stdlib only, one file: it is copied to the node as it is and run there with
``python3``.
"""

from __future__ import annotations

import argparse
import errno
import os
import random
import select
import signal
import socket
import struct
import sys
import time
from collections import deque

from chaoskit.agent.helperlib import Watch

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_CONFIG = 2
NFQNL_MSG_VERDICT_BATCH = 3
NLM_F_REQUEST = 1
NLM_F_ACK = 4
NLMSG_ERROR = 2
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQA_CFG_MASK = 4
NFQA_CFG_FLAGS = 5
NFQNL_CFG_CMD_BIND = 1
NFQNL_CFG_CMD_UNBIND = 2
NFQNL_COPY_META = 1
NFQA_CFG_F_FAIL_OPEN = 1
NF_ACCEPT = 1
SOL_NETLINK = 270
NETLINK_NO_ENOBUFS = 5
SO_RCVBUFFORCE = 33

MAX_QUEUED = 65536
"""Packets the kernel holds for the queue before it lets the rest pass undelayed (fail open)."""


def attribute(kind: int, data: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    raw = struct.pack("=HH", 4 + len(data), kind) + data
    return raw + b"\0" * (-len(raw) % 4)


def message(kind: int, queue: int, attributes: bytes, seq: int, flags: int = NLM_F_REQUEST) -> bytes:
    """A nfnetlink message of the queue subsystem for queue number ``queue``."""
    body = struct.pack("!BBH", socket.AF_UNSPEC, 0, queue) + attributes
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | kind, flags, seq, 0) + body


def config_messages(queue: int, maxlen: int = MAX_QUEUED) -> list[bytes]:
    """Bind ``queue``, copy metadata only, hold up to ``maxlen`` packets, fail open when full; each acked."""
    flags = NLM_F_REQUEST | NLM_F_ACK
    bind = attribute(NFQA_CFG_CMD, struct.pack("!BBH", NFQNL_CFG_CMD_BIND, 0, socket.AF_INET))
    params = attribute(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META))
    limits = attribute(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", maxlen))
    fail_open = attribute(NFQA_CFG_MASK, struct.pack("!I", NFQA_CFG_F_FAIL_OPEN)) + attribute(
        NFQA_CFG_FLAGS, struct.pack("!I", NFQA_CFG_F_FAIL_OPEN)
    )
    return [
        message(NFQNL_MSG_CONFIG, queue, a, seq, flags) for seq, a in enumerate((bind, params, limits, fail_open), 1)
    ]


def unbind_message(queue: int) -> bytes:
    return message(
        NFQNL_MSG_CONFIG, queue, attribute(NFQA_CFG_CMD, struct.pack("!BBH", NFQNL_CFG_CMD_UNBIND, 0, 0)), 99
    )


def verdict_message(queue: int, packet_id: int) -> bytes:
    """Accept every packet of the queue up to and including ``packet_id``."""
    return message(
        NFQNL_MSG_VERDICT_BATCH, queue, attribute(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, packet_id)), 0
    )


def parse(data: bytes) -> tuple[list[int], list[int]]:
    """The packet ids and the (non-zero) error codes in a buffer of netlink messages."""
    ids: list[int] = []
    errors: list[int] = []
    offset = 0
    while offset + 16 <= len(data):
        length, kind, _flags, _seq, _pid = struct.unpack_from("=IHHII", data, offset)
        if length < 16 or offset + length > len(data):
            break
        if kind == NLMSG_ERROR:
            (code,) = struct.unpack_from("=i", data, offset + 16)
            if code:
                errors.append(-code)
        elif kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            at = offset + 20
            while at + 4 <= offset + length:
                size, attr = struct.unpack_from("=HH", data, at)
                if size < 4:
                    break
                if attr & 0x7FFF == NFQA_PACKET_HDR:
                    ids.append(struct.unpack_from("!I", data, at + 4)[0])
                at += size + (-size % 4)
        offset += length + (-length % 4)
    return ids, errors


class Schedule:
    """When each queued packet may leave: its arrival plus the delay and a jitter, never before the one ahead."""

    def __init__(self, delay: float, jitter: float, rng: random.Random | None = None) -> None:
        self.delay = delay
        self.jitter = jitter
        self.rng = rng or random.Random()
        self.pending: deque[tuple[float, int]] = deque()
        self._last = 0.0

    def add(self, packet_id: int, now: float) -> None:
        wait = self.delay + (self.rng.uniform(-self.jitter, self.jitter) if self.jitter else 0.0)
        due = max(self._last, now + max(0.0, wait))
        self._last = due
        self.pending.append((due, packet_id))

    def due(self, now: float) -> int | None:
        """The last id whose time has come (all before it leave with it), or None."""
        last = None
        while self.pending and self.pending[0][0] <= now:
            last = self.pending.popleft()[1]
        return last

    def wait(self, now: float, idle: float) -> float:
        return max(0.0, self.pending[0][0] - now) if self.pending else idle

    def last(self) -> int | None:
        return self.pending[-1][1] if self.pending else None


def open_queue(queue: int) -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.bind((0, 0))
    for option, value in ((SO_RCVBUFFORCE, 8 << 20),):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, value)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, value)
    try:
        sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
    except OSError:
        pass
    for request in config_messages(queue):
        sock.send(request)
        _ids, errors = parse(sock.recv(65536))
        if errors:
            raise OSError(errors[0], f"configuring NFQUEUE {queue}: {os.strerror(errors[0])}")
    return sock


def serve(queue: int, delay: float, jitter: float, tag: str | None) -> str:
    """Hold and release the queue's packets until told to stop; the reason it stopped."""
    sock = open_queue(queue)
    sock.setblocking(False)
    schedule = Schedule(delay, jitter)
    watch = Watch("mangle", tag)

    def on_signal(signum: int, _frame: object) -> None:
        watch.reason = f"signal {signum}"
        watch.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    watch.start()
    print(f"ready queue={queue} delay={delay * 1000:g}ms jitter={jitter * 1000:g}ms", flush=True)
    try:
        while not watch.stop.is_set():
            ready, _, _ = select.select([sock], [], [], min(schedule.wait(time.monotonic(), 0.5), 0.5))
            now = time.monotonic()
            if ready:
                while True:
                    try:
                        data = sock.recv(262144)
                    except BlockingIOError:
                        break
                    except OSError as exc:
                        if exc.errno == errno.ENOBUFS:
                            continue
                        raise
                    ids, _errors = parse(data)
                    for packet_id in ids:
                        schedule.add(packet_id, now)
            last = schedule.due(time.monotonic())
            if last is not None:
                sock.send(verdict_message(queue, last))
    finally:
        last = schedule.last()
        if last is not None:
            sock.send(verdict_message(queue, last))
        try:
            sock.send(unbind_message(queue))
        except OSError:
            pass
        sock.close()
    return watch.reason or "stopped"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queue", type=int, required=True, help="the NFQUEUE number the rule sends packets to")
    parser.add_argument("--delay-ms", type=float, required=True)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--tag", help="the rule's comment: exit once no rule carries it")
    args = parser.parse_args(argv)
    try:
        why = serve(args.queue, args.delay_ms / 1000, args.jitter_ms / 1000, args.tag)
    except OSError as exc:
        print(f"chaoskit-nfqdelay: {exc}", file=sys.stderr, flush=True)
        return 3
    print(f"stopped: {why}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
