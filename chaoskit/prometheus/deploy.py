"""Prometheus in the cluster, for SLO checks: its objects, deployment and removal.

One Prometheus per namespace (``chaoskit-monitoring`` by default), built from
Debian's package (:func:`chaoskit.provision.images.build_prometheus_image`),
with its data in an ``emptyDir``: it holds the metrics of a test session, not
a history. It scrapes

* pods annotated ``prometheus.io/scrape: "true"``, on the port of
  ``prometheus.io/port`` (and the path of ``prometheus.io/path``), labelled
  with their ``namespace``, ``pod`` and ``node`` and their own labels (job ``pods``);
* every kubelet (job ``kubelet``) and its cAdvisor (job ``cadvisor``) over
  HTTPS on the node's port 10250, with the service account's token; the
  kubelet's certificate is self-signed, hence no verification;
* itself (job ``prometheus``).

Pods are scraped every second, so an SLO window of tens of seconds has tens
of points; nodes every five, because a kubelet's and cAdvisor's pages are
large and the machine has two cores.

Prometheus prefers the control-plane node (it tolerates its taint): the
faults under test stop, drain and partition workers, and the instrument that
measures them should not be what they knock over. The host reaches it through
a NodePort published on 127.0.0.1.

Deploying is idempotent: an existing deployment in the namespace keeps its
NodePort and its pod (and so its data) unless its configuration changed; the
pod template carries a digest of the configuration so a change rolls it.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import yaml

from chaoskit.adapters.kube import Kube
from chaoskit.adapters.status import deployment_available
from chaoskit.cluster.base import Cluster
from chaoskit.errors import UsageError
from chaoskit.prometheus.client import PrometheusClient

NAMESPACE = "chaoskit-monitoring"
"""Where Prometheus runs unless told otherwise."""
NAME = "prometheus"
"""The name of its Deployment, Service, ConfigMap and ServiceAccount."""
PORT = 9090
LABELS = {"app.kubernetes.io/name": "prometheus", "app.kubernetes.io/part-of": "chaoskit"}
TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
CONFIG_DIGEST = "chaoskit.io/config-digest"
RULES_FILE = "rules.yml"
"""The rules file Prometheus reads, beside its configuration."""
NO_RULES = "groups: []\n"


@dataclass(frozen=True)
class PrometheusDeployment:
    """A Prometheus running in the cluster and reachable from the host."""

    namespace: str
    """The namespace it runs in (its own)."""
    node_port: int
    """The NodePort the host reaches it on, at 127.0.0.1."""
    image: str
    """The image it runs."""
    ready_seconds: float
    """How long :func:`deploy_prometheus` took until it answered from the host."""

    @property
    def url(self) -> str:
        """Its address from the host."""
        return f"http://127.0.0.1:{self.node_port}"

    def client(self, **options: Any) -> PrometheusClient:
        """A query client for it (options as for :class:`PrometheusClient`)."""
        return PrometheusClient(self.url, **options)


def cluster_role_name(namespace: str) -> str:
    """The ClusterRole and ClusterRoleBinding of the Prometheus in ``namespace``."""
    return f"chaoskit-prometheus-{namespace}"


def prometheus_config(scrape_interval: float = 1.0, node_scrape_interval: float = 5.0) -> dict[str, Any]:
    """The ``prometheus.yml`` of chaoskit's Prometheus, as a mapping."""

    def seconds(value: float) -> str:
        return f"{round(value * 1000)}ms"

    node_job = {
        "scrape_interval": seconds(node_scrape_interval),
        "scrape_timeout": seconds(node_scrape_interval),
        "scheme": "https",
        "authorization": {"credentials_file": TOKEN},
        # kubelets serve a self-signed certificate (kubeadm's default serverTLSBootstrap: false).
        "tls_config": {"insecure_skip_verify": True},
        "kubernetes_sd_configs": [{"role": "node"}],
        "relabel_configs": [{"source_labels": ["__meta_kubernetes_node_name"], "target_label": "node"}],
    }
    return {
        "global": {
            "scrape_interval": seconds(scrape_interval),
            "scrape_timeout": seconds(scrape_interval),
            # Alerting and recording rules evaluated as often as pods are scraped: an alert's state follows the
            # fault within a second (Prometheus's default is a minute).
            "evaluation_interval": seconds(scrape_interval),
        },
        "rule_files": [f"/etc/prometheus/{RULES_FILE}"],
        "scrape_configs": [
            {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{PORT}"]}]},
            {
                "job_name": "pods",
                "kubernetes_sd_configs": [{"role": "pod"}],
                "relabel_configs": [
                    {
                        "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
                        "regex": "true",
                        "action": "keep",
                    },
                    # A pod that has finished (or not started) has nothing to scrape.
                    {
                        "source_labels": ["__meta_kubernetes_pod_phase"],
                        "regex": "Pending|Succeeded|Failed|Unknown",
                        "action": "drop",
                    },
                    {
                        "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_path"],
                        "regex": "(.+)",
                        "target_label": "__metrics_path__",
                    },
                    {
                        "source_labels": ["__address__", "__meta_kubernetes_pod_annotation_prometheus_io_port"],
                        "regex": r"([^:]+)(?::\d+)?;(\d+)",
                        "replacement": "$1:$2",
                        "target_label": "__address__",
                    },
                    # The pod's own labels first, so that ours below win a clash.
                    {"action": "labelmap", "regex": "__meta_kubernetes_pod_label_(.+)"},
                    {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                    {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                    {"source_labels": ["__meta_kubernetes_pod_node_name"], "target_label": "node"},
                ],
            },
            {"job_name": "kubelet", **node_job},
            {"job_name": "cadvisor", "metrics_path": "/metrics/cadvisor", **node_job},
        ],
    }


def check_rules(text: str, source: str = "the Prometheus rules") -> str:
    """``text`` when it has the shape of a Prometheus rules file (``groups:``, each with a ``name`` and
    ``rules``, each rule an ``alert`` or a ``record`` with an ``expr``); else a :class:`UsageError` saying what is
    wrong, before Prometheus is restarted with it (it would refuse to start). The expressions themselves are
    Prometheus's to judge: a bad one keeps it from becoming ready, and the deploy fails saying so."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"{source} are not YAML: {exc}") from None
    groups = document.get("groups") if isinstance(document, dict) else None
    if not isinstance(groups, list):
        raise UsageError(f"{source} need groups: a list of rule groups (see Prometheus's alerting rules)")
    for i, group in enumerate(groups):
        if not isinstance(group, dict) or not group.get("name") or not isinstance(group.get("rules"), list):
            raise UsageError(f"{source}: groups[{i}] needs a name and a list of rules")
        for j, rule in enumerate(group["rules"]):
            if not isinstance(rule, dict) or not (rule.get("alert") or rule.get("record")) or not rule.get("expr"):
                raise UsageError(f"{source}: groups[{i}].rules[{j}] needs alert (or record) and expr")
    return text


def prometheus_objects(
    namespace: str,
    image: str,
    node_port: int,
    scrape_interval: float = 1.0,
    node_scrape_interval: float = 5.0,
    retention: str = "6h",
    rules: str = NO_RULES,
) -> list[dict[str, Any]]:
    """Every object of a Prometheus in ``namespace``, cluster-scoped RBAC included, in creation order; ``rules``:
    the text of a Prometheus rules file (alerting and recording rules, see :func:`check_rules`)."""
    config = yaml.safe_dump(prometheus_config(scrape_interval, node_scrape_interval), sort_keys=False)
    digest = hashlib.sha256(f"{config}\0{retention}\0{rules}".encode()).hexdigest()[:12]
    meta = {"name": NAME, "namespace": namespace, "labels": LABELS}
    rbac_name = cluster_role_name(namespace)
    control_plane = [
        {"key": f"node-role.kubernetes.io/{role}", "operator": "Exists", "effect": "NoSchedule"}
        for role in ("master", "control-plane")  # 1.20 taints "master"; later releases "control-plane"
    ]
    prefer_control_plane = {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {
                "weight": 100,
                "preference": {"matchExpressions": [{"key": f"node-role.kubernetes.io/{role}", "operator": "Exists"}]},
            }
            for role in ("master", "control-plane")
        ]
    }
    container = {
        "name": "prometheus",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": [
            "--config.file=/etc/prometheus/prometheus.yml",
            "--storage.tsdb.path=/prometheus",
            f"--storage.tsdb.retention.time={retention}",
            f"--web.listen-address=:{PORT}",
        ],
        "ports": [{"name": "web", "containerPort": PORT}],
        "readinessProbe": {"httpGet": {"path": "/-/ready", "port": PORT}, "periodSeconds": 1, "failureThreshold": 3},
        "livenessProbe": {
            "httpGet": {"path": "/-/healthy", "port": PORT},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/prometheus", "readOnly": True},
            {"name": "data", "mountPath": "/prometheus"},
        ],
    }
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": LABELS}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": rbac_name, "labels": LABELS},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["pods", "nodes", "nodes/metrics", "endpoints", "services"],
                    "verbs": ["get", "list", "watch"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": rbac_name, "labels": LABELS},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": rbac_name},
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": namespace}],
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta,
            "data": {"prometheus.yml": config, RULES_FILE: rules},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "replicas": 1,
                # One pod with its data in an emptyDir: never two side by side.
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": LABELS},
                "template": {
                    "metadata": {"labels": LABELS, "annotations": {CONFIG_DIGEST: digest}},
                    "spec": {
                        "serviceAccountName": NAME,
                        "terminationGracePeriodSeconds": 10,
                        "securityContext": {"runAsUser": 65534, "runAsGroup": 65534, "runAsNonRoot": True},
                        "tolerations": control_plane,
                        "affinity": {"nodeAffinity": prefer_control_plane},
                        "containers": [container],
                        "volumes": [
                            {"name": "config", "configMap": {"name": NAME}},
                            {"name": "data", "emptyDir": {}},
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {
                "type": "NodePort",
                "selector": LABELS,
                "ports": [{"name": "web", "port": PORT, "targetPort": PORT, "nodePort": node_port}],
            },
        },
    ]


def deploy_prometheus(
    kube: Kube,
    cluster: Cluster,
    namespace: str = NAMESPACE,
    node_port: int | None = None,
    *,
    image: str | None = None,
    scrape_interval: float = 1.0,
    node_scrape_interval: float = 5.0,
    timeout: float = 180.0,
    rules: str | None = None,
) -> PrometheusDeployment:
    """Deploy Prometheus (or keep the one deployed) and wait until the host can query it.

    ``node_port`` defaults to the one an existing deployment uses, else the
    highest free port of those the cluster publishes on 127.0.0.1 (tests
    take the lowest). ``image`` defaults to the one built from Debian's
    package, loaded into the cluster.
    """
    started = time.monotonic()
    if scrape_interval <= 0 or node_scrape_interval <= 0:
        raise UsageError("Prometheus scrape intervals must be positive")
    port = node_port or _current_node_port(kube, namespace) or cluster.free_node_port(kube, highest=True)
    if port not in cluster.node_ports:
        published = ", ".join(map(str, cluster.node_ports)) or "none"
        raise UsageError(
            f"NodePort {port} is not published on 127.0.0.1 by cluster {cluster.name!r} (published: {published})"
        )
    if image is None:
        from chaoskit.provision.images import build_prometheus_image

        image = build_prometheus_image()
        cluster.load_image(image)
    _wait_namespace_gone_if_terminating(kube, namespace, timeout)
    objects = prometheus_objects(
        namespace, image, port, scrape_interval, node_scrape_interval, rules=check_rules(rules or NO_RULES)
    )
    kube.apply(objects)
    remaining = max(1.0, timeout - (time.monotonic() - started))
    kube.wait_for(
        kube.apps.list_namespaced_deployment,
        lambda deps: NAME in deps and deployment_available(deps[NAME]),
        remaining,
        f"Prometheus in {namespace} to be ready",
        namespace=namespace,
    )
    # kube-proxy programs the NodePort a moment after the pod is ready.
    with PrometheusClient.on_port(port) as client:
        client.check_reachable(within=max(5.0, timeout - (time.monotonic() - started)))
    return PrometheusDeployment(namespace, port, image, time.monotonic() - started)


def remove_prometheus(kube: Kube, namespace: str = NAMESPACE, timeout: float = 120.0) -> None:
    """Delete the Prometheus of ``namespace``: its cluster-scoped RBAC and the namespace, waiting until it is gone."""
    for kind in ("ClusterRoleBinding", "ClusterRole"):
        kube.delete(kind, cluster_role_name(namespace), api_version="rbac.authorization.k8s.io/v1")
    if kube.delete("Namespace", namespace):
        _wait_namespace_gone(kube, namespace, timeout)


def _current_node_port(kube: Kube, namespace: str) -> int | None:
    try:
        service = kube.core.read_namespaced_service(NAME, namespace)
    except Exception as exc:  # the client's ApiException: 404 when nothing is deployed
        if getattr(exc, "status", None) == 404:
            return None
        raise
    for port in (service.spec.ports if service.spec else None) or []:
        if port.node_port:
            return int(port.node_port)
    return None


def _wait_namespace_gone_if_terminating(kube: Kube, namespace: str, timeout: float) -> None:
    try:
        current = kube.core.read_namespace(namespace)
    except Exception as exc:
        if getattr(exc, "status", None) == 404:
            return
        raise
    if current.metadata is not None and current.metadata.deletion_timestamp is not None:
        _wait_namespace_gone(kube, namespace, timeout)


def _wait_namespace_gone(kube: Kube, namespace: str, timeout: float) -> None:
    kube.wait_for(
        kube.core.list_namespace,
        lambda namespaces: namespace not in namespaces,
        timeout,
        f"namespace {namespace} to be deleted",
        field_selector=f"metadata.name={namespace}",
    )
