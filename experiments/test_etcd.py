"""Resilience of a system of your own: a 3-member etcd StatefulSet on persistent volumes.

Written the way a user writes an experiment for their own system: its own
manifests, and nothing from chaoskit but public names (``chaoskit``'s exports
and the plugin's fixtures). etcd runs from the image the control plane's own
etcd runs (read from the cluster, so no image is pulled), each member's data
on a PersistentVolumeClaim of the cluster's default class.

The host reaches etcd only through a NodePort on 127.0.0.1, over etcd's JSON
gateway (``/v3/kv/put``, ``/v3/kv/range``): reads as the load, POSTed by the
built-in user with a body; writes by an acknowledged writer; the leader and
the members from ``/v3/maintenance/status`` and ``/v3/cluster/member/list``.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from chaoskit import (
    AckedWriter,
    Availability,
    Chaos,
    Cluster,
    Kube,
    LoadSpec,
    LostWrites,
    RecoveryTime,
    Workload,
    read_back,
)

MEMBERS = 3
RECOVERY_TARGET_SECONDS = 60
"""The killed member's pod back, its etcd restarted from its own volume and healthy again."""


@dataclass(frozen=True)
class Etcd:
    namespace: str
    port: int
    """The client NodePort on 127.0.0.1."""


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def post(port: int, path: str, body: dict[str, Any], timeout: float = 5) -> dict[str, Any]:
    """One call to etcd's JSON gateway; raises OSError (an HTTPError included) when it does not answer 200."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        answer: dict[str, Any] = json.loads(response.read())
    if "error" in answer:  # the gateway answers some failures 200 with an error body
        raise OSError(answer["error"])
    return answer


def etcd_objects(namespace: str, image: str, node_port: int) -> list[dict[str, Any]]:
    labels = {"app": "etcd"}
    peers = ",".join(f"etcd-{i}=http://etcd-{i}.etcd:2380" for i in range(MEMBERS))
    member = "$(POD_NAME).etcd"
    container = {
        "name": "etcd",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["etcd"],
        "args": [
            "--name=$(POD_NAME)",
            "--data-dir=/var/lib/etcd/data",
            "--listen-peer-urls=http://0.0.0.0:2380",
            "--listen-client-urls=http://0.0.0.0:2379",
            f"--advertise-client-urls=http://{member}:2379",
            f"--initial-advertise-peer-urls=http://{member}:2380",
            f"--initial-cluster={peers}",
            "--initial-cluster-state=new",
            f"--initial-cluster-token={namespace}",
        ],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "ports": [{"containerPort": 2379, "name": "client"}, {"containerPort": 2380, "name": "peer"}],
        # Healthy means this member sees a leader: a member that has not rejoined is not ready.
        "readinessProbe": {"httpGet": {"path": "/health", "port": 2379}, "periodSeconds": 1, "failureThreshold": 2},
        "volumeMounts": [{"name": "data", "mountPath": "/var/lib/etcd"}],
        "resources": {"requests": {"cpu": "20m", "memory": "32Mi"}},
    }
    return [
        {  # stable member names (etcd-0.etcd), resolvable before the members are ready
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "etcd", "namespace": namespace},
            "spec": {
                "clusterIP": "None",
                "publishNotReadyAddresses": True,
                "selector": labels,
                "ports": [{"name": "peer", "port": 2380}, {"name": "client", "port": 2379}],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "etcd-client", "namespace": namespace},
            "spec": {"type": "NodePort", "selector": labels, "ports": [{"port": 2379, "nodePort": node_port}]},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "etcd", "namespace": namespace},
            "spec": {
                "serviceName": "etcd",
                "replicas": MEMBERS,
                "podManagementPolicy": "Parallel",  # a member is ready only once a quorum is up
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [container],
                        "terminationGracePeriodSeconds": 5,
                        "tolerations": [
                            {"key": f"node-role.kubernetes.io/{role}", "effect": "NoSchedule"}
                            for role in ("master", "control-plane")  # three nodes for three members
                        ],
                        "affinity": {
                            "podAntiAffinity": {
                                "preferredDuringSchedulingIgnoredDuringExecution": [
                                    {
                                        "weight": 100,
                                        "podAffinityTerm": {
                                            "labelSelector": {"matchLabels": labels},
                                            "topologyKey": "kubernetes.io/hostname",
                                        },
                                    }
                                ]
                            }
                        },
                    },
                },
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "data"},
                        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "128Mi"}}},
                    }
                ],
            },
        },
    ]


def control_plane_etcd_image(kube: Kube) -> str:
    """The image the cluster's own etcd runs: on every control-plane node already, whatever the version."""
    pods = kube.pods("kube-system", "component=etcd")
    if not pods:
        pytest.skip("this cluster runs no etcd pod of its own to take the image from")
    image: str = pods[0].spec.containers[0].image
    return image


