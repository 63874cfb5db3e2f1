"""The load layer against a stdlib HTTP server on 127.0.0.1: specs, the record stream, the worker's lifetime."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from chaoskit.errors import SpecError
from chaoskit.load import Load, LoadError, LoadSpec, RequestRecord, StreamStats, WarmupFailed, run_load, runner
from chaoskit.load.wire import LineDecoder, RecordEncoder, WorkerEvent
from chaoskit.load.worker import error_kind


class Handler(BaseHTTPRequestHandler):
    """200 on every path but /bad, which is 503."""

    def do_GET(self) -> None:
        status = 503 if self.path == "/bad" else 200
        body = b"ok\n" if status == 200 else b"unavailable\n"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class KeepAliveHandler(Handler):
    protocol_version = "HTTP/1.1"


class BodyHandler(KeepAliveHandler):
    """Keeps every POST's path, Content-Type and body."""

    seen: ClassVar[list[tuple[str, str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        BodyHandler.seen.append((self.path, self.headers.get("Content-Type", ""), body))
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a worker stopped mid-request resets its connection; that is expected here


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler] = KeepAliveHandler) -> Iterator[QuietServer]:
    server = QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def url(server: QuietServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def server() -> Iterator[QuietServer]:
    with serving() as server:
        yield server


@pytest.fixture
def closed_port() -> int:
    with serving() as server:
        port = server.server_address[1]
    return int(port)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def quick(host: str, **options: Any) -> LoadSpec:
    defaults: dict[str, Any] = {"run_seconds": 1.5, "warmup_seconds": 0.3, "users": 2, "timeout_seconds": 0.5}
    return LoadSpec(host, **(defaults | options))


def test_records_stream_successes_and_http_errors(server: QuietServer) -> None:
    spec = quick(url(server), paths=("/", "/bad"))
    with Load(spec) as load:
        seen_on_entry = load.records()
        load.mark("halfway")
        result = load.wait()
    assert any(r.ok for r in seen_on_entry), "warm-up ends only once a request succeeded"
    assert result.marks[0][1] == "halfway"
    assert result.started_at < result.warmup_ended_at <= result.marks[0][0] < result.ended_at
    # The worker stops by itself once the run time is over.
    assert spec.run_seconds <= result.ended_at - result.warmup_ended_at < spec.run_seconds + 1

    by_name = collections.defaultdict(list)
    for r in result.records:
        by_name[r.name].append(r)
    assert set(by_name) == {"/", "/bad"}
    assert all(r.ok and r.error is None and r.length == 3 for r in by_name["/"])
    assert all(not r.ok and r.error == "HTTP 503" and r.length == 12 for r in by_name["/bad"])
    assert all(
        r.latency_ms >= 0 and result.started_at <= r.started <= r.ended <= result.ended_at for r in result.records
    )
    assert len(result.measured()) > 10
    assert all(r.started >= result.warmup_ended_at for r in result.measured())
    assert result.stream.kept_up, result.stream
    assert result.stream.locust_failures == len(by_name["/bad"])
    assert load.pid is not None and gone(load.pid)


def test_server_gone_mid_run_gives_connection_refused() -> None:
    with ExitStack() as stack:
        # HTTP/1.0 closes after each response, so every request connects afresh.
        server = stack.enter_context(serving(Handler))
        with Load(quick(url(server), users=1, run_seconds=1.5)) as load:
            closing_at = time.time()  # a request in flight while the server shuts down may fail either way
            stack.close()
            closed_at = time.time()
            result = load.wait()
    before = [r for r in result.records if r.ended < closing_at]
    after = [r for r in result.records if r.started > closed_at + 0.1]
    assert before and all(r.ok for r in before)
    assert after and {r.error for r in after} == {"ConnectionRefusedError"}


def test_warmup_failure_says_why_and_leaves_nothing_running(closed_port: int) -> None:
    load = Load(quick(f"http://127.0.0.1:{closed_port}", warmup_seconds=0.2, timeout_seconds=0.2))
    with pytest.raises(WarmupFailed, match=r"no request to http://127\.0\.0\.1:\d+ succeeded .*ConnectionRefusedError"):
        with load:
            pass
    assert load.pid is not None and gone(load.pid)
    records = load.records()
    assert records and {r.error for r in records} == {"ConnectionRefusedError"}
    assert not any(r.ok for r in records)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_leaving_the_block_early_stops_the_worker(server: QuietServer, error: type[BaseException]) -> None:
    with pytest.raises(error):
        with Load(quick(url(server), run_seconds=60)) as load:
            pid = load.pid
            assert pid is not None and not gone(pid)
            started = time.monotonic()
            raise error("fault went wrong")
    assert time.monotonic() - started < 5
    assert gone(pid)
    stream = load.result().stream
    assert stream.kept_up, "SIGTERM lets the worker send its last records and its counts"


def test_user_locustfile_class_chosen_by_name(server: QuietServer, tmp_path: Path) -> None:
    locustfile = tmp_path / "users.py"
    locustfile.write_text(
        textwrap.dedent(
            """
            from locust import FastHttpUser, constant, task

            class Browse(FastHttpUser):
                wait_time = constant(0.01)

                @task
                def home(self):
                    self.client.get("/", name="home")

            class Break(FastHttpUser):
                @task
                def bad(self):
                    self.client.get("/bad")
            """
        )
    )
    result = run_load(quick(url(server), locustfile=str(locustfile), user_class="Browse", run_seconds=1))
    assert result.records and all(r.name == "home" and r.ok for r in result.records)

    with pytest.raises(LoadError, match=r"defines 2 runnable user classes \(Break, Browse\): choose one"):
        with Load(quick(url(server), locustfile=str(locustfile))):
            pass


def test_missing_user_class_lists_the_candidates(server: QuietServer, tmp_path: Path) -> None:
    locustfile = tmp_path / "one.py"
    locustfile.write_text(
        "from locust import HttpUser, task\n\nclass Only(HttpUser):\n    @task\n    def t(self): pass\n"
    )
    with pytest.raises(LoadError, match=r"no runnable user class 'Nope'; its user classes: Only"):
        with Load(quick(url(server), locustfile=str(locustfile), user_class="Nope")):
            pass


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"host": "http://10.0.0.1:80"}, r"refusing to send load to 'http://10\.0\.0\.1:80'"),
        ({"host": "http://example.com:8080"}, "refusing to send load"),
        ({"host": "https://127.0.0.1:8443"}, "refusing to send load"),
        ({"host": "http://127.0.0.1"}, "has no port"),
        ({"host": "http://127.0.0.1:99999"}, "not a valid URL"),
        ({"host": "http://localhost:8080/api"}, "put URL paths in paths"),
        ({"users": 0}, r"users must be a whole number in \[1, 1000\], not 0"),
        ({"users": 5000}, r"users must be a whole number in \[1, 1000\]"),
        ({"users": True}, "users must be a whole number"),
        ({"run_seconds": 0}, r"run_seconds must be in \(0, 3600\], not 0; every load run needs an end"),
        ({"run_seconds": 7200}, r"run_seconds must be in \(0, 3600\]"),
        ({"run_seconds": float("nan")}, "run_seconds must be a number"),
        ({"spawn_rate": 0}, r"spawn_rate must be in \(0, 1000\]"),
        ({"warmup_seconds": -1}, r"warmup_seconds must be in \[0, 600\]"),
        ({"wait_seconds": -0.5}, r"wait_seconds must be in \[0, 60\]"),
        ({"timeout_seconds": 0}, r"timeout_seconds must be in \(0, 60\]"),
        ({"rate_per_user": 0}, r"rate_per_user must be in \(0, 10000\]"),
        ({"rate_per_user": 5, "wait_seconds": 1}, "give wait_seconds or rate_per_user, not both"),
        ({"paths": "/"}, r"paths must be a tuple of paths, not the string '/'; write paths=\('/',\)"),
        ({"paths": ()}, "paths must name at least one URL path"),
        ({"paths": ("health",)}, "each path must start with /"),
        ({"user_class": "Web"}, "user_class='Web' needs locustfile"),
        ({"locustfile": "/nonexistent/locustfile.py"}, "does not exist"),
        ({"method": "post"}, "method must be one of GET, POST, PUT, PATCH, DELETE, not 'post'"),
        ({"body": "{}"}, "a body needs a method that sends one: give method='POST'"),
        ({"method": "POST", "body": '{"k": "$key"}'}, r"uses \$key; it may use only \$seq, \$user, \$uuid"),
        ({"method": "POST", "body": "cost: $5"}, r"has a bad \$ placeholder; write \$\$ for a dollar sign"),
        ({"method": "POST", "body": {"k": 1}}, "body must be a string template"),
    ],
)
def test_bad_specs_are_refused_with_the_fix(options: dict[str, Any], match: str) -> None:
    with pytest.raises(SpecError, match=match):
        LoadSpec(**({"host": "http://127.0.0.1:8080", "run_seconds": 10} | options))


