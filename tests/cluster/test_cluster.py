"""The cluster as tests meet it: nodes, Services from the host, DNS, self-healing.

Everything here runs against the real kind cluster; nothing is mocked.
"""

from __future__ import annotations

import json
import subprocess
import time

from workloads import WEB_LABELS, Web, get_from_host, get_from_host_eventually, probe_eventually, wait_web

from chaoskit.adapters import docker
from chaoskit.adapters.kube import is_control_plane
from chaoskit.adapters.status import node_ready
from chaoskit.cluster import Cluster
from chaoskit.cluster.kind import image_line


def test_one_control_plane_and_two_workers_all_ready(cluster: Cluster, kube) -> None:
    nodes = kube.core.list_node().items
    roles = sorted("control-plane" if is_control_plane(n) else "worker" for n in nodes)
    assert roles == ["control-plane", "worker", "worker"]
    assert all(node_ready(n) for n in nodes), [(n.metadata.name, node_ready(n)) for n in nodes]
    if cluster.flavor == "airgap":  # every kubelet runs the version of the line its node image was built for
        lines = {image_line(docker.inspect(n.metadata.name).image) for n in nodes}
        assert len(lines) == 1 and None not in lines, lines
        (line,) = lines
        assert line is not None and {n.status.node_info.kubelet_version for n in nodes} == {line.version}


def test_node_ports_are_what_the_running_cluster_publishes_and_the_free_one_is_free(cluster: Cluster, kube) -> None:
    # Read independently of chaoskit: the Docker CLI's view of the control plane's published ports.
    out = subprocess.run(
        ["docker", "port", f"{cluster.name}-control-plane"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    published = set()
    for line in out.splitlines():  # "30080/tcp -> 127.0.0.1:30080"
        inside, _, outside = line.partition(" -> ")
        port, _, host_port = outside.rpartition(":")
        if inside.endswith("/tcp") and port == "127.0.0.1" and inside.split("/")[0] == host_port:
            published.add(int(host_port))
    published = {p for p in published if 30000 <= p <= 32767}
    assert published and set(cluster.node_ports) == published, (cluster.node_ports, out)
    services = json.loads(
        subprocess.run(
            ["kubectl", "--kubeconfig", str(cluster.kubeconfig), "get", "svc", "-A", "-o", "json"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
    )
    used = {p.get("nodePort") for s in services["items"] for p in s["spec"].get("ports", [])}
    low, high = cluster.free_node_port(kube), cluster.free_node_port(highest=True)
    assert low not in used and high not in used and low <= high
    assert low == min(published - used) and high == max(published - used)


def test_service_answers_on_a_loopback_node_port_from_every_replica(kube, web: Web) -> None:
    answers = [get_from_host_eventually(web.node_port)]
    # kube-proxy spreads new connections over the 3 pods; it may take a moment after the
    # endpoints change to program them all. At most 100 requests over about 10 s.
    for _ in range(99):
        if len({a["pod"] for a in answers}) == 3:
            break
        time.sleep(0.1)
        answers.append(get_from_host(web.node_port))
    pods = {a["pod"] for a in answers}
    running = {p.metadata.name for p in kube.core.list_namespaced_pod(web.namespace, label_selector="app=web").items}
    assert len(pods) == 3 and pods == running, (pods, running, len(answers))


def test_service_resolves_by_name_from_another_pod(kube, web: Web, client: str) -> None:
    svc = kube.core.read_namespaced_service("web", web.namespace)
    urls = [f"http://web.{web.namespace}.svc.cluster.local/", f"http://web.{web.namespace}/", "http://web/"]
    results = probe_eventually(kube, web.namespace, client, *urls)
    for result in results:
        assert result["addresses"] == [svc.spec.cluster_ip], result
        assert result["status"] == 200 and '"pod": "web-' in result["body"], result


def test_unknown_service_name_does_not_resolve(kube, web: Web, client: str) -> None:
    code, output = kube.exec(
        web.namespace,
        client,
        ["python3", "-c", f"import socket; socket.getaddrinfo('nosuch.{web.namespace}.svc.cluster.local', 80)"],
    )
    assert code != 0 and "gaierror" in output


def test_pod_deleted_with_grace_zero_is_replaced_and_deployment_whole_again(kube, web: Web) -> None:
    before = {
        p.metadata.name: p.metadata.uid
        for p in kube.core.list_namespaced_pod(web.namespace, label_selector="app=web").items
    }
    victim = sorted(before)[0]
    deleted_at = time.monotonic()
    kube.core.delete_namespaced_pod(victim, web.namespace, grace_period_seconds=0)

    def replaced(pods: dict) -> bool:
        current = {
            name: p
            for name, p in pods.items()
            if p.metadata.labels == WEB_LABELS or p.metadata.labels.get("app") == "web"
        }
        ready = [
            p
            for p in current.values()
            if p.status.phase == "Running"
            and p.metadata.deletion_timestamp is None
            and all(c.ready for c in p.status.container_statuses or [])
        ]
        return victim not in current and len(ready) == 3

    kube.wait_for(kube.core.list_namespaced_pod, replaced, 60, "the killed pod to be replaced", namespace=web.namespace)
    wait_web(kube, web.namespace, timeout=30)
    took = time.monotonic() - deleted_at
    after = {
        p.metadata.name: p.metadata.uid
        for p in kube.core.list_namespaced_pod(web.namespace, label_selector="app=web").items
    }
    assert victim not in after and before[victim] not in after.values()
    assert len(after) == 3
    print(f"pod {victim} deleted; Deployment whole again after {took:.2f} s")
