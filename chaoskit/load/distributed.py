"""Locust's own distributed mode: a master in the load process, workers that send it every request.

The load process (:mod:`chaoskit.load.worker`, role ``master``) runs a Locust
``MasterRunner`` bound to 127.0.0.1 on a free port, and N ``WorkerRunner``
processes connect to it over Locust's master/worker protocol (ZeroMQ):

* **on this machine**, each worker is ``python -m chaoskit.load.worker`` (role
  ``worker``), started by the master with its configuration on stdin; it
  stops when that stdin closes, so no worker outlives its master for long;
* **in the cluster** (role ``pod``, :mod:`chaoskit.load.pods`), each worker
  is a pod that cannot reach this machine. The pod listens on its own
  127.0.0.1:5557 for a *tunnel*: the runner opens a port-forward to it, the
  master connects to that forward and carries the bytes to its own port, and
  the pod carries them to its Locust worker, which dials 127.0.0.1:5558 as its
  master. Nothing listens on the pod's network, so no other pod can pose as the
  master and steer the load.

Every request's record travels to the master in Locust's own worker-to-master
messages (``chaoskit_records``, a batch every 20 ms or 1,000 records), and the
master writes it to the runner's pipe exactly as a one-process load does
(:mod:`chaoskit.load.wire`), so the runner reads one stream whatever the
workers. At the end the master sends each worker ``chaoskit_finish``: the
worker stops its users, sends its last records, Locust's last statistics and
``chaoskit_finished`` with its count of records sent, in that order on one
connection. The master's ``stopped`` event then carries Locust's own totals as
the master aggregated them from the workers' statistics: the runner's
completeness check compares the records it received against them, across all
workers.

A worker lost mid-run (its process exits, its tunnel closes, or it goes
:data:`SILENT_SECONDS` without a heartbeat or a record) is not replaced and its users are not handed to the
others: the master sends ``worker_lost`` saying which and how, and stops the
whole load. The result then says its records are not the whole run.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

# Only the load process imports this module, after Locust has patched the interpreter with gevent.
import gevent  # type: ignore[import-untyped]
import gevent.event  # type: ignore[import-untyped]
import gevent.os  # type: ignore[import-untyped]

from chaoskit.load.locusts import (
    EXIT_BAD_CONFIG,
    EXIT_OK,
    EXIT_WORKER_LOST,
    FLUSH_RECORDS,
    FLUSH_SECONDS,
    RecordStream,
    at_stdin_eof,
    flush_forever,
    request_fields,
    run_phases,
    user_class,
)
from chaoskit.load.spec import LoadSpec
from chaoskit.load.wire import POD_MASTER_PORT, TUNNEL_PORT, WorkerEvent

RECORDS = "chaoskit_records"
"""Worker to master: ``{"r": [[started, name, latency_ms, ok, error, length], ...]}``."""
FINISH = "chaoskit_finish"
"""Master to worker: stop the users, send what is left, then say :data:`FINISHED`."""
FINISHED = "chaoskit_finished"
"""Worker to master, last: ``{"sent": records sent in all}``."""

CONNECT_SECONDS = 30.0
"""How long the master waits for all its workers to connect before it gives up."""
FINISH_SECONDS = 5.0
"""How long the master waits for every worker's last records at the end."""
WATCH_SECONDS = 0.2
SILENT_SECONDS = 15.0
"""How long a worker may go unheard (no heartbeat, no records) before it counts as lost."""
POD_LIFETIME_MARGIN_S = 120.0


