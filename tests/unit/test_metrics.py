"""The Prometheus query client without a cluster: address checks, failing fast, typed results.

Results are checked against a small stand-in server on 127.0.0.1 that answers
with the JSON shapes of Prometheus's HTTP API.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from chaoskit.errors import ChaoskitError, ClusterError, UsageError
from chaoskit.prometheus import (
    PrometheusClient,
    PrometheusQueryError,
    PrometheusUnreachable,
    Sample,
    TargetsNotScraped,
    local_url,
    prometheus_config,
    prometheus_objects,
    selector,
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:9090", "http://127.0.0.1:9090"),
        ("http://127.0.0.1:30089/", "http://127.0.0.1:30089"),
    ],
)
def test_local_url_accepts_127_0_0_1_with_a_port(url: str, expected: str) -> None:
    assert local_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:9090",
        "http://10.96.0.20:9090",
        "http://prometheus.chaoskit-monitoring.svc:9090",
        "https://127.0.0.1:9090",
        "http://127.0.0.1",
        "http://127.0.0.1:9090/prometheus",
        "http://127.0.0.1:9090/?x=1",
        "http://admin:secret@127.0.0.1:9090",
        "http://127.0.0.1:port",
        "127.0.0.1:9090",
    ],
)
def test_other_addresses_are_refused_when_the_client_is_made(url: str) -> None:
    with pytest.raises(UsageError, match=r"http://127\.0\.0\.1:PORT"):
        PrometheusClient(url)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens on it once the socket is closed


def test_unreachable_prometheus_fails_fast_naming_the_url() -> None:
    port = closed_port()
    with PrometheusClient.on_port(port) as client:
        started = time.monotonic()
        with pytest.raises(PrometheusUnreachable, match=rf"http://127\.0\.0\.1:{port}") as raised:
            client.check_reachable()
        elapsed = time.monotonic() - started
    assert isinstance(raised.value, ChaoskitError) and isinstance(raised.value, ClusterError)
    assert elapsed < 5, f"check_reachable took {elapsed:.1f} s against a closed port"


def test_a_query_to_an_unreachable_prometheus_gives_up_after_its_retries() -> None:
    port = closed_port()
    with PrometheusClient.on_port(port, retry_within=1.0) as client:
        started = time.monotonic()
        with pytest.raises(PrometheusUnreachable, match=rf"127\.0\.0\.1:{port}.*'up'"):
            client.query("up")
        assert time.monotonic() - started < 4


def test_selector_quotes_values_and_refuses_bad_label_names() -> None:
    assert selector({"namespace": "ns", "job": "pods"}) == '{job="pods",namespace="ns"}'
    assert selector({"pod": 'a"b\\c'}) == r'{pod="a\"b\\c"}'
    with pytest.raises(UsageError, match="not a Prometheus label name"):
        selector({"app.kubernetes.io/name": "x"})


# --- against a stand-in server ---------------------------------------------------------


class FakePrometheus(ThreadingHTTPServer):
    daemon_threads = True
    ready = True
    up: list[dict[str, Any]]
    requests: list[tuple[str, dict[str, str]]]


class Handler(BaseHTTPRequestHandler):
    server: FakePrometheus

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        params = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.server.requests.append((parts.path, params))
        if parts.path == "/-/ready":
            self.reply(200 if self.server.ready else 503, "ready" if self.server.ready else "starting")
        elif parts.path == "/api/v1/query":
            self.query(params)
        elif parts.path == "/api/v1/query_range":
            values = [[float(params["start"]) + i, str(i)] for i in range(3)] + [[float(params["end"]), "NaN"]]
            self.data({"resultType": "matrix", "result": [{"metric": {"job": "pods"}, "values": values}]})
        elif parts.path == "/api/v1/targets":
            targets = [
                {
                    "labels": {"job": "pods", "namespace": "ns", "pod": "web-1"},
                    "health": "down",
                    "lastError": "connection refused",
                    "scrapeUrl": "http://10.244.1.5:8080/metrics",
                },
                {"labels": {"job": "kubelet"}, "health": "up", "lastError": "", "scrapeUrl": "https://x/metrics"},
            ]
            self.data({"activeTargets": targets, "droppedTargets": []})
        else:
            self.reply(404, "not found")

    def query(self, params: dict[str, str]) -> None:
        query = params["query"]
        at = float(params.get("time", "1700000000.5"))
        if query == "1":
            self.data({"resultType": "scalar", "result": [at, "1"]})
        elif query.startswith("up"):
            result = [{"metric": m, "value": [at, "1"]} for m in self.server.up]
            self.data({"resultType": "vector", "result": result})
        else:
            body = {"status": "error", "errorType": "bad_data", "error": f"parse error in {query!r}"}
            self.reply(400, json.dumps(body))

    def data(self, data: dict[str, Any]) -> None:
        self.reply(200, json.dumps({"status": "success", "data": data}))

    def reply(self, status: int, body: str) -> None:
        encoded = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(encoded)))
        self.end_headers()
        self.wfile.write(encoded)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def fake() -> Iterator[FakePrometheus]:
    server = FakePrometheus(("127.0.0.1", 0), Handler)
    server.up, server.requests = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def client(fake: FakePrometheus) -> Iterator[PrometheusClient]:
    with PrometheusClient.on_port(fake.server_address[1], retry_within=1.0) as prometheus:
        yield prometheus


def test_check_reachable_asks_ready_and_refuses_a_starting_server(
    fake: FakePrometheus, client: PrometheusClient
) -> None:
    client.check_reachable()
    assert fake.requests[-1][0] == "/-/ready"
    fake.ready = False
    with pytest.raises(PrometheusUnreachable, match="not reachable or not ready"):
        client.check_reachable(within=1.0)


def test_instant_queries_give_typed_series(fake: FakePrometheus, client: PrometheusClient) -> None:
    fake.up = [{"__name__": "up", "job": "pods", "pod": "web-1"}, {"__name__": "up", "job": "pods", "pod": "web-2"}]
    series = client.query("up", at=1700000123.25)
    assert [s.labels["pod"] for s in series] == ["web-1", "web-2"]
    assert series[0].samples == (Sample(1700000123.25, 1.0),)
    assert fake.requests[-1][1]["time"] == "1700000123.250"
    (scalar,) = client.query("1")
    assert scalar.labels == {} and scalar.last.value == 1.0


def test_a_bad_query_is_a_permanent_error_with_the_servers_reason(client: PrometheusClient) -> None:
    with pytest.raises(PrometheusQueryError, match="parse error"):
        client.query("rate(")


def test_range_queries_keep_sub_second_bounds(fake: FakePrometheus, client: PrometheusClient) -> None:
    (series,) = client.query_range("web_requests_total", 1700000000.25, 1700000010.75, step=0.5)
    params = fake.requests[-1][1]
    assert (params["start"], params["end"], params["step"]) == ("1700000000.250", "1700000010.750", "0.5")
    assert series.labels == {"job": "pods"}
    assert series.values[:3] == [0.0, 1.0, 2.0] and series.samples[0].timestamp == 1700000000.25
    with pytest.raises(UsageError, match="before start"):
        client.query_range("up", 10, 5)


def test_values_flatten_the_series_without_nan_and_bound_the_points(
    fake: FakePrometheus, client: PrometheusClient
) -> None:
    assert client.values("web_requests_total", 1700000000, 1700000010) == [0.0, 1.0, 2.0]
    assert fake.requests[-1][1]["step"] == "1"
    client.values("web_requests_total", 1700000000, 1700000000 + 86400)
    assert float(fake.requests[-1][1]["step"]) == pytest.approx(8.64)


def test_wait_for_scrape_returns_the_up_series(fake: FakePrometheus, client: PrometheusClient) -> None:
    fake.up = [{"job": "pods", "namespace": "ns", "pod": "web-1"}]
    (up,) = client.wait_for_scrape({"job": "pods", "namespace": "ns"}, within=2)
    assert up.labels["pod"] == "web-1"
    assert fake.requests[-1][1]["query"] == 'up{job="pods",namespace="ns"} == 1'


def test_wait_for_scrape_times_out_with_the_targets_last_errors(fake: FakePrometheus, client: PrometheusClient) -> None:
    started = time.monotonic()
    with pytest.raises(TargetsNotScraped, match=r"10\.244\.1\.5:8080/metrics down \(connection refused\)"):
        client.wait_for_scrape({"job": "pods", "namespace": "ns"}, within=1)
    assert time.monotonic() - started < 4


# --- the objects deployed -------------------------------------------------------------


def test_config_scrapes_annotated_pods_and_kubelets_with_the_token() -> None:
    config = prometheus_config(scrape_interval=2, node_scrape_interval=5)
    assert config["global"] == {
        "scrape_interval": "2000ms",
        "scrape_timeout": "2000ms",
        "evaluation_interval": "2000ms",
    }
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"prometheus", "pods", "kubelet", "cadvisor"}
    pods = jobs["pods"]
    assert pods["kubernetes_sd_configs"] == [{"role": "pod"}]
    keep = pods["relabel_configs"][0]
    assert keep["source_labels"] == ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"]
    assert (keep["regex"], keep["action"]) == ("true", "keep")
    targets = {r.get("target_label") for r in pods["relabel_configs"]}
    assert {"__address__", "__metrics_path__", "namespace", "pod", "node"} <= targets
    for name in ("kubelet", "cadvisor"):
        job = jobs[name]
        assert job["scheme"] == "https" and job["kubernetes_sd_configs"] == [{"role": "node"}]
        assert job["authorization"]["credentials_file"].endswith("serviceaccount/token")
        assert job["tls_config"] == {"insecure_skip_verify": True}
    assert jobs["cadvisor"]["metrics_path"] == "/metrics/cadvisor"


def test_objects_publish_a_node_port_and_roll_the_pod_when_the_config_changes() -> None:
    objects = prometheus_objects("mon", "chaoskit/prometheus:x", 30089)
    kinds = [o["kind"] for o in objects]
    assert kinds[:4] == ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"]
    assert kinds[4:] == ["ConfigMap", "Deployment", "Service"]
    by_kind = {o["kind"]: o for o in objects}
    assert by_kind["Service"]["spec"]["ports"][0]["nodePort"] == 30089
    rules = by_kind["ClusterRole"]["rules"][0]
    assert set(rules["resources"]) == {"pods", "nodes", "nodes/metrics", "endpoints", "services"}
    assert by_kind["ClusterRoleBinding"]["subjects"][0]["namespace"] == "mon"
    pod = by_kind["Deployment"]["spec"]["template"]
    assert pod["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    assert {"name": "data", "emptyDir": {}} in pod["spec"]["volumes"]
    slower = prometheus_objects("mon", "chaoskit/prometheus:x", 30089, scrape_interval=2)
    digest = "chaoskit.io/config-digest"
    slower_pod = next(o for o in slower if o["kind"] == "Deployment")["spec"]["template"]
    assert slower_pod["metadata"]["annotations"][digest] != pod["metadata"]["annotations"][digest]
