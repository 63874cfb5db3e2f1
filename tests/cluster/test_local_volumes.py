"""Node-pinned local volumes on the real cluster (the air-gapped flavour's ``standard`` StorageClass).

A 1-replica StatefulSet with a volumeClaimTemplate (no class named: the default one) writes the UID of
its first pod into its volume. Its template is then changed to prefer any other node, and its pod is
killed with grace 0: the new pod must still come back on the same node (only the volume's node affinity
holds it there) and read that file; the volume must be a ``local`` one pinned to that node. Deleting the
claim must delete the volume and its directory. What each node holds is read independently of the agent
under test, with ``docker exec NODE ...`` on the node container.
"""

from __future__ import annotations

import subprocess
import time
from typing import Any

import pytest
from tenacity import Retrying, stop_after_delay, wait_fixed

from chaoskit.adapters.kube import Kube
from chaoskit.adapters.status import pod_ready
from chaoskit.cluster import Cluster

VOLUMES_DIR = "/var/lib/chaoskit/volumes"
"""Where the agent keeps volumes on each node (stated here, not imported from the code under test)."""
PROVISIONER = "chaoskit.io/local-volume"
CLAIM = "data-store-0"
POD = "store-0"
# The first pod on the volume writes its UID into first-pod; every pod copies what it finds there into a
# file named after itself (seen-by-<its UID>), so what each pod read is on the node to be checked.
SCRIPT = (
    'test -e /data/first-pod || echo "$POD_UID" > /data/first-pod; '
    'cp /data/first-pod "/data/seen-by-$POD_UID"; exec sleep infinity'
)


def statefulset(namespace: str, image: str) -> dict[str, Any]:
    labels = {"app": "store"}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "store", "namespace": namespace},
        "spec": {
            "replicas": 1,
            "serviceName": "store",
            # A change of the template waits for a pod to be deleted (the test kills it) instead of rolling out.
            "updateStrategy": {"type": "OnDelete"},
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 0,
                    "containers": [
                        {
                            "name": "store",
                            "image": image,
                            "imagePullPolicy": "Never",
                            "command": ["sh", "-c", SCRIPT],
                            "env": [{"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}}],
                            "readinessProbe": {
                                "exec": {"command": ["sh", "-c", 'test -s "/data/seen-by-$POD_UID"']},
                                "periodSeconds": 1,
                            },
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        }
                    ],
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "64Mi"}}},
                }
            ],
        },
    }


def on_node(node: str, *command: str) -> subprocess.CompletedProcess[str]:
    """Run a command in a kind node's container (the node's own view of its disk)."""
    return subprocess.run(["docker", "exec", node, *command], capture_output=True, text=True, timeout=60, check=False)


def volume_dirs(node: str) -> list[str]:
    listing = on_node(node, "ls", "-1", VOLUMES_DIR)
    assert listing.returncode == 0, listing.stderr
    return listing.stdout.split()


def wait_claim_bound(kube: Kube, namespace: str, timeout: float = 120) -> float:
    return kube.wait_for(
        kube.core.list_namespaced_persistent_volume_claim,
        lambda claims: CLAIM in claims and claims[CLAIM].status.phase == "Bound",
        timeout,
        f"claim {CLAIM} Bound",
        namespace=namespace,
    )


def wait_pod_ready(kube: Kube, namespace: str, not_uid: str | None = None, timeout: float = 120) -> Any:
    """Wait until pod store-0 is Ready (a pod other than ``not_uid``); return it."""
    seen: dict[str, Any] = {}

    def ready(pods: dict[str, Any]) -> bool:
        pod = pods.get(POD)
        if pod is None or pod.metadata.uid == not_uid or not pod_ready(pod):
            return False
        seen["pod"] = pod
        return True

    kube.wait_for(kube.core.list_namespaced_pod, ready, timeout, f"a new pod {POD} Ready", namespace=namespace)
    return seen["pod"]