def _lifetime(spec: LoadSpec) -> float:
    """Seconds a worker may live at most: connect, warm-up, grace, run, finish, and a margin."""
    return (
        CONNECT_SECONDS
        + spec.warmup_seconds
        + spec.warmup_grace_seconds
        + spec.run_seconds
        + FINISH_SECONDS
        + POD_LIFETIME_MARGIN_S
    )


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy bytes one way until either side closes, then shut both down."""
    try:
        while data := source.recv(1 << 16):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _splice(a: socket.socket, b: socket.socket) -> Any:
    """Carry bytes both ways between two sockets; return the two greenlets."""

    return [gevent.spawn(_pump, a, b), gevent.spawn(_pump, b, a)]


class Master:
    """The master's side: its workers, their records, and who was lost."""

    def __init__(self, spec: LoadSpec, stream: RecordStream, config: dict[str, Any]) -> None:

        self.spec = spec
        self.stream = stream
        self.count = int(config["workers"])
        self.tunnels: list[dict[str, Any]] = list(config.get("tunnels") or [])
        self.stop = gevent.event.Event()
        self.first_success = gevent.event.Event()
        self.all_finished = gevent.event.Event()
        self.finished: dict[str, int] = {}
        self.received: collections.Counter[str] = collections.Counter()
        self.lost: str | None = None
        self.ending = False
        self.children: list[subprocess.Popen[bytes]] = []
        self.tunnel_closed: dict[str, str] = {}
        self.expected: set[str] = set()
        """The workers that connected before the load started: messages from any other are ignored."""
        self.heard: dict[str, float] = {}
        """When each worker was last heard from (a heartbeat or records), monotonic."""
        self.tunnel_greenlets: list[Any] = []

    def hear(self, node: str) -> None:
        self.heard[node] = time.monotonic()

    def on_heartbeat(self, client_id: str, timestamp: float, **kwargs: Any) -> None:
        self.hear(client_id)

    def on_records(self, environment: Any, msg: Any, **kwargs: Any) -> None:
        if msg.node_id not in self.expected:
            return  # not one of this load's workers (something else that found the master's port)
        self.hear(msg.node_id)
        batch = msg.data["r"]
        for started, name, latency_ms, ok, error, length in batch:
            self.stream.add(float(started), str(name), float(latency_ms), bool(ok), error, int(length))
        self.received[msg.node_id] += len(batch)
        if self.stream.succeeded and not self.first_success.is_set():
            self.first_success.set()
        if self.stream.broken:
            self.stop.set()

    def on_finished(self, environment: Any, msg: Any, **kwargs: Any) -> None:
        if msg.node_id not in self.expected:
            return
        self.finished[msg.node_id] = int(msg.data["sent"])
        if len(self.finished) >= len(self.expected):
            self.all_finished.set()

    def start_local_workers(self, port: int) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        config = {"role": "worker", "spec": _spec_json(self.spec), "master_port": port, "workers": self.count}
        line = json.dumps(config).encode() + b"\n"
        for _ in range(self.count):
            child = subprocess.Popen(
                [sys.executable, "-m", "chaoskit.load.worker"], stdin=subprocess.PIPE, env=env, start_new_session=True
            )
            self.children.append(child)
            assert child.stdin is not None
            child.stdin.write(line)
            child.stdin.flush()  # stdin stays open: its end of file tells the worker its master is gone

    def start_tunnels(self, port: int) -> None:

        for tunnel in self.tunnels:
            name, forward = str(tunnel["name"]), int(tunnel["port"])
            self.tunnel_greenlets.append(gevent.spawn(self._tunnel, name, forward, port))

    def _tunnel(self, name: str, forward_port: int, master_port: int) -> None:
        """Carry one pod's worker to the master through its port-forward, retrying until bytes flow."""
        deadline = time.monotonic() + CONNECT_SECONDS
        while not self.stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                self.tunnel_closed[name] = f"its tunnel never opened within {CONNECT_SECONDS:g} s"
                return
            first = b""
            try:
                outside = socket.create_connection(("127.0.0.1", forward_port), timeout=left)
                outside.settimeout(left)
                first = outside.recv(1 << 16)  # a forward whose stream could not open closes at once
            except OSError as exc:
                self.tunnel_closed[name] = f"its port-forward (127.0.0.1:{forward_port}) failed: {exc}"
                return
            if not first:
                outside.close()
                gevent.sleep(0.5)
                continue
            outside.settimeout(None)
            try:
                inside = socket.create_connection(("127.0.0.1", master_port))
                inside.sendall(first)
            except OSError as exc:
                outside.close()
                self.tunnel_closed[name] = f"its tunnel could not reach the master: {exc}"
                return
            gevent.joinall(_splice(outside, inside))
            self.tunnel_closed[name] = f"its tunnel closed at {_clock(time.time())}"
            return

    def workers_alive(self, runner: Any) -> str | None:
        """None while every worker is there (or the run is ending); else which went, and how.

        A process that exits and a tunnel that closes are certain. Silence is judged over
        :data:`SILENT_SECONDS`, not Locust's 3 heartbeats: a pod's heartbeats come through the API server,
        which a fault may slow, and a worker that is only late must not end the run.
        """
        if self.ending:
            return None
        for index, child in enumerate(self.children):
            code = child.poll()
            if code is not None:
                how = f"status {code}" if code >= 0 else f"killed by {signal.Signals(-code).name}"
                which = f"load worker {index + 1} of {self.count} (pid {child.pid})"
                return f"{which} exited ({how}) at {_clock(time.time())}"
        for name, why in self.tunnel_closed.items():
            return f"load worker pod {name}: {why}"
        now = time.monotonic()
        for node in sorted(self.expected - set(self.finished)):
            silent = now - self.heard.get(node, now)
            if silent > SILENT_SECONDS:
                return f"load worker {node} was silent for {silent:.0f} s (no heartbeat, no records)"
        present = {c.id for c in runner.clients.all}
        gone = sorted(self.expected - present - set(self.finished))
        if gone:
            return f"load worker {gone[0]} quit at {_clock(time.time())}"
        return None

    def watch(self, runner: Any) -> None:
        while not self.stop.is_set():
            gevent.sleep(WATCH_SECONDS)
            lost = self.workers_alive(runner)
            if lost is not None and self.lost is None:
                self.lost = lost
                self.stream.event(WorkerEvent("worker_lost", time.time(), lost))
                self.stop.set()
                return

    def close(self) -> None:
        """Stop the local workers: their stdin closes, then SIGTERM, then SIGKILL."""
        for child in self.children:
            if child.stdin is not None:
                try:
                    child.stdin.close()
                except OSError:
                    pass
        deadline = time.monotonic() + FINISH_SECONDS
        for child in self.children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.terminate()
        for child in self.children:
            try:
                child.wait(timeout=2)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at))


