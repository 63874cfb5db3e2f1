"""Prometheus in the real cluster: deployed once for this module, queried from the host.

It runs in a namespace of this module's own (not ``chaoskit-monitoring``,
which experiments may be using) and is removed, with its cluster-scoped RBAC,
when the module ends. The web tier's pods carry the scrape annotations.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator

import pytest
from kubernetes import client as k8s
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed
from workloads import Web, get_from_host

from chaoskit.adapters.kube import Kube
from chaoskit.cluster import Cluster
from chaoskit.prometheus import PrometheusClient, PrometheusDeployment, deploy_prometheus, remove_prometheus
from chaoskit.prometheus.deploy import NAME, PORT, cluster_role_name

pytest_plugins = ["pytester"]
NAMESPACE = "ck-prometheus-tests"


@pytest.fixture(scope="module")
def prometheus(cluster: Cluster, kube: Kube) -> Iterator[PrometheusDeployment]:
    deployment = deploy_prometheus(kube, cluster, namespace=NAMESPACE)
    print(f"\nPrometheus {deployment.image} answered on {deployment.url} {deployment.ready_seconds:.1f} s after deploy")
    yield deployment
    remove_prometheus(kube, NAMESPACE)


@pytest.fixture
def client(prometheus: PrometheusDeployment) -> Iterator[PrometheusClient]:
    with prometheus.client() as handle:
        yield handle


def prometheus_pod_uids(kube: Kube) -> set[str]:
    return {p.metadata.uid for p in kube.pods(NAMESPACE, "app.kubernetes.io/name=prometheus")}


def test_deploying_again_keeps_the_running_prometheus(
    cluster: Cluster, kube: Kube, prometheus: PrometheusDeployment, client: PrometheusClient
) -> None:
    before = prometheus_pod_uids(kube)
    again = deploy_prometheus(kube, cluster, namespace=NAMESPACE)
    assert again.node_port == prometheus.node_port and again.image == prometheus.image
    assert prometheus_pod_uids(kube) == before, "an unchanged deployment must not restart Prometheus"
    assert again.ready_seconds < 30
    client.check_reachable()
    (up,) = client.wait_for_scrape({"job": "prometheus"}, within=30)
    assert up.last.value == 1.0
    rbac = k8s.RbacAuthorizationV1Api(kube.api_client)
    for read in (rbac.read_cluster_role, rbac.read_cluster_role_binding):
        assert read(cluster_role_name(NAMESPACE)).metadata.labels["app.kubernetes.io/part-of"] == "chaoskit"
    assert kube.core.read_namespaced_service(NAME, NAMESPACE).spec.ports[0].node_port == prometheus.node_port


def test_web_pods_are_scraped_and_their_requests_counted(kube: Kube, web: Web, client: PrometheusClient) -> None:
    pods = {p.metadata.name for p in kube.pods(web.namespace, "app=web")}
    up = client.wait_for_scrape({"job": "pods", "namespace": web.namespace}, count=len(pods), within=60)
    assert {s.labels["pod"] for s in up} == pods
    assert all(s.labels["app"] == "web" and s.labels["node"] for s in up)

    counter = f'web_requests_total{{namespace="{web.namespace}"}}'
    started = time.time()
    (before,) = client.query(f"sum({counter})", at=started)
    sent = 200  # readiness probes and scrapes add about 6 a second: 200 in a few seconds is ours
    for _ in range(sent):
        get_from_host(web.node_port)
    for attempt in Retrying(
        stop=stop_after_delay(30), wait=wait_fixed(1), retry=retry_if_exception_type(AssertionError), reraise=True
    ):
        with attempt:
            seen = round(time.time(), 3)  # Prometheus keeps milliseconds
            (after,) = client.query(f"sum({counter})", at=seen)
            assert after.last.value >= before.last.value + sent, (before, after)

    # The same counters over the run, one series per pod, ending where the sum was seen.
    series = client.query_range(counter, seen - math.ceil(seen - started) - 2, seen, step=1)
    assert {s.labels["pod"] for s in series} == pods
    for one in series:
        assert one.values == sorted(one.values), f"the counter of {one.labels['pod']} went down: {one.values}"
        assert one.samples[-1].timestamp <= seen
    assert sum(max(s.values) for s in series) >= before.last.value + sent


def test_kubelets_and_cadvisor_are_scraped(kube: Kube, client: PrometheusClient) -> None:
    nodes = {n.metadata.name: n for n in kube.nodes()}
    control_plane = next(
        name
        for name, node in nodes.items()
        if {"node-role.kubernetes.io/master", "node-role.kubernetes.io/control-plane"} & set(node.metadata.labels)
    )
    # Other sessions pause and restart workers; the control plane's kubelet is always there.
    client.wait_for_scrape({"job": "kubelet", "node": control_plane}, within=60)
    client.wait_for_scrape({"job": "cadvisor", "node": control_plane}, within=60)
    running = {s.labels["node"]: s.last.value for s in client.query("kubelet_running_pods")}
    assert set(running) <= set(nodes) and running[control_plane] >= 1
    assert {t.labels["node"] for t in client.targets({"job": "kubelet"})} == set(nodes)
    cpu = client.query(f'container_cpu_usage_seconds_total{{namespace="{NAMESPACE}",container="prometheus"}}')
    assert cpu and cpu[0].labels["pod"].startswith("prometheus-") and cpu[0].last.value > 0


def test_values_serve_an_experiments_promql_objectives(client: PrometheusClient) -> None:
    client.wait_for_scrape({"job": "prometheus"}, within=30)
    end = time.time()
    values = client.values('up{job="prometheus"}', end - 5, end)
    assert values and set(values) == {1.0}


THEIR_PROMETHEUS = """
from chaoskit import LoadSpec, PromQL