def test_statefulset_pod_keeps_its_data_on_its_node_and_the_volume_goes_with_its_claim(
    cluster: Cluster, kube: Kube, namespace: str, web_image: str
) -> None:
    if cluster.flavor != "airgap":
        pytest.skip("stock kind has its own local-path-provisioner; chaoskit's local volumes serve the air-gapped one")
    standard = kube.get("StorageClass", "standard", api_version="storage.k8s.io/v1")
    assert standard is not None
    assert standard["provisioner"] == PROVISIONER and standard["volumeBindingMode"] == "WaitForFirstConsumer"
    assert standard["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"

    started = time.monotonic()
    kube.apply([statefulset(namespace, web_image)])
    bound_after = wait_claim_bound(kube, namespace)
    first = wait_pod_ready(kube, namespace)
    ready_after = time.monotonic() - started
    node = first.spec.node_name

    claim = kube.core.read_namespaced_persistent_volume_claim(CLAIM, namespace)
    assert claim.spec.storage_class_name == "standard"
    volume = kube.core.read_persistent_volume(claim.spec.volume_name)
    assert volume.metadata.annotations["pv.kubernetes.io/provisioned-by"] == PROVISIONER
    assert volume.spec.local.path == f"{VOLUMES_DIR}/{volume.metadata.name}", volume.spec
    assert volume.spec.host_path is None
    terms = volume.spec.node_affinity.required.node_selector_terms
    node_labels = kube.core.read_node(node).metadata.labels
    assert [[(e.key, e.operator, e.values) for e in t.match_expressions] for t in terms] == [
        [("kubernetes.io/hostname", "In", [node_labels["kubernetes.io/hostname"]])]
    ]
    ref = volume.spec.claim_ref
    assert (ref.namespace, ref.name, ref.uid) == (namespace, CLAIM, claim.metadata.uid)
    assert volume.spec.persistent_volume_reclaim_policy == "Delete"
    assert volume.spec.capacity["storage"] == "64Mi" and volume.spec.access_modes == ["ReadWriteOnce"]

    # The node itself holds the file the pod wrote, in the volume's directory.
    directory = volume.spec.local.path
    assert on_node(node, "cat", f"{directory}/first-pod").stdout.strip() == first.metadata.uid
    others = [n.metadata.name for n in kube.core.list_node().items if n.metadata.name != node]
    for other in others:
        assert on_node(other, "test", "-e", directory).returncode != 0, f"{directory} exists on {other} too"

    # The next pod prefers any other node: only the volume's node affinity keeps it on this one.
    away = {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": [node_labels["kubernetes.io/hostname"]]}
    prefer_away = {
        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "preference": {"matchExpressions": [away]}}]
    }
    kube.apps.patch_namespaced_stateful_set(
        "store", namespace, {"spec": {"template": {"spec": {"affinity": {"nodeAffinity": prefer_away}}}}}
    )
    killed = time.monotonic()
    kube.core.delete_namespaced_pod(POD, namespace, grace_period_seconds=0)
    second = wait_pod_ready(kube, namespace, not_uid=first.metadata.uid)
    back_after = time.monotonic() - killed
    assert second.spec.affinity.node_affinity is not None, "the new pod is not of the patched template"
    assert second.spec.node_name == node
    seen = on_node(node, "cat", f"{directory}/seen-by-{second.metadata.uid}").stdout.strip()
    assert seen == first.metadata.uid, "the new pod did not find the first pod's file"
    # The kubelet may route an exec by pod name to the killed pod of the same name for a moment: retry it.
    for attempt in Retrying(stop=stop_after_delay(20), wait=wait_fixed(0.5), reraise=True):
        with attempt:
            code, output = kube.exec(namespace, POD, ["cat", "/data/first-pod"])
    assert (code, output.strip()) == (0, first.metadata.uid), "the new pod does not see the first pod's file"

    # Delete the workload, then its claim: the agent deletes the volume and its directory.
    kube.delete("StatefulSet", "store", namespace, api_version="apps/v1")
    deleted = time.monotonic()
    kube.core.delete_namespaced_persistent_volume_claim(CLAIM, namespace)
    kube.wait_for(
        kube.core.list_persistent_volume,
        lambda volumes: volume.metadata.name not in volumes,
        120,
        f"volume {volume.metadata.name} deleted",
    )
    gone_after = time.monotonic() - deleted
    assert volume.metadata.name not in volume_dirs(node)
    assert on_node(node, "test", "-e", directory).returncode == 1, f"{directory} is still on {node}"

    print(
        f"\nlocal volume on {node}: StatefulSet applied -> claim Bound {bound_after:.1f} s, -> pod Ready "
        f"{ready_after:.1f} s; pod killed (grace 0) -> new pod Ready with the data {back_after:.1f} s; "
        f"claim deleted -> volume and directory gone {gone_after:.1f} s"
    )