def _spec_json(spec: LoadSpec) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(spec)


def run_master(spec: LoadSpec, out_fd: int, watch_stdin: bool, config: dict[str, Any]) -> int:
    """Run the load as Locust's master of ``config["workers"]`` workers; stream every record to ``out_fd``."""
    from locust.env import Environment

    stream = RecordStream(out_fd)
    try:
        user = user_class(spec)
    except Exception as exc:
        stream.event(WorkerEvent("error", time.time(), f"{type(exc).__name__}: {exc}"))
        return EXIT_BAD_CONFIG
    master = Master(spec, stream, config)
    gevent.signal_handler(signal.SIGTERM, master.stop.set)
    gevent.signal_handler(signal.SIGINT, master.stop.set)
    env = Environment(user_classes=[user], host=spec.host)
    runner = env.create_master_runner("127.0.0.1", 0)
    runner.register_message(RECORDS, master.on_records)
    runner.register_message(FINISHED, master.on_finished)
    env.events.heartbeat_sent.add_listener(master.on_heartbeat)  # type: ignore[no-untyped-call]
    port = int(runner.server.port)

    helpers = [gevent.spawn(flush_forever, stream, master.stop)]
    if watch_stdin:
        helpers.append(gevent.spawn(at_stdin_eof, master.stop.set))
    try:
        if master.tunnels:
            master.start_tunnels(port)
        else:
            master.start_local_workers(port)
        deadline = time.monotonic() + CONNECT_SECONDS
        while runner.worker_count < master.count and time.monotonic() < deadline and not master.stop.is_set():
            lost = master.workers_alive(runner)
            if lost is not None:
                stream.event(WorkerEvent("error", time.time(), f"{lost} before the load started"))
                return EXIT_BAD_CONFIG
            gevent.sleep(0.05)
        if runner.worker_count < master.count:
            if master.stop.is_set():
                stream.event(WorkerEvent("stopped", time.time(), "stopped before the workers connected", 0, 0))
                return EXIT_OK
            message = (
                f"only {runner.worker_count} of {master.count} load workers connected to the master "
                f"within {CONNECT_SECONDS:g} s"
            )
            stream.event(WorkerEvent("error", time.time(), message))
            return EXIT_BAD_CONFIG
        master.expected = {c.id for c in runner.clients.all}
        for node in master.expected:
            master.hear(node)
        helpers.append(gevent.spawn(master.watch, runner))
        started = time.time()
        starter = gevent.spawn(runner.start, spec.users, spec.spawn_rate)
        helpers.append(starter)
        stream.event(WorkerEvent("started", started))
        status, reason = run_phases(spec, stream, master.stop, master.first_success)
        if master.lost is not None:
            status, reason = EXIT_WORKER_LOST, master.lost
        master.ending = True
        starter.kill(block=True)  # a ramp-up still handing out users must not restart them after the finish
        for node in sorted(master.expected):
            runner.send_message(FINISH, None, node)
        master.all_finished.wait(FINISH_SECONDS if master.lost is None else 1.0)  # a lost worker never says
        runner.quit()
        for node in sorted(master.expected):
            if node not in master.finished:
                print(f"chaoskit load master: worker {node} never sent its last records", file=sys.stderr)
            elif master.received[node] != master.finished[node]:
                sent, arrived = master.finished[node], master.received[node]
                print(f"chaoskit load master: worker {node} sent {sent} records, {arrived} arrived", file=sys.stderr)
        total = env.stats.total
        stream.event(WorkerEvent("stopped", time.time(), reason, total.num_requests, total.num_failures))
        return status
    finally:
        master.ending = True
        gevent.killall(helpers + master.tunnel_greenlets)
        master.close()


