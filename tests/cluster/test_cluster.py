"""The cluster as tests meet it: nodes, Services from the host, DNS, self-healing.

Everything here runs against the real kind cluster; nothing is mocked.
"""

from __future__ import annotations

import time

from workloads import WEB_LABELS, Web, get_from_host, get_from_host_eventually, probe_eventually, wait_web

from chaoskit.adapters.kube import node_ready
from chaoskit.cluster import Cluster


def test_one_control_plane_and_two_workers_all_ready(cluster: Cluster, kube) -> None:
    nodes = kube.core.list_node().items
    roles = sorted(
        "control-plane"
        if "node-role.kubernetes.io/master" in (n.metadata.labels or {})
        or "node-role.kubernetes.io/control-plane" in (n.metadata.labels or {})
        else "worker"
        for n in nodes
    )
    assert roles == ["control-plane", "worker", "worker"]
    assert all(node_ready(n) for n in nodes), [(n.metadata.name, node_ready(n)) for n in nodes]
    if cluster.flavor == "airgap":
        assert {n.status.node_info.kubelet_version for n in nodes} == {"v1.20.2"}


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