def test_good_spec_defaults_and_coercion() -> None:
    spec = LoadSpec("http://localhost:30080/", run_seconds=30, paths=["/", "/health"])  # type: ignore[arg-type]
    assert spec.paths == ("/", "/health")
    assert spec.users >= 1 and spec.timeout_seconds == 2.0 and spec.wait_seconds == 0
    assert spec.warmup_grace_seconds == spec.timeout_seconds + 1


def test_wire_round_trip() -> None:
    line = RecordEncoder().encode(1718000000.123456, 'odd "name" ✓', 0.25, False, "HTTP 503", 12)
    assert LineDecoder().decode(line.encode()) == RequestRecord(
        1718000000.123456, 'odd "name" ✓', 0.25, False, "HTTP 503", 12
    )
    event = WorkerEvent("stopped", 1718000001.5, "run time over", 10, 2)
    assert LineDecoder().decode(event.encode().rstrip()) == event
    with pytest.raises(ValueError, match="not a load worker line"):
        LineDecoder().decode(b'{"hello": 1}')


def test_error_kind_names_the_os_error_under_client_wrappers() -> None:
    class Wrapper(Exception):
        def __init__(self, reason: BaseException) -> None:
            super().__init__("wrapped")
            self.reason = reason

    class Response:
        status_code = 502

    refused = ConnectionRefusedError(111, "Connection refused")
    assert error_kind(None, None) is None
    assert error_kind(Exception("bad status"), Response()) == "HTTP 502"
    assert error_kind(Wrapper(Wrapper(refused)), None) == "ConnectionRefusedError"
    try:
        try:
            raise TimeoutError("timed out")
        except TimeoutError:
            raise RuntimeError("request failed")  # noqa: B904 (the implicit context is the point)
    except RuntimeError as exc:
        assert error_kind(exc, None) == "TimeoutError"
    assert error_kind(ValueError("custom"), None) == "ValueError"