@pytest.fixture
def etcd(cluster: Cluster, kube: Kube, namespace: str) -> Iterator[Etcd]:
    port = cluster.free_node_port(kube)
    kube.apply(etcd_objects(namespace, control_plane_etcd_image(kube), port))
    kube.wait_whole(namespace, "etcd", kind="StatefulSet", timeout=180)
    system = Etcd(namespace, port)
    wait_answers(system, within=30)
    yield system


def wait_answers(etcd: Etcd, within: float) -> None:
    until = time.monotonic() + within
    while True:
        try:
            post(etcd.port, "/v3/kv/put", {"key": b64("probe"), "value": b64("1")})
            return
        except OSError:
            if time.monotonic() > until:
                raise
            time.sleep(0.5)


def members(etcd: Etcd) -> dict[str, str]:
    """member ID -> name (the pod's name)."""
    listed = post(etcd.port, "/v3/cluster/member/list", {})
    return {m["ID"]: m.get("name", "") for m in listed["members"]}


def leader(etcd: Etcd) -> str:
    """The leader's pod name, as the member that answers says."""
    status = post(etcd.port, "/v3/maintenance/status", {})
    return members(etcd)[status["leader"]]


def write_to(etcd: Etcd) -> Any:
    def write(key: str, value: str) -> None:
        post(etcd.port, "/v3/kv/put", {"key": b64(key), "value": b64(value)})

    return write


def read_from(etcd: Etcd) -> Any:
    def read(key: str) -> str | None:
        kvs = post(etcd.port, "/v3/kv/range", {"key": b64(key)}).get("kvs") or []
        return base64.b64decode(kvs[0]["value"]).decode() if kvs else None

    return read


@pytest.mark.parametrize("crash", [False, True], ids=["graceful", "crash"])
def test_leader_killed_under_writes_recovers_on_its_own_volume_and_loses_nothing(
    experiment, chaos: Chaos, kube: Kube, etcd: Etcd, crash: bool
) -> None:
    """The leader's pod deleted (graceful: SIGTERM first, and etcd hands its leadership over before it stops)
    or crashed (SIGKILL from the node, no SIGTERM: the followers must notice the silence and elect)."""
    old = leader(etcd)
    pod = kube.core.read_namespaced_pod(old, etcd.namespace)
    claim = kube.core.read_namespaced_persistent_volume_claim(f"data-{old}", etcd.namespace)
    ids_before = members(etcd)
    reads = LoadSpec(
        host=f"http://127.0.0.1:{etcd.port}",
        paths=("/v3/kv/range",),
        method="POST",
        body=json.dumps({"key": b64("probe")}),
        users=4,
        rate_per_user=10,
        run_seconds=90,
        warmup_seconds=3,
        timeout_seconds=5,
    )
    slo = [Availability(0.95), RecoveryTime(RECOVERY_TARGET_SECONDS), LostWrites(0)]
    workload = Workload(etcd.namespace, "etcd", "etcd-client", kind="StatefulSet")
    with experiment(reads, slo, workload, settle_seconds=5) as run:
        with AckedWriter(write_to(etcd), max_writes=5000, max_seconds=75, concurrency=2) as writer:
            writer.wait_for_acks(50)
            with chaos.pod_kill(etcd.namespace, "app=etcd", names=[old], crash=crash) as killed:
                pass
            recovered = run.wait_recovered(RECOVERY_TARGET_SECONDS)
            writer.wait_for_acks(writer.acknowledged() + 100)  # writes flow again after the recovery
        checked = read_back(read_from(etcd), writer.log.acknowledged)
        run.record(lost_writes=len(checked.lost))
    new_leader = leader(etcd)

    # The killed member came back as itself: the same claim (by UID), on the node its volume lives
    # on, under the member ID it had, and the cluster has all its members again.
    back = kube.core.read_namespaced_pod(old, etcd.namespace)
    assert back.metadata.uid != pod.metadata.uid, "the pod was replaced"
    again = kube.core.read_namespaced_persistent_volume_claim(f"data-{old}", etcd.namespace)
    assert again.metadata.uid == claim.metadata.uid and again.spec.volume_name == claim.spec.volume_name
    assert back.spec.node_name == pod.spec.node_name, "a member's volume keeps it on its node"
    volume = kube.core.read_persistent_volume(claim.spec.volume_name)
    pinned = [
        value
        for term in volume.spec.node_affinity.required.node_selector_terms
        for expression in term.match_expressions or []
        for value in expression.values or []
    ]
    assert pinned == [pod.spec.node_name], f"the volume is pinned to {pinned}, not to the member's node"
    assert members(etcd) == ids_before, "the member rejoined under its own ID"
    print(
        f"etcd leader {old} {'crashed' if crash else 'deleted'} on {pod.spec.node_name} ({killed.effect}): "
        f"whole again after {recovered:.1f} s, "
        f"leader now {new_leader}; {checked.checked} acknowledged writes read back, {len(checked.lost)} lost, "
        f"{len(writer.log.failed)} not acknowledged, longest gap {writer.log.longest_gap():.1f} s; "
        f"back on {back.spec.node_name} with claim {claim.spec.volume_name}"
    )
