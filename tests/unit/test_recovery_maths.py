"""Recovery is measured only after the loss was seen (synthetic timelines), and the watch's lifetime
(against a fake API server on 127.0.0.1: every kind of workload, the Service's endpoints from whichever API
the server serves, leaving at once, bounded priming)."""

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
from chaoskit.adapters.status import SERVICE_NAME_LABEL, WorkloadKind
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
    watch._observe("deployment", 3, 2)
    watch._observe("deployment", 3, 2)
    watch._observe("deployment", 3, 3)
    watch._observe("deployment", 3, 3)
    assert [(e.ready, e.desired) for e in watch.events] == [(2, 3), (2, 3), (3, 3)]
    first, second, whole = (e.at for e in watch.events)
    recovery = watch.recovery(first - 1.0, last_injection=(first + second) / 2)
    assert recovery.loss_seen == pytest.approx(second - first + 1.0)
    assert recovery.seconds == pytest.approx(whole - first + 1.0)


def test_a_workload_all_ready_but_not_whole_is_a_loss_until_whole():
    # A StatefulSet mid-rollout: every pod ready, revisions apart. Short at each sighting, whole only when
    # the status says so, whatever the ready count said before.
    watch = watch_with()
    watch.kind = "StatefulSet"
    watch._observe("statefulset", 3, 3, True)
    watch._observe("statefulset", 3, 3, False)
    watch._observe("statefulset", 3, 3, False)
    watch._observe("statefulset", 3, 3, True)
    assert [e.whole for e in watch.events] == [True, False, False, True]
    whole_at, lost_at, _, back_at = (e.at for e in watch.events)
    recovery = watch.recovery(whole_at)
    assert recovery.loss_seen == pytest.approx(lost_at - whole_at)
    assert recovery.seconds == pytest.approx(back_at - whole_at)
    # The watch reads its own kind's events only.
    assert watch_with(*watch.events).recovery(whole_at).loss_seen is None


# --- The watch's lifetime, against a fake API server on 127.0.0.1 ----------------------------------------

NAMESPACE = "shop"
PLURALS = {
    "deployments": "Deployment",
    "statefulsets": "StatefulSet",
    "daemonsets": "DaemonSet",
    "replicasets": "ReplicaSet",
}


def workload_json(kind: str, ready: int) -> dict[str, Any]:
    """A workload of 3 replicas (a DaemonSet on 3 nodes), ``ready`` of them ready, nothing left to roll out."""
    meta = {"name": "web", "namespace": NAMESPACE, "resourceVersion": "7", "generation": 2}
    template = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "web"}]}}
    spec: dict[str, Any] = {"selector": {"matchLabels": {"app": "web"}}, "template": template}
    status: dict[str, Any] = {"observedGeneration": 2}
    if kind == "DaemonSet":
        status |= {"desiredNumberScheduled": 3, "numberReady": ready, "updatedNumberScheduled": 3}
    else:
        spec["replicas"] = 3
        status["readyReplicas"] = ready
    if kind == "Deployment":
        status["updatedReplicas"] = 3
    if kind == "StatefulSet":
        status |= {"currentReplicas": 3, "updatedReplicas": 3, "currentRevision": "web-1", "updateRevision": "web-1"}
    return {"metadata": meta, "spec": spec, "status": status}


def endpoints_json(ready: int) -> dict[str, Any]:
    meta = {"name": "web", "namespace": NAMESPACE, "resourceVersion": "7"}
    return {"metadata": meta, "subsets": [{"addresses": [{"ip": f"10.0.0.{i}"} for i in range(ready)]}]}


def endpoint_slice_json(ready: int) -> dict[str, Any]:
    """One slice of the Service's 3 pods, ``ready`` of them ready (the others say so)."""
    meta = {"name": "web-x1", "namespace": NAMESPACE, "resourceVersion": "7", "labels": {SERVICE_NAME_LABEL: "web"}}
    endpoints = [
        {
            "addresses": [f"10.0.0.{i}"],
            "conditions": {"ready": i < ready},
            "targetRef": {"kind": "Pod", "namespace": NAMESPACE, "name": f"web-{i}"},
        }
        for i in range(3)
    ]
    return {"metadata": meta, "addressType": "IPv4", "endpoints": endpoints}


NOT_FOUND = {"kind": "Status", "status": "Failure", "message": "the server could not find the requested resource"}