def test_the_load_package_never_imports_locust_or_gevent() -> None:
    script = (
        "import sys, chaoskit.load, chaoskit.load.worker, chaoskit.load.pods, chaoskit.experiment; "
        "print(sorted({'locust', 'gevent'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("received", "counted", "bad_lines", "shortfall"),
    [
        (10_400, 10_400, 0, None),
        (10_388, 10_400, 0, "the load stream lost 12 of 10,400 records"),
        (10_400, 10_400, 1, "the load stream sent 1 unreadable line"),
        (10_388, 10_400, 2, "the load stream lost 12 of 10,400 records and sent 2 unreadable lines"),
        (10_401, 10_400, 0, "the load stream carried 10,401 records where Locust counted 10,400"),
        (
            500,
            None,
            0,
            "the load worker ended without its own request count, so records lost from the 500 received "
            "cannot be ruled out",
        ),
    ],
)
def test_stream_shortfall_says_what_the_records_miss(
    received: int, counted: int | None, bad_lines: int, shortfall: str | None
) -> None:
    stats = StreamStats(received, counted, 3 if counted else None, 10.0, 2.0, bad_lines=bad_lines)
    assert stats.shortfall == shortfall
    assert stats.complete is (shortfall is None)


def test_unreadable_lines_from_the_worker_are_counted(tmp_path: Path) -> None:
    # The reader thread's loop, fed by hand: two records, an event, two bad lines and a line cut off at EOF.
    encoder = RecordEncoder()
    lines = [
        encoder.encode(1718000000.0, "/", 1.5, True, None, 3).encode(),
        b'[1718000000.1, "/", 1.5]\n',  # too short for a record
        WorkerEvent("stopped", 1718000001.0, "run time over", 4, 0).encode(),
        b"\n",  # blank: nothing lost
        b"garbage\n",
        encoder.encode(1718000000.2, "/", 1.5, True, None, 3).encode(),
        b'[1718000000.3, "/"',  # the worker died mid-line
    ]
    load = Load(LoadSpec("http://127.0.0.1:8080", run_seconds=1))
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b"".join(lines))
    os.close(write_fd)
    worker = runner._Worker(proc=None, stderr=None, read_fd=read_fd)  # type: ignore[arg-type]
    load._workers.append(worker)
    try:
        load._read(worker)
    finally:
        os.close(read_fd)
    stats = load.stream_stats()
    assert (stats.received, stats.locust_requests, stats.bad_lines) == (2, 4, 3)
    assert stats.first_bad_line is not None and "[1718000000.1" in stats.first_bad_line
    assert stats.shortfall == "the load stream lost 2 of 4 records and sent 3 unreadable lines"


