"""Manifests and helpers for the web fixture in cluster tests."""

from __future__ import annotations

import json
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from chaoskit.adapters.kube import Kube, deployment_available

WEB_LABELS = {"app": "web"}


@dataclass(frozen=True)
class Web:
    namespace: str
    node_port: int
    image: str


def web_objects(namespace: str, image: str, node_port: int, replicas: int = 3) -> list[dict[str, Any]]:
    env = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
    ]
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": WEB_LABELS},
                "template": {
                    "metadata": {"labels": WEB_LABELS},
                    "spec": {
                        "terminationGracePeriodSeconds": 5,
                        "containers": [
                            {
                                "name": "web",
                                "image": image,
                                "imagePullPolicy": "Never",
                                "env": env,
                                "ports": [{"containerPort": 8080}],
                                "readinessProbe": {
                                    "httpGet": {"path": "/healthz", "port": 8080},
                                    "periodSeconds": 1,
                                },
                            }
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {
                "type": "NodePort",
                "selector": WEB_LABELS,
                "ports": [{"port": 80, "targetPort": 8080, "nodePort": node_port}],
            },
        },
    ]


def client_pod(namespace: str, image: str, name: str = "client", node: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "terminationGracePeriodSeconds": 0,
        "containers": [{"name": "client", "image": image, "imagePullPolicy": "Never", "command": ["sleep", "3600"]}],
    }
    if node:
        spec["nodeName"] = node
    metadata = {"name": name, "namespace": namespace, "labels": {"role": name}}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def free_node_port(kube: Kube, ports: tuple[int, ...]) -> int:
    used = {p.node_port for s in kube.core.list_service_for_all_namespaces().items for p in s.spec.ports or []}
    for port in ports:
        if port not in used:
            return port
    raise AssertionError(f"every published NodePort {ports} is taken")


def wait_web(kube: Kube, namespace: str, replicas: int = 3, timeout: float = 120) -> float:
    return kube.wait_for(
        kube.apps.list_namespaced_deployment,
        lambda deps: (
            "web" in deps and deployment_available(deps["web"]) and deps["web"].status.ready_replicas == replicas
        ),
        timeout,
        "Deployment web to be available",
        namespace=namespace,
    )


def wait_endpoints(kube: Kube, namespace: str, name: str, count: int, timeout: float = 60) -> float:
    def ready(endpoints: dict[str, Any]) -> bool:
        ep = endpoints.get(name)
        return ep is not None and sum(len(s.addresses or []) for s in ep.subsets or []) == count

    return kube.wait_for(
        kube.core.list_namespaced_endpoints, ready, timeout, f"{count} endpoints of {name}", namespace=namespace
    )


def wait_pod_running(kube: Kube, namespace: str, name: str, timeout: float = 120) -> float:
    def ready(pods: dict[str, Any]) -> bool:
        pod = pods.get(name)
        return bool(pod and pod.status.phase == "Running" and all(c.ready for c in pod.status.container_statuses or []))

    return kube.wait_for(kube.core.list_namespaced_pod, ready, timeout, f"pod {name} running", namespace=namespace)


def get_from_host(port: int, path: str = "/", timeout: float = 3) -> dict[str, Any]:
    """One GET to 127.0.0.1:port (the only address tests send traffic to)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
        assert response.status == 200
        result: dict[str, Any] = json.loads(response.read())
        return result


def download_from_host(port: int, size: int, timeout: float = 30) -> float:
    """Seconds to fetch ``size`` bytes from the web tier's /bytes/N through 127.0.0.1:port."""
    start = time.monotonic()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/bytes/{size}", timeout=timeout) as response:
        received = len(response.read())
    assert received == size, f"got {received} of {size} bytes"
    return time.monotonic() - start


def get_from_host_eventually(port: int, within: float = 30) -> dict[str, Any]:
    for attempt in Retrying(
        stop=stop_after_delay(within), wait=wait_fixed(0.5), retry=retry_if_exception_type(OSError), reraise=True
    ):
        with attempt:
            return get_from_host(port)
    raise AssertionError("unreachable")


def probe(kube: Kube, namespace: str, pod: str, *urls: str) -> tuple[int, list[dict[str, Any]]]:
    code, output = kube.exec(namespace, pod, ["python3", "/opt/web/probe.py", *urls], timeout=60)
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return code, lines


def probe_eventually(kube: Kube, namespace: str, pod: str, *urls: str, within: float = 60) -> list[dict[str, Any]]:
    def attempt_once() -> list[dict[str, Any]]:
        code, lines = probe(kube, namespace, pod, *urls)
        assert code == 0, f"probe from {pod} failed: {lines}"
        return lines

    for attempt in Retrying(
        stop=stop_after_delay(within), wait=wait_fixed(1), retry=retry_if_exception_type(AssertionError), reraise=True
    ):
        with attempt:
            return attempt_once()
    raise AssertionError("unreachable")
