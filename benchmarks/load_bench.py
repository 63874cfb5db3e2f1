"""Throughput of the load harness on this machine, printed, never asserted.

    python benchmarks/load_bench.py [--users 20] [--seconds 10] [--server-processes 1] [--workers 0,1,2]

Runs the built-in FastHttpUser through :class:`chaoskit.load.Load` against a
trivial responder on 127.0.0.1 and prints: requests a second over the measured
run; the worker's CPU (Locust is one gevent thread, so one core at most) and
requests per worker CPU-second, which is the throughput per core; and whether
the record stream kept up (records received equal to the requests Locust
counted, and the lag from a request's end to its record reaching the test
process). Target: at least 5,000 requests a second. With ``--workers 0,1,2``
it runs once per count of Locust workers (``LoadSpec.workers``; 0 is one
process with no master) and prints each one's throughput against the first's.
``benchmarks/distributed_bench.py`` compares the workers with plain Locust's.

The responder is raw asyncio in processes of its own (SO_REUSEPORT when more
than one), writing one canned keep-alive response per request head, so it costs
a fraction of what Locust does per request and the figure is the harness's,
not the server's; its CPU is printed too, to show it had room to spare.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


class Responder(asyncio.Protocol):
    """Answers every request head with the canned response; GETs carry no body."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        heads = self.buffer.count(b"\r\n\r\n")
        if heads:
            self.buffer = self.buffer[self.buffer.rfind(b"\r\n\r\n") + 4 :]
            self.transport.write(RESPONSE * heads)


def serve(port: int) -> None:
    """Serve on the port until stdin closes (the benchmark ended or died)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Responder, sock=sock, backlog=1024)
        print("listening", flush=True)
        stdin_closed = loop.create_future()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        loop.create_task(reader.read()).add_done_callback(lambda _: stdin_closed.set_result(None))
        async with server:
            await stdin_closed

    asyncio.run(main())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User plus system CPU of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--server-processes", type=int, default=1)
    parser.add_argument("--workers", default="0", help="comma-separated Locust worker counts (0: no master)")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return

    port = free_port()
    command = [sys.executable, __file__, "--serve", str(port)]
    servers = [
        subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE) for _ in range(args.server_processes)
    ]
    rates: list[tuple[int, float]] = []
    try:
        for s in servers:
            assert s.stdout is not None
            if s.stdout.readline() != b"listening\n":
                raise SystemExit("the responder did not start")
        print(f"cores: {os.cpu_count()} ({len(os.sched_getaffinity(0))} usable); python {sys.version.split()[0]}")
        for workers in [int(n) for n in args.workers.split(",")]:
            rates.append((workers, measure(port, servers, args, workers)))
    finally:
        for s in servers:
            assert s.stdin is not None and s.stdout is not None
            s.stdin.close()
            s.stdout.close()
        for s in servers:
            s.wait(timeout=10)
    if len(rates) > 1:
        base_workers, base = rates[0]
        for workers, rate in rates[1:]:
            print(f"{workers} Locust worker(s): {rate / base:.2f}x the requests/s of {base_workers}")


def measure(port: int, servers: list[subprocess.Popen[bytes]], args: argparse.Namespace, workers: int) -> float:
    """One measured run with ``workers`` Locust workers (0: one process, no master); print its figures and
    return its requests/s."""
    from chaoskit.load import Load, LoadSpec

    spec = LoadSpec(
        f"http://127.0.0.1:{port}", run_seconds=args.seconds, users=args.users, spawn_rate=1000, workers=workers or None
    )
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    parent_before = time.process_time()
    with Load(spec) as load:
        worker_at_warm = sum(cpu_seconds(pid) for pid in load.pids)
        server_at_warm = sum(cpu_seconds(s.pid) for s in servers)
        result = load.wait()
    parent_cpu = time.process_time() - parent_before
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    worker_total = (children.ru_utime + children.ru_stime) - (children_before.ru_utime + children_before.ru_stime)
    server_cpu = sum(cpu_seconds(s.pid) for s in servers) - server_at_warm

    measured = result.measured()
    wall = result.ended_at - result.warmup_ended_at
    worker_cpu = worker_total - worker_at_warm  # the measured run (plus the workers' stop)
    rate = len(measured) / wall
    failed = sum(not r.ok for r in measured)
    stream = result.stream
    where = f"on {workers} Locust worker(s) under a master" if workers else "in one process"
    print(f"load: {args.users} FastHttpUser users {where}, no think time, {wall:.1f} s measured")
    print(f"  throughput: {rate:,.0f} requests/s ({len(measured):,} requests, {failed} failed) (target >= 5,000)")
    print(
        f"  worker CPU: {worker_cpu / wall:.2f} cores -> {len(measured) / worker_cpu:,.0f} requests per worker "
        "CPU-second"
    )
    print(
        f"  responder CPU: {server_cpu / wall:.2f} cores over {args.server_processes} process(es); "
        f"test process (reader threads): {parent_cpu / wall:.2f} cores over the whole run"
    )
    print(
        f"  record stream: {stream.received:,} records received, Locust counted {stream.locust_requests:,}: "
        f"{'kept up' if stream.kept_up else 'DID NOT keep up'}; "
        f"lag mean {stream.mean_lag_ms:.1f} ms, max {stream.max_lag_ms:.1f} ms",
        flush=True,
    )
    return rate


if __name__ == "__main__":
    main()