class FakeApi(ThreadingHTTPServer):
    """Lists a workload and the Service's endpoints, and holds every watch open (after one MODIFIED event)
    until its timeoutSeconds, as an API server does. ``slices`` are the EndpointSlice versions it serves
    (404 for the others); ``endpoints_list`` can be made to hang or fail."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), FakeApiHandler)
        self.closing = threading.Event()
        self.endpoints_list = "ok"
        self.slices: set[str] = {"v1"}
        self.watch_timeouts: list[int] = []
        self.requests: list[str] = []

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
        self.server.requests.append(self.path)
        plural = url.path.rsplit("/", 1)[-1]
        make: Callable[[int], dict[str, Any]]
        if plural in PLURALS:
            kind = PLURALS[plural]
            make = lambda ready: workload_json(kind, ready)  # noqa: E731
        elif plural == "endpointslices":
            if url.path.split("/")[3] not in self.server.slices:
                self.answer(404, {**NOT_FOUND, "code": 404})
                return
            make = endpoint_slice_json
        else:
            make = endpoints_json
        endpoints = plural in ("endpoints", "endpointslices")
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


@pytest.mark.parametrize("kind", list(PLURALS.values()))
def test_leaving_a_watch_takes_under_100_ms_while_the_server_holds_it_open(
    api: tuple[FakeApi, Kube], kind: WorkloadKind
) -> None:
    server, kube = api
    watch = RecoveryWatch(kube, NAMESPACE, "web", "web", kind)
    source = kind.lower()
    with watch:
        wait_until_true(lambda: {(e.source, e.ready) for e in watch.events} >= {(source, 2), ("endpoints", 2)})
        leaving = time.monotonic()
    left = time.monotonic() - leaving
    assert left < 0.1, f"leaving the watch took {left:.3f} s"
    assert not any(t.is_alive() for t in watch._threads)
    # What the streams said: listed whole, then one short sighting each, the endpoints against the desired 3.
    assert sorted((e.source, e.ready, e.desired) for e in watch.events) == sorted(
        [(source, 2, 3), (source, 3, 3), ("endpoints", 2, 3), ("endpoints", 3, 3)]
    )
    assert [e.whole for e in watch.events if e.source == source] == [True, False]
    assert server.watch_timeouts and all(t > 0 for t in server.watch_timeouts)
    assert watch.endpoints_api == "discovery.k8s.io/v1"
    slices = [parse_qs(urlsplit(r).query) for r in server.requests if "/endpointslices" in r]
    assert slices and all(q["labelSelector"] == ["kubernetes.io/service-name=web"] for q in slices)


ENDPOINT_APIS = ("/apis/discovery.k8s.io/v1/", "/apis/discovery.k8s.io/v1beta1/", "/api/v1/namespaces/shop/endpoints")
"""Where the endpoints are read from, in the order the watch tries them."""


def endpoint_requests(server: FakeApi) -> list[tuple[int, dict[str, list[str]]]]:
    """(which of ENDPOINT_APIS, query) of every endpoints request the server got."""
    found = []
    for request in server.requests:
        url = urlsplit(request)
        found += [(i, parse_qs(url.query)) for i, api in enumerate(ENDPOINT_APIS) if url.path.startswith(api)]
    return found


def watch_endpoints_once(kube: Kube) -> RecoveryWatch:
    watch = RecoveryWatch(kube, NAMESPACE, "web", "web")
    with watch:
        wait_until_true(lambda: ("endpoints", 2) in {(e.source, e.ready) for e in watch.events})
    return watch


@pytest.mark.parametrize(
    ("served", "api_used", "index"),
    [
        ({"v1", "v1beta1"}, "discovery.k8s.io/v1", 0),
        ({"v1beta1"}, "discovery.k8s.io/v1beta1", 1),
        (set(), "v1 Endpoints", 2),
    ],
)
def test_the_endpoints_come_from_the_newest_api_the_server_serves(
    api: tuple[FakeApi, Kube], capsys: pytest.CaptureFixture[str], served: set[str], api_used: str, index: int
) -> None:
    server, kube = api
    server.slices = served
    for _ in range(2):  # a second watch on the same server: decided afresh, said no more than once
        assert watch_endpoints_once(kube).endpoints_api == api_used
        requests = endpoint_requests(server)
        watches = [(i, q) for i, q in requests if q.get("watch") == ["true"]]
        # Tried in order until one answered; watched there only.
        assert [i for i, q in requests if "watch" not in q][: index + 1] == list(range(index + 1))
        assert watches and {i for i, _ in watches} == {index}, server.requests
        if served:
            assert all(q["labelSelector"] == ["kubernetes.io/service-name=web"] for _, q in requests)
        server.requests.clear()
    said = capsys.readouterr().err
    if served:
        assert "EndpointSlices" not in said
    else:
        assert said.count("serves no EndpointSlices (discovery.k8s.io/v1 or discovery.k8s.io/v1beta1)") == 1


@pytest.mark.parametrize(
    ("mode", "why"), [("hang", r"\(no answer\)"), ("fail", r"\(HTTP 500 Internal Server Error: etcd is unhappy\)")]
)
@pytest.mark.parametrize(("slices", "index"), [({"v1"}, 0), ({"v1beta1"}, 1), (set(), 2)])
def test_a_watch_that_cannot_list_says_what_did_not_answer(
    api: tuple[FakeApi, Kube], mode: str, why: str, slices: set[str], index: int
) -> None:
    server, kube = api
    server.endpoints_list = mode
    server.slices = slices
    watch = RecoveryWatch(kube, NAMESPACE, "web", "web", prime_timeout_s=1.0)
    started = time.monotonic()
    message = rf"no listing of the endpoints of Service {NAMESPACE}/web within 1 s {why}"
    with pytest.raises(ClusterError, match=message):
        with watch:
            pytest.fail("the block must not run")
    assert time.monotonic() - started < 5
    # An error is not "not served": nothing past the first API that is served was asked.
    assert {i for i, _ in endpoint_requests(server)} == set(range(index + 1))
    assert watch.endpoints_api is None


def wait_until_true(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