def test_uses_the_clusters_own_prometheus(experiment, chaoskit_prometheus, chaoskit_kube):
    assert chaoskit_prometheus.url == "{url}"
    namespaces = {{n.metadata.name for n in chaoskit_kube.core.list_namespace().items}}
    assert "chaoskit-monitoring" not in namespaces, "chaoskit deployed its own Prometheus"
    load = LoadSpec(host="http://127.0.0.1:{port}", users=2, rate_per_user=10, run_seconds=6, warmup_seconds=1)
    with experiment(load, [PromQL('count(up{{job="prometheus"}})', at_least=1)], prometheus=chaoskit_prometheus):
        pass
"""


THEIR_FILE = """\
name: their prometheus
namespace: {namespace}
prometheus: {prometheus}
load: {{host: 'http://127.0.0.1:{port}', paths: [/], users: 2, rate_per_user: 10, run_seconds: 6, warmup_seconds: 1}}
faults:
  - {{kind: pod-kill, at: 1s, selector: app=web, count: 1}}
objectives:
  - promql: {{query: 'count(up{{job="prometheus"}})', at_least: 1}}
"""


@pytest.mark.parametrize("named_by", ["url", "service"])
def test_an_experiment_file_names_the_clusters_own_prometheus_and_none_is_deployed(
    pytester: pytest.Pytester, prometheus: PrometheusDeployment, web: Web, kube: Kube, named_by: str
) -> None:
    """A file's ``prometheus: {url}``, or ``{service, namespace, port}`` reached through a port-forward, is asked
    for its PromQL objective: the run deploys no Prometheus."""
    path = pytester.path / "theirs.chaos.yaml"
    theirs = (
        f"{{url: '{prometheus.url}'}}"
        if named_by == "url"
        else f"{{service: {NAME}, namespace: {prometheus.namespace}, port: {PORT}}}"
    )
    path.write_text(THEIR_FILE.format(namespace=web.namespace, prometheus=theirs, port=web.node_port))
    result = pytester.run(
        sys.executable, "-m", "chaoskit.cli", "run", str(path), "--no-live", "--report-dir", str(pytester.path),
        "--allow-namespace", web.namespace, timeout=300,
    )  # fmt: skip
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == 0, out
    assert "deploying Prometheus" not in out, out
    namespaces = {n.metadata.name for n in kube.core.list_namespace().items}
    assert "chaoskit-monitoring" not in namespaces, "chaoskit deployed its own Prometheus"
    assert "PASSED their prometheus; " in out and "1/1 objectives met" in out, out


def test_the_clusters_own_prometheus_serves_instead_of_a_deployed_one(
    pytester: pytest.Pytester, prometheus: PrometheusDeployment, web: Web
) -> None:
    # This module's Prometheus stands for the cluster's own: a session pointed at it deploys none.
    pytester.makepyfile(test_theirs=THEIR_PROMETHEUS.format(url=prometheus.url, port=web.node_port))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--chaos-prometheus-url={prometheus.url}")
    result.assert_outcomes(passed=1)
    unreachable = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--chaos-prometheus-url=http://127.0.0.1:1")
    unreachable.assert_outcomes(errors=1)
    unreachable.stdout.fnmatch_lines(["*--chaos-prometheus-url http://127.0.0.1:1: *"])


THROUGH_THE_SERVICE = """
from chaoskit import LoadSpec, PromQL

def test_uses_the_clusters_own_prometheus_through_its_service(experiment, chaoskit_prometheus, chaoskit_kube):
    assert chaoskit_prometheus.url.startswith("http://127.0.0.1:")
    assert chaoskit_prometheus.url != "{node_port_url}", "asked through the NodePort, not the port-forward"
    namespaces = {{n.metadata.name for n in chaoskit_kube.core.list_namespace().items}}
    assert "chaoskit-monitoring" not in namespaces, "chaoskit deployed its own Prometheus"
    load = LoadSpec(host="http://127.0.0.1:{port}", users=2, rate_per_user=10, run_seconds=6, warmup_seconds=1)
    with experiment(load, [PromQL('count(up{{job="prometheus"}})', at_least=1)], prometheus=chaoskit_prometheus):
        pass
"""


def test_the_clusters_own_prometheus_is_reached_through_its_service_without_a_node_port(
    pytester: pytest.Pytester, prometheus: PrometheusDeployment, web: Web
) -> None:
    pytester.makepyfile(test_theirs=THROUGH_THE_SERVICE.format(node_port_url=prometheus.url, port=web.node_port))
    service = f"--chaos-prometheus-service={prometheus.namespace}/{NAME}:{PORT}"
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", service)
    result.assert_outcomes(passed=1)
    missing = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", f"--chaos-prometheus-service={NAMESPACE}/none:9090"
    )
    missing.assert_outcomes(errors=1)
    missing.stdout.fnmatch_lines([f"*--chaos-prometheus-service {NAMESPACE}/none:9090: *"])
