"""Recovery is measured only after the loss was seen (synthetic timelines), and the watch's lifetime
(against a fake API server on 127.0.0.1: leaving at once, bounded priming)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from chaoskit.adapters.kube import Kube
from chaoskit.errors import ClusterError
from chaoskit.observe import Event, Recovery, RecoveryWatch, _loss_and_whole


def timeline(*points):
    return [Event(at, "deployment", ready, 3) for at, ready in points]


def test_loss_then_whole():
    loss, whole = _loss_and_whole(timeline((0.0, 3), (10.2, 2), (12.0, 3)), since=10.0)
    assert (round(loss, 3), round(whole, 3)) == (0.2, 2.0)


def test_a_whole_status_before_the_loss_is_not_a_recovery():
    # The controller has not noticed yet: still 3 ready right after the kill, then 2, then 3.
    loss, whole = _loss_and_whole(timeline((10.01, 3), (10.5, 2), (11.5, 3)), since=10.0)
    assert (round(loss, 2), round(whole, 2)) == (0.5, 1.5)


def test_a_loss_never_seen_is_reported_as_such():
    assert _loss_and_whole(timeline((0.0, 3), (10.5, 3)), since=10.0) == (None, None)


def test_not_yet_recovered():
    loss, whole = _loss_and_whole(timeline((10.5, 2), (11.0, 1)), since=10.0)
    assert (loss, whole) == (0.5, None)


def test_events_before_the_fault_are_ignored():
    assert _loss_and_whole(timeline((5.0, 2), (6.0, 3)), since=10.0) == (None, None)


# --- Recovery is the moment the Deployment and the endpoints are both whole ------------------------------


def test_endpoints_lost_and_not_back_is_no_recovery_yet():
    recovery = Recovery(loss_seen=0.1, whole=1.5, endpoints_loss_seen=0.05, endpoints_whole=None)
    assert recovery.seconds is None
    assert not recovery.recovered


def test_recovery_is_when_both_are_whole():
    assert Recovery(0.1, 1.5, 0.05, 2.25).seconds == 2.25  # endpoints back last
    assert Recovery(0.1, 1.5, 0.05, 1.25).seconds == 1.5  # the Deployment back last
    assert Recovery(0.1, 1.5, 0.05, 2.25).recovered


def test_endpoints_never_seen_lost_leave_the_deployment_to_stand_alone():
    assert Recovery(0.1, 1.5, None, None).seconds == 1.5
    assert Recovery(0.1, None, None, None).seconds is None


# --- A repeated fault recovers after its last injection ---------------------------------------------------


def watch_with(*events: Event) -> RecoveryWatch:
    """A watch that was never started, holding a fabricated timeline."""
    return RecoveryWatch(None, "ns", "web", "web", events=list(events))  # type: ignore[arg-type]


def test_a_repeated_fault_recovers_after_its_last_round():
    # Rounds at 10 and 13: lost and whole after each; recovery is the one after the last round.
    watch = watch_with(
        Event(10.2, "deployment", 2, 3),
        Event(11.5, "deployment", 3, 3),
        Event(13.1, "deployment", 2, 3),
        Event(14.6, "deployment", 3, 3),
    )
    recovery = watch.recovery(10.0, last_injection=13.0)
    assert (round(recovery.loss_seen, 3), round(recovery.whole, 3)) == (3.1, 4.6)
    assert recovery.seconds == pytest.approx(4.6) and recovery.last_injection == pytest.approx(3.0)
    # A loss not yet seen after the last round is no recovery, however whole the first round left it.
    assert not watch_with(*watch.events[:2]).recovery(10.0, last_injection=13.0).recovered
    # One injection: the first recovery stands.
    assert watch.recovery(10.0).seconds == pytest.approx(1.5)


def test_every_sighting_of_a_short_workload_is_kept():
    # A later round that kills a pod not yet ready leaves the count where it was: the sighting after it
    # is still the loss seen after the last injection.
    watch = watch_with()
    watch._observe("deployment", (3, 2))
    watch._observe("deployment", (3, 2))
    watch._observe("deployment", (3, 3))
    watch._observe("deployment", (3, 3))
    assert [(e.ready, e.desired) for e in watch.events] == [(2, 3), (2, 3), (3, 3)]
    first, second, whole = (e.at for e in watch.events)
    recovery = watch.recovery(first - 1.0, last_injection=(first + second) / 2)
    assert recovery.loss_seen == pytest.approx(second - first + 1.0)
    assert recovery.seconds == pytest.approx(whole - first + 1.0)


# --- The watch's lifetime, against a fake API server on 127.0.0.1 ----------------------------------------

NAMESPACE = "shop"


def deployment_json(ready: int) -> dict[str, Any]:
    meta = {"name": "web", "namespace": NAMESPACE, "resourceVersion": "7"}
    template = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "web"}]}}
    spec = {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template}
    return {"metadata": meta, "spec": spec, "status": {"readyReplicas": ready}}


def endpoints_json(ready: int) -> dict[str, Any]:
    meta = {"name": "web", "namespace": NAMESPACE, "resourceVersion": "7"}
    return {"metadata": meta, "subsets": [{"addresses": [{"ip": f"10.0.0.{i}"} for i in range(ready)]}]}


class FakeApi(ThreadingHTTPServer):
    """Lists a Deployment and an Endpoints object, and holds every watch open (after one MODIFIED event)
    until its timeoutSeconds, as an API server does. ``endpoints_list`` can be made to hang or fail."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), FakeApiHandler)
        self.closing = threading.Event()
        self.endpoints_list = "ok"
        self.watch_timeouts: list[int] = []

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up mid-watch is what the tests do


class FakeApiHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeApi

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        endpoints = url.path.endswith("/endpoints")
        make = endpoints_json if endpoints else deployment_json
        if query.get("watch") == ["true"]:
            self.watch(make(2), int(query["timeoutSeconds"][0]))
            return
        if endpoints and self.server.endpoints_list == "hang":
            self.server.closing.wait(30)
            return
        if endpoints and self.server.endpoints_list == "fail":
            self.answer(500, {"kind": "Status", "code": 500, "message": "etcd is unhappy"})
            return
        self.answer(200, {"kind": "List", "metadata": {"resourceVersion": "7"}, "items": [make(3)]})

    def answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def watch(self, obj: dict[str, Any], timeout_seconds: int) -> None:
        self.server.watch_timeouts.append(timeout_seconds)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        line = json.dumps({"type": "MODIFIED", "object": obj}).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
        self.wfile.flush()
        self.server.closing.wait(timeout_seconds)  # the server-side end of the watch
        with contextlib.suppress(OSError):
            self.wfile.write(b"0\r\n\r\n")


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[FakeApi, Kube]]:
    server = FakeApi()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    config = tmp_path / "kubeconfig"
    config.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{server.server_address[1]}"}}],
                "users": [{"name": "fake", "user": {"token": "fake"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
                "current-context": "fake",
            }
        )
    )
    kube = Kube(config, "fake")
    try:
        yield server, kube
    finally:
        server.closing.set()
        server.shutdown()
        server.server_close()
        kube.close()


def test_leaving_a_watch_takes_under_100_ms_while_the_server_holds_it_open(api: tuple[FakeApi, Kube]) -> None:
    server, kube = api
    watch = RecoveryWatch(kube, NAMESPACE, "web", "web")
    with watch:
        wait_until_true(lambda: {(e.source, e.ready) for e in watch.events} >= {("deployment", 2), ("endpoints", 2)})
        leaving = time.monotonic()
    left = time.monotonic() - leaving
    assert left < 0.1, f"leaving the watch took {left:.3f} s"
    assert not any(t.is_alive() for t in watch._threads)
    # What the streams said: listed whole, then one short sighting each, the endpoints against the desired 3.
    assert sorted((e.source, e.ready, e.desired) for e in watch.events) == [
        ("deployment", 2, 3),
        ("deployment", 3, 3),
        ("endpoints", 2, 3),
        ("endpoints", 3, 3),
    ]
    assert server.watch_timeouts and all(t > 0 for t in server.watch_timeouts)


@pytest.mark.parametrize(
    ("mode", "why"), [("hang", r"\(no answer\)"), ("fail", r"\(HTTP 500 Internal Server Error: etcd is unhappy\)")]
)
def test_a_watch_that_cannot_list_says_what_did_not_answer(api: tuple[FakeApi, Kube], mode: str, why: str) -> None:
    server, kube = api
    server.endpoints_list = mode
    watch = RecoveryWatch(kube, NAMESPACE, "web", "web", prime_timeout_s=1.0)
    started = time.monotonic()
    with pytest.raises(ClusterError, match=rf"no listing of endpoints {NAMESPACE}/web within 1 s {why}"):
        with watch:
            pytest.fail("the block must not run")
    assert time.monotonic() - started < 5


def wait_until_true(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
