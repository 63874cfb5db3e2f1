"""Recovery of workloads other than Deployments, on the real cluster: the web fixture's image as a
3-replica StatefulSet (behind a headless and a normal Service) and as a DaemonSet, each watched with
``chaos.recovery_watch(..., kind=...)`` and its Service's ready endpoints read from the EndpointSlices the
server serves. The StatefulSet's recovery is held against an independent 50 ms poll of its readyReplicas."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from workloads import ReadyPoller, spread, web_objects

from chaoskit.adapters.kube import Kube
from chaoskit.adapters.status import workload_counts
from chaoskit.chaos import Chaos
from chaoskit.cluster import Cluster
from chaoskit.observe import RecoveryWatch

AGREEMENT_S = 0.5


def pod_template(namespace: str, image: str, labels: dict[str, str], spread_out: bool) -> dict[str, Any]:
    """The web fixture's pod (its image, command, port 8080 and readiness probe), under ``labels``; with
    ``spread_out``, preferring one pod per node as the web Deployment does."""
    template = copy.deepcopy(web_objects(namespace, image, node_port=30080)[0]["spec"]["template"])
    template["metadata"]["labels"] = labels
    template["spec"].pop("affinity", None)  # the web Deployment's names its own labels
    if spread_out:
        template["spec"]["affinity"] = spread(labels)
    return dict(template)


def services(namespace: str, name: str, labels: dict[str, str], headless: bool) -> list[dict[str, Any]]:
    """A normal ClusterIP Service ``name``, and with ``headless`` the StatefulSet's governing ``name-pods``."""
    port = [{"port": 80, "targetPort": 8080}]
    objects = [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": labels, "ports": port},
        }
    ]
    if headless:
        spec = {"clusterIP": "None", "selector": labels, "ports": port, "publishNotReadyAddresses": True}
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": f"{name}-pods", "namespace": namespace},
                "spec": spec,
            }
        )
    return objects


def statefulset_objects(namespace: str, image: str) -> list[dict[str, Any]]:
    labels = {"app": "web-sts"}
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "replicas": 3,
            "serviceName": "web-pods",
            "selector": {"matchLabels": labels},
            "template": pod_template(namespace, image, labels, spread_out=True),
        },
    }
    return [*services(namespace, "web", labels, headless=True), statefulset]


def daemonset_objects(namespace: str, image: str) -> list[dict[str, Any]]:
    labels = {"app": "web-ds"}
    daemonset = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "web-ds", "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": pod_template(namespace, image, labels, spread_out=False),
        },
    }
    return [*services(namespace, "web-ds", labels, headless=False), daemonset]


def served_json(read: Callable[..., Any], name: str, namespace: str) -> dict[str, Any]:
    """An object's JSON exactly as the API server serves it (what the watch reads too)."""
    response = read(name, namespace, _preload_content=False, _request_timeout=10)
    try:
        body: dict[str, Any] = json.loads(response.data)
    finally:
        response.release_conn()
    return body


def expected_slices_api(kube: Kube) -> str:
    minor = int("".join(c for c in kube.version.get_code(_request_timeout=10).minor if c.isdigit()))
    return "discovery.k8s.io/v1" if minor >= 21 else "discovery.k8s.io/v1beta1"


def wait_whole(watch: RecoveryWatch, endpoints: int, timeout: float = 180) -> None:
    """Wait on the watch's own events until the workload is whole and the Service has ``endpoints`` ready."""

    def whole() -> bool | None:
        last = {e.source: e for e in watch.events}
        workload, service = last.get(watch.workload_source), last.get("endpoints")
        done = workload is not None and workload.whole and service is not None and service.ready == endpoints
        return True if done else None

    assert watch.wait_until(whole, timeout), f"not whole within {timeout:g} s: {watch.events[-6:]}"


@contextmanager
def polling(cluster: Cluster, namespace: str, name: str) -> Iterator[ReadyPoller]:
    with cluster.kube() as kube, ReadyPoller(kube, namespace, name, kind="StatefulSet").running() as poller:
        yield poller