def run_worker(spec: LoadSpec, config: dict[str, Any], watch_stdin: bool, master_host: str = "127.0.0.1") -> int:
    """One Locust worker: connect to the master, run the users it hands out, send it every request."""
    from locust.env import Environment

    count = max(1, int(config.get("workers", 1)))
    port = int(config["master_port"])
    holder: dict[str, Any] = {}
    numbers = itertools.count()

    def next_user() -> int:
        """Worker i of n numbers its users i+1, i+1+n, ...: unique across workers, dense when users divide evenly."""
        index = max(0, int(getattr(holder.get("runner"), "worker_index", 0)))
        return index + 1 + next(numbers) * count

    try:
        user = user_class(spec, next_user)
    except Exception as exc:
        print(f"chaoskit load worker: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    env = Environment(user_classes=[user], host=spec.host)
    pending: list[list[Any]] = []
    sent = 0

    def flush() -> None:
        nonlocal sent
        if pending and "runner" in holder:
            batch = pending[:]
            pending.clear()
            holder["runner"].send_message(RECORDS, {"r": batch})
            sent += len(batch)

    def on_request(**kwargs: Any) -> None:
        pending.append(list(request_fields(**kwargs)))
        if len(pending) >= FLUSH_RECORDS:
            flush()

    env.events.request.add_listener(on_request)  # type: ignore[no-untyped-call]

    def master_gone() -> None:
        """Stdin's end: the master is gone. Before this worker has connected there is nothing to wind down."""
        if "runner" in holder:
            holder["runner"].quit()
        else:
            os._exit(0)

    helpers = [gevent.spawn(at_stdin_eof, master_gone)] if watch_stdin else []
    runner = env.create_worker_runner(master_host, port)  # blocks while it connects (Locust retries for minutes)
    holder["runner"] = runner

    def on_finish(environment: Any, msg: Any, **kwargs: Any) -> None:
        # No user may start after this: a late spawn from the master would run users past the finish.
        runner.start_worker = lambda *args, **kwargs: None  # type: ignore[method-assign]
        runner.stop()  # the users end here; a request cut off is in neither the records nor Locust's count
        flush()
        data: dict[str, Any] = {}
        env.events.report_to_master.fire(client_id=runner.client_id, data=data)  # type: ignore[no-untyped-call]
        runner.send_message("stats", data)
        runner.send_message(FINISHED, {"sent": sent})

    runner.register_message(FINISH, on_finish)

    def send_forever() -> None:
        while True:
            gevent.sleep(FLUSH_SECONDS)
            flush()

    gevent.signal_handler(signal.SIGTERM, runner.quit)
    gevent.signal_handler(signal.SIGINT, runner.quit)
    helpers.append(gevent.spawn(send_forever))
    runner.greenlet.join(timeout=_lifetime(spec))
    gevent.killall(helpers)
    if not runner.greenlet.ready():
        runner.quit()
    return EXIT_OK


def run_pod(spec: LoadSpec, config: dict[str, Any]) -> int:
    """A worker in a pod: its tunnel on the pod's 127.0.0.1, carried to its Locust worker, which it runs."""

    tunnel = socket.socket()
    tunnel.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tunnel.bind(("127.0.0.1", TUNNEL_PORT))
    tunnel.listen(1)
    local = socket.socket()
    local.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    local.bind(("127.0.0.1", POD_MASTER_PORT))
    local.listen(1)

    def serve() -> None:
        while True:
            outside, _ = tunnel.accept()
            print(f"chaoskit load worker pod: tunnel open at {_clock(time.time())}", file=sys.stderr)
            inside, _ = local.accept()
            gevent.joinall(_splice(outside, inside))
            print(f"chaoskit load worker pod: tunnel closed at {_clock(time.time())}", file=sys.stderr)

    server = gevent.spawn(serve)
    try:
        return run_worker(spec, {**config, "master_port": POD_MASTER_PORT}, watch_stdin=False)
    finally:
        server.kill()