def test_the_builtin_user_posts_a_body_filled_in_per_request(tmp_path: Path) -> None:
    BodyHandler.seen.clear()
    with serving(BodyHandler) as server:
        spec = quick(
            url(server),
            paths=("/put",),
            method="POST",
            body='{"key": "k-$user-$seq", "id": "$uuid"}',
            rate_per_user=50,
        )
        result = run_load(spec)
    assert result.records and all(r.ok and r.name == "POST /put" for r in result.records)
    # Each record is one request the server saw; a request in flight when the run ended has none.
    assert 0 <= len(BodyHandler.seen) - len(result.records) <= spec.users
    import json

    bodies = [json.loads(body) for _, _, body in BodyHandler.seen]
    assert all(path == "/put" and kind == "application/json" for path, kind, _ in BodyHandler.seen)
    keys = [b["key"] for b in bodies]
    assert len(set(keys)) == len(keys), "each request's $user-$seq is its own"
    assert {k.split("-")[1] for k in keys} == {"1", "2"}, "two users, numbered from 1"
    assert "k-1-1" in keys and len({b["id"] for b in bodies}) == len(bodies)


def test_a_locustfile_user_is_paced_by_the_spec(server: QuietServer, tmp_path: Path) -> None:
    locustfile = tmp_path / "fast.py"
    locustfile.write_text(
        "from locust import FastHttpUser, constant, task\n\n"
        "class Fast(FastHttpUser):\n    wait_time = constant(0)\n\n"
        "    @task\n    def home(self):\n        self.client.get('/', name='home')\n"
    )
    unpaced = run_load(quick(url(server), locustfile=str(locustfile), users=1, run_seconds=1))
    paced = run_load(quick(url(server), locustfile=str(locustfile), users=1, run_seconds=2, rate_per_user=5))
    rate = len(paced.measured()) / 2
    assert 4 <= rate <= 6.5, f"{rate:.1f} requests/s with rate_per_user=5"
    assert len(unpaced.measured()) > 2 * rate, "without pacing the class's own wait_time (none) runs"
    thinking = run_load(quick(url(server), locustfile=str(locustfile), users=1, run_seconds=1.5, wait_seconds=0.5))
    assert 2 <= len(thinking.measured()) <= 4, [r.started for r in thinking.measured()]


