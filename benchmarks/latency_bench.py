"""What the user-space latency delayer costs by itself, printed, never asserted.

    python benchmarks/latency_bench.py [--rounds 500] [--delays 0,20]   (as root)

Makes a throwaway network namespace joined to the host by a veth pair (both
ends on this machine, 10.250.0.0/30), runs a keep-alive echo server in it, and
times from the host, with no delayer, then with the delayer
(:mod:`chaoskit.agent.nfqdelay`, the very file a latency fault copies to a
node, behind the same NFQUEUE rule) at each configured delay:

- TCP handshakes (a SYN out, the SYN-ACK back through the queue);
- request/response round trips on one connection opened before the rule;
- a 20 MB transfer out of the namespace (its ACKs come back through the
  delayer: TCP's throughput under the delay).

The rule queues the namespace's incoming packets, as the fault's does.
``--egress`` queues its outgoing packets instead, the design not taken: the
sender's TCP counts packets held in a queue against its socket (TCP small
queues), and a bulk transfer collapses to a few packets per delay.

Target: at 0 ms configured delay the delayer adds under 1 ms at p50. The
namespace, its veth and every process started here are removed at the end.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DELAYER = ROOT / "chaoskit" / "agent" / "nfqdelay.py"
NETNS = "ckbench"
HOST_IP, NS_IP, PORT = "10.250.0.1", "10.250.0.2", 8099
TAG = "chaoskit:latency-bench"
QUEUE = 4242
BULK = 20_000_000

SERVER = r"""
import socket, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("{ip}", {port})); s.listen(512)
def serve(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        data = c.recv(65536)
        if not data:
            break
        if data.startswith(b"bulk"):
            block = b"x" * 65536
            left = {bulk}
            while left > 0:
                c.sendall(block[: min(left, len(block))]); left -= len(block)
        else:
            c.sendall(data)
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=60)


def setup() -> subprocess.Popen[bytes]:
    teardown()
    sh("ip", "netns", "add", NETNS)
    sh("ip", "link", "add", "ckb0", "type", "veth", "peer", "name", "ckb1")
    sh("ip", "link", "set", "ckb1", "netns", NETNS)
    sh("ip", "addr", "add", f"{HOST_IP}/30", "dev", "ckb0")
    sh("ip", "link", "set", "ckb0", "up")
    sh("ip", "netns", "exec", NETNS, "ip", "addr", "add", f"{NS_IP}/30", "dev", "ckb1")
    sh("ip", "netns", "exec", NETNS, "ip", "link", "set", "ckb1", "up")
    sh("ip", "netns", "exec", NETNS, "ip", "link", "set", "lo", "up")
    code = SERVER.format(ip=NS_IP, port=PORT, bulk=BULK)
    server = subprocess.Popen(["ip", "netns", "exec", NETNS, sys.executable, "-c", code])
    for _ in range(100):
        try:
            socket.create_connection((NS_IP, PORT), timeout=1).close()
            return server
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the echo server in the namespace never answered")


def teardown() -> None:
    sh("ip", "netns", "del", NETNS, check=False)
    sh("ip", "link", "del", "ckb0", check=False)


def rule(action: str, egress: bool) -> None:
    where = ("OUTPUT", "!", "-o", "lo") if egress else ("PREROUTING", "!", "-i", "lo")
    sh(
        *("ip", "netns", "exec", NETNS, "iptables", "-w", "-t", "mangle", action, *where),
        *("-m", "comment", "--comment", TAG, "-j", "NFQUEUE", "--queue-num", str(QUEUE), "--queue-bypass"),
    )


def measure(rounds: int) -> dict[str, list[float]]:
    handshakes = []
    for _ in range(rounds):
        start = time.perf_counter()
        socket.create_connection((NS_IP, PORT), timeout=5).close()
        handshakes.append((time.perf_counter() - start) * 1000)
    conn = socket.create_connection((NS_IP, PORT), timeout=5)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    trips = []
    for _ in range(rounds):
        start = time.perf_counter()
        conn.sendall(b"ping")
        conn.recv(64)
        trips.append((time.perf_counter() - start) * 1000)
    start = time.perf_counter()
    conn.sendall(b"bulk")
    got = 0
    while got < BULK:
        got += len(conn.recv(1 << 20))
    bulk = time.perf_counter() - start
    conn.close()
    return {"handshake": handshakes, "round trip": trips, "bulk": [bulk]}


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def report(label: str, figures: dict[str, list[float]], base: dict[str, list[float]] | None) -> None:
    for what in ("handshake", "round trip"):
        values = figures[what]
        p50, p90, p99 = statistics.median(values), pct(values, 90), pct(values, 99)
        added = f", p50 added {p50 - statistics.median(base[what]):+.3f} ms" if base else ""
        print(f"  {label:<22} {what:<11} p50 {p50:7.3f} ms  p90 {p90:7.3f} ms  p99 {p99:7.3f} ms{added}")
    rate = BULK * 8 / figures["bulk"][0] / 1e6
    seconds = figures["bulk"][0]
    print(f"  {label:<22} {BULK // 1_000_000} MB out of the namespace in {seconds:.3f} s ({rate:.0f} Mbit/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--delays", default="0,20", help="comma-separated configured delays in ms")
    parser.add_argument(
        "--egress",
        action="store_true",
        help="queue the namespace's outgoing packets instead of its incoming ones (the design not taken)",
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: it makes a network namespace")
    server = setup()
    try:
        print(f"{args.rounds} handshakes and {args.rounds} round trips from the host into a namespace on this machine")
        base = measure(args.rounds)
        report("no delayer", base, None)
        for delay in [float(d) for d in args.delays.split(",")]:
            command = [sys.executable, str(DELAYER), f"--queue={QUEUE}", f"--delay-ms={delay:g}", f"--tag={TAG}"]
            delayer = subprocess.Popen(
                ["ip", "netns", "exec", NETNS, *command],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert delayer.stdout is not None
            ready = delayer.stdout.readline()
            assert ready.startswith("ready"), ready
            rule("-I", args.egress)
            try:
                report(f"delayer at {delay:g} ms", measure(args.rounds if delay < 5 else 50), base)
            finally:
                rule("-D", args.egress)
                delayer.terminate()
                delayer.wait(timeout=10)
    finally:
        server.kill()
        server.wait()
        teardown()


if __name__ == "__main__":
    main()
