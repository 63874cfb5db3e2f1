"""A worker's container stopped and started with Docker: the node comes back and serves again.

This is the pod-network agent's hardest case: the restarted node has a fresh
network namespace (its routes are gone) and may have a new address.
"""

from __future__ import annotations

import pytest
from workloads import get_from_host_eventually, probe_eventually, wait_pod_running

from chaoskit.adapters import docker
from chaoskit.adapters.kube import Kube, is_control_plane
from chaoskit.adapters.status import node_ready
from chaoskit.cluster import Cluster

pytestmark = pytest.mark.destructive


def pinned_web_pod(namespace: str, name: str, node: str, image: str) -> dict:
    env = [
        {"name": "POD_NAME", "value": name},
        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"pod": name}},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "web",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "env": env,
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1},
                }
            ],
        },
    }


def service(namespace: str, name: str, node_port: int | None = None) -> dict:
    spec: dict = {"selector": {"pod": name}, "ports": [{"port": 80, "targetPort": 8080}]}
    if node_port:
        spec["type"] = "NodePort"
        spec["ports"][0]["nodePort"] = node_port
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def wait_node(kube: Kube, name: str, ready: bool, timeout: float) -> float:
    return kube.wait_for(
        kube.core.list_node,
        lambda nodes: name in nodes and node_ready(nodes[name]) is ready,
        timeout,
        f"node {name} {'Ready' if ready else 'NotReady'}",
    )


def check_traffic(kube: Kube, namespace: str, port: int, node: str, peer_ip: str) -> None:
    # Host -> NodePort on the control plane -> pod on the restarted worker.
    answer = get_from_host_eventually(port, within=30)
    assert answer == {"pod": "on-worker", "node": node}, answer
    # Pod on the restarted worker -> pod on the other worker, by address and by Service name.
    results = probe_eventually(kube, namespace, "on-worker", f"http://{peer_ip}:8080/", f"http://peer.{namespace}/")
    assert all('"pod": "peer"' in r["body"] for r in results), results


def test_worker_stopped_and_started_comes_back_ready_and_serves(
    cluster: Cluster, kube: Kube, namespace: str, web_image: str
) -> None:
    if not cluster.is_kind:
        pytest.skip("stopping a node's container needs a kind cluster")
    workers = sorted(n.metadata.name for n in kube.core.list_node().items if not is_control_plane(n))
    victim, other = workers[0], workers[1]
    port = cluster.free_node_port(kube)
    kube.apply(
        [
            pinned_web_pod(namespace, "on-worker", victim, web_image),
            pinned_web_pod(namespace, "peer", other, web_image),
            service(namespace, "on-worker", port),
            service(namespace, "peer"),
        ]
    )
    for pod in ("on-worker", "peer"):
        wait_pod_running(kube, namespace, pod)
    peer_ip = kube.core.read_namespaced_pod("peer", namespace).status.pod_ip
    check_traffic(kube, namespace, port, victim, peer_ip)

    docker.stop(victim)
    try:
        assert docker.inspect(victim).state == "exited"
        went_down = wait_node(kube, victim, ready=False, timeout=120)
        print(f"{victim} NotReady {went_down:.1f} s after its container stopped")
    finally:
        docker.start(victim)
    came_back = wait_node(kube, victim, ready=True, timeout=180)
    print(f"{victim} Ready {came_back:.1f} s after its container started")

    wait_pod_running(kube, namespace, "on-worker", timeout=120)
    check_traffic(kube, namespace, port, victim, peer_ip)
    assert all(node_ready(n) for n in kube.core.list_node().items)