@pytest.mark.parametrize(
    ("options", "given"),
    [({"paths": ("/a",)}, "paths is"), ({"method": "POST", "body": "x"}, "method, body are")],
)
def test_builtin_user_options_with_a_locustfile_are_refused(tmp_path: Path, options: dict[str, Any], given: str):
    locustfile = tmp_path / "users.py"
    locustfile.write_text("")
    with pytest.raises(SpecError, match=f"{given} for the built-in user, and a locustfile's user makes its own"):
        LoadSpec("http://127.0.0.1:8080", run_seconds=5, locustfile=str(locustfile), **options)


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``, read from /proc (independent of the code under test)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def test_worker_count_comes_from_the_spec_then_the_session() -> None:
    spec = LoadSpec("http://127.0.0.1:8080", run_seconds=1, users=5)
    assert runner.worker_count(spec) is None, "one process, no master, by default"
    assert runner.worker_count(LoadSpec("http://127.0.0.1:8080", run_seconds=1, users=5, workers=1)) == 1
    pods = LoadSpec("http://web.shop.svc:80", run_seconds=1, users=5, in_cluster=True)
    assert runner.worker_count(pods) == runner.IN_CLUSTER_WORKERS
    try:
        runner.set_default_workers(3)
        assert runner.worker_count(spec) == 3
        assert runner.worker_count(LoadSpec("http://127.0.0.1:8080", run_seconds=1, users=2)) == 2, "at most users"
    finally:
        runner.set_default_workers(1)
    with pytest.raises(LoadError, match="1 or more"):
        runner.set_default_workers(0)
    with pytest.raises(SpecError, match=r"at most users \(2\)"):
        LoadSpec("http://127.0.0.1:8080", run_seconds=1, users=2, workers=3)