def test_a_statefulset_pod_kill_is_measured_from_the_statefulset_and_its_endpoint_slices(
    chaos: Chaos, kube: Kube, cluster: Cluster, namespace: str, web_image: str
) -> None:
    kube.apply(statefulset_objects(namespace, web_image))
    kube.wait_for(
        kube.apps.list_namespaced_stateful_set,
        lambda sets: "web" in sets and (sets["web"].status.ready_replicas or 0) == 3,
        240,
        "StatefulSet web to have 3 ready replicas",
        namespace=namespace,
    )
    with chaos.recovery_watch(namespace, "web", service="web", kind="StatefulSet") as watch:
        wait_whole(watch, endpoints=3)
        assert watch.endpoints_api == expected_slices_api(kube)
        # The watch's notion of whole agrees with the object as the server serves it.
        served = served_json(kube.apps.read_namespaced_stateful_set, "web", namespace)
        assert workload_counts(served, "StatefulSet") == (3, 3, True), served["status"]
        status = served["status"]
        assert status["currentRevision"] == status["updateRevision"]
        with polling(cluster, namespace, "web") as truth:
            with chaos.pod_kill(namespace, "app=web-sts", count=1, grace_seconds=0) as record:
                assert record.verified
            assert record.injected_mono is not None
            recovery = watch.wait_recovered(record.injected_mono, timeout=180)
        assert recovery.recovered, (recovery, watch.events[-10:])
    assert recovery.loss_seen is not None and recovery.whole is not None
    assert recovery.endpoints_loss_seen is not None and recovery.endpoints_whole is not None
    assert 0 <= recovery.loss_seen < recovery.whole < 180
    lost_at, whole_at = truth.lost_and_whole(record.injected_mono, 3)
    assert lost_at is not None and whole_at is not None, (truth.samples[-10:], truth.errors)
    truth_whole = whole_at - record.injected_mono
    difference = recovery.whole - truth_whole
    (victim,) = record.targets
    print(
        f"StatefulSet pod {victim} killed: loss seen after {recovery.loss_seen:.3f} s (poll: "
        f"{lost_at - record.injected_mono:.3f} s), StatefulSet whole after {recovery.whole:.3f} s, "
        f"endpoints ({watch.endpoints_api}) lost after {recovery.endpoints_loss_seen:.3f} s and whole after "
        f"{recovery.endpoints_whole:.3f} s; recovery {recovery.seconds:.3f} s; own 50 ms poll of readyReplicas "
        f"whole after {truth_whole:.3f} s: difference {difference:+.3f} s ({len(truth.samples)} polls, "
        f"{truth.errors} failed)"
    )
    assert abs(difference) <= AGREEMENT_S, f"the watch said whole {difference:+.3f} s from the poll"
    pods = kube.pods(namespace, "app=web-sts")
    assert sorted(p.metadata.name for p in pods) == ["web-0", "web-1", "web-2"]


def test_a_daemonset_is_watched_whole_and_recovers_from_a_pod_kill(
    chaos: Chaos, kube: Kube, namespace: str, web_image: str
) -> None:
    kube.apply(daemonset_objects(namespace, web_image))
    # Where the DaemonSet runs: every node without a taint it does not tolerate (here: the workers; a
    # DaemonSet tolerates a cordon by itself).
    nodes = [
        n.metadata.name
        for n in kube.nodes()
        if not any(
            t.effect in ("NoSchedule", "NoExecute") and t.key != "node.kubernetes.io/unschedulable"
            for t in n.spec.taints or []
        )
    ]
    assert nodes
    kube.wait_for(
        kube.apps.list_namespaced_daemon_set,
        lambda sets: "web-ds" in sets and (sets["web-ds"].status.number_ready or 0) == len(nodes),
        240,
        f"DaemonSet web-ds to be ready on {len(nodes)} nodes",
        namespace=namespace,
    )
    with chaos.recovery_watch(namespace, "web-ds", service="web-ds", kind="DaemonSet") as watch:
        wait_whole(watch, endpoints=len(nodes))
        served = served_json(kube.apps.read_namespaced_daemon_set, "web-ds", namespace)
        assert workload_counts(served, "DaemonSet") == (len(nodes), len(nodes), True), served["status"]
        last = [e for e in watch.events if e.source == "daemonset"][-1]
        assert (last.ready, last.desired, last.whole) == (len(nodes), len(nodes), True)
        ready_pods = [
            p
            for p in kube.pods(namespace, "app=web-ds")
            if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        ]
        assert sorted(p.spec.node_name for p in ready_pods) == sorted(nodes)
        with chaos.pod_kill(namespace, "app=web-ds", count=1, grace_seconds=0, max_share=1.0) as record:
            assert record.verified
        assert record.injected_mono is not None
        recovery = watch.wait_recovered(record.injected_mono, timeout=180)
    assert recovery.recovered and recovery.loss_seen is not None, (recovery, watch.events[-10:])
    assert recovery.endpoints_loss_seen is not None
    print(
        f"DaemonSet on {len(nodes)} nodes, a pod killed: loss seen after {recovery.loss_seen:.3f} s, whole after "
        f"{recovery.whole:.3f} s, endpoints ({watch.endpoints_api}) whole after {recovery.endpoints_whole:.3f} s"
    )