@pytest.mark.parametrize(
    ("host", "in_cluster", "match"),
    [
        ("http://web.shop.svc:80", False, "is not allowed"),
        ("http://127.0.0.1:8080", True, "is the pod itself"),
        ("http://web.svc:80", True, "is not allowed"),
        ("http://web.shop.example.com:80", True, "is not allowed"),
        ("https://kubernetes.default.svc:443", True, "is not allowed"),
        ("http://kube-dns.kube-system.svc:9153", True, "is not allowed"),
    ],
)
def test_in_cluster_hosts_are_services_and_only_for_worker_pods(host: str, in_cluster: bool, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        LoadSpec(host, run_seconds=1, in_cluster=in_cluster)
    for good in ("http://web.shop.svc:80", "https://web.shop.svc.cluster.local:8443"):
        assert LoadSpec(good, run_seconds=1, in_cluster=True).in_cluster


def test_an_in_cluster_load_without_a_cluster_says_how_to_give_one() -> None:
    load = Load(LoadSpec("http://web.shop.svc:80", run_seconds=1, in_cluster=True))
    with pytest.raises(LoadError, match="runs its workers as pods"):
        with load:
            pass
    assert load.pids == []


def test_two_locust_workers_keep_every_record_and_unique_users() -> None:
    BodyHandler.seen.clear()
    with serving(BodyHandler) as server:
        spec = quick(
            url(server),
            paths=("/put",),
            method="POST",
            body='{"key": "k-$user-$seq"}',
            users=4,
            workers=2,
            rate_per_user=40,
        )
        with Load(spec) as load:
            master = load.pids
            workers = children(master[0])
            assert len(master) == 1 and len(workers) == 2, "one master, two Locust workers under it"
            result = load.wait()
    assert all(gone(pid) for pid in master + workers), "the master and its workers stopped by themselves"
    assert result.stream.complete, result.stream
    # Locust's own count, aggregated by the master from both workers' statistics, matches the records.
    assert result.stream.locust_requests == len(result.records) > 0
    keys = [json.loads(body)["key"] for _, _, body in BodyHandler.seen]
    assert len(set(keys)) == len(keys)
    assert {k.split("-")[1] for k in keys} == {"1", "2", "3", "4"}, "users numbered uniquely across the workers"
    assert 0 <= len(BodyHandler.seen) - len(result.records) <= spec.users
    assert result.started_at <= result.warmup_ended_at < result.ended_at


def test_a_worker_lost_mid_run_ends_the_load_and_says_so(server: QuietServer) -> None:
    spec = quick(url(server), users=4, workers=2, run_seconds=20, rate_per_user=20)
    started = time.monotonic()
    with Load(spec) as load:
        workers = children(load.pids[0])
        os.kill(workers[0], 9)
        result = load.wait()
    assert time.monotonic() - started < 15, "the master stopped the load when its worker went"
    assert not result.stream.complete
    (lost,) = result.stream.lost_workers
    assert f"(pid {workers[0]}) exited (killed by SIGKILL)" in lost
    assert result.stream.shortfall is not None and "so its records are not the whole run" in result.stream.shortfall
    assert all(gone(pid) for pid in [*load.pids, *workers])


def test_a_locustfile_user_runs_on_every_worker(server: QuietServer, tmp_path: Path) -> None:
    locustfile = tmp_path / "users.py"
    locustfile.write_text(
        textwrap.dedent(
            """
            from locust import HttpUser, constant_throughput, task

            class Shopper(HttpUser):
                wait_time = constant_throughput(20)

                @task
                def browse(self):
                    self.client.get("/catalogue", name="catalogue")
            """
        )
    )
    result = run_load(quick(url(server), locustfile=str(locustfile), users=2, workers=2))
    assert result.stream.complete, result.stream
    assert {r.name for r in result.records} == {"catalogue"}


def test_a_failed_warmup_on_workers_fails_the_load_and_stops_them_all(closed_port: int) -> None:
    load = Load(quick(f"http://127.0.0.1:{closed_port}", users=2, workers=2, warmup_seconds=0.2))
    seen: list[int] = []

    def note_workers() -> None:
        while not load.pids:
            time.sleep(0.05)
        while len(seen) < 2 and load.running:
            seen[:] = children(load.pids[0])
            time.sleep(0.05)

    watcher = threading.Thread(target=note_workers, daemon=True)
    watcher.start()
    with pytest.raises(WarmupFailed, match="no request to"):
        with load:
            pass
    watcher.join(5)
    assert len(load.pids) == 1 and len(seen) == 2
    assert all(gone(pid) for pid in [*load.pids, *seen])


def test_a_ramp_up_cut_short_by_the_end_restarts_no_user_after_the_finish(server: QuietServer) -> None:
    # 30 users at 4/s take 7.5 s to start: the run (0.3 s warm-up, 1.5 s) ends while Locust's master is still
    # handing users out. No user may start after the finish, or its records would outrun Locust's count.
    spec = quick(url(server), users=30, spawn_rate=4, workers=2, rate_per_user=20)
    result = run_load(spec)
    assert result.stream.complete, result.stream
    assert result.stream.locust_requests == len(result.records) > 0


def test_leaving_the_block_early_keeps_every_record_of_the_workers(server: QuietServer) -> None:
    spec = quick(url(server), users=4, workers=2, run_seconds=30, rate_per_user=20)
    started = time.monotonic()
    with Load(spec) as load:
        time.sleep(0.5)
    stream = load.stream_stats()
    assert time.monotonic() - started < 20
    assert stream.complete, stream
    assert stream.received > 0
