"""The local-volume agent's decisions, from claim, volume and class objects (no cluster needed)."""

from chaoskit.agent.volumes import (
    PROVISIONED_BY,
    PROVISIONER,
    SELECTED_NODE,
    plan,
    should_delete,
    volume_for,
)
from chaoskit.cluster.addons import class_differs, storage_class

BASE = "/var/lib/chaoskit/volumes"
CLASSES = [
    {"metadata": {"name": "standard"}, "provisioner": PROVISIONER, "reclaimPolicy": "Delete"},
    {"metadata": {"name": "kept"}, "provisioner": PROVISIONER, "reclaimPolicy": "Retain"},
    {"metadata": {"name": "other"}, "provisioner": "kubernetes.io/host-path"},
]


def claim(name="data-db-0", uid="u1", node="w1", storage_class="standard", volume_name=None, **spec):
    annotations = {SELECTED_NODE: node} if node else {}
    return {
        "metadata": {"name": name, "namespace": "shop", "uid": uid, "annotations": annotations},
        "spec": {
            "storageClassName": storage_class,
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "2Gi"}},
            **({"volumeName": volume_name} if volume_name else {}),
            **spec,
        },
        "status": {"phase": "Bound" if volume_name else "Pending"},
    }


def made(claims, volumes=(), node="w1", hostname="w1"):
    return plan(list(claims), list(volumes), CLASSES, node, hostname, BASE)


def released(volume, phase="Released"):
    return {**volume, "status": {"phase": phase}}


def test_a_claim_scheduled_here_gets_a_local_volume_pinned_to_this_node_and_bound_to_it():
    todo = made([claim()])
    [(for_claim, volume)] = todo.create
    assert for_claim["metadata"]["uid"] == "u1" and not todo.delete and not todo.refuse
    assert volume["metadata"]["name"] == "pvc-u1"
    assert volume["metadata"]["annotations"] == {PROVISIONED_BY: PROVISIONER}
    spec = volume["spec"]
    assert spec["local"] == {"path": f"{BASE}/pvc-u1"}
    assert spec["capacity"] == {"storage": "2Gi"} and spec["accessModes"] == ["ReadWriteOnce"]
    assert spec["storageClassName"] == "standard" and spec["persistentVolumeReclaimPolicy"] == "Delete"
    assert spec["volumeMode"] == "Filesystem"
    assert spec["claimRef"] == {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "namespace": "shop",
        "name": "data-db-0",
        "uid": "u1",
    }
    assert spec["nodeAffinity"] == {
        "required": {
            "nodeSelectorTerms": [
                {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["w1"]}]}
            ]
        }
    }


def test_node_affinity_names_the_hostname_label_and_the_reclaim_policy_comes_from_the_class():
    volume = volume_for(claim(storage_class="kept"), CLASSES[1], "w1", "host-w1", BASE)
    term = volume["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]
    assert term["matchExpressions"][0]["values"] == ["host-w1"]
    assert volume["spec"]["persistentVolumeReclaimPolicy"] == "Retain"


def test_claims_that_are_not_this_agents_to_serve_are_ignored():
    ignored = [
        claim(uid="other-node", node="w2"),
        claim(uid="no-selected-node", node=None),
        claim(uid="other-provisioner", storage_class="other"),
        claim(uid="unknown-class", storage_class="nosuch"),
        claim(uid="bound", volume_name="pvc-bound"),
    ]
    going = claim(uid="going")
    going["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    todo = made([*ignored, going])
    assert todo.create == [] and todo.refuse == [] and todo.delete == []


def test_a_claim_whose_volume_exists_already_is_not_provisioned_twice():
    volume = volume_for(claim(), CLASSES[0], "w1", "w1", BASE)
    assert made([claim()], [volume]).create == []
    # Also when the volume has another name but is already pre-bound to the claim's uid.
    renamed = {**volume, "metadata": {**volume["metadata"], "name": "pvc-elsewhere"}}
    assert made([claim()], [renamed]).create == []
    # A claim of the same name made anew (another uid) is a new claim.
    assert [c["metadata"]["uid"] for c, _ in made([claim(uid="u2")], [volume]).create] == ["u2"]


def test_claims_a_directory_cannot_serve_are_refused_with_a_reason():
    todo = made([claim(uid="b", volumeMode="Block"), claim(uid="s", selector={"matchLabels": {"a": "b"}})])
    assert todo.create == []
    reasons = {c["metadata"]["uid"]: reason for c, reason in todo.refuse}
    assert "Block" in reasons["b"] and "selector" in reasons["s"]


def test_a_released_volume_of_this_node_is_deleted():
    volume = volume_for(claim(), CLASSES[0], "w1", "w1", BASE)
    assert made([], [released(volume)]).delete == [released(volume)]
    assert should_delete(released(volume), "w1", BASE)


def test_volumes_in_use_retained_elsewhere_or_not_ours_are_never_deleted():
    volume = volume_for(claim(), CLASSES[0], "w1", "w1", BASE)
    assert not should_delete(released(volume, "Bound"), "w1", BASE)
    assert not should_delete(released(volume, "Available"), "w1", BASE)
    assert not should_delete(released(volume), "w2", BASE), "another node's volume"
    retained = volume_for(claim(storage_class="kept"), CLASSES[1], "w1", "w1", BASE)
    assert not should_delete(released(retained), "w1", BASE)
    foreign = released(volume)
    foreign["metadata"] = {**volume["metadata"], "annotations": {PROVISIONED_BY: "rancher.io/local-path"}}
    assert not should_delete(foreign, "w1", BASE)
    elsewhere = released(volume)
    elsewhere["spec"] = {**volume["spec"], "local": {"path": "/var/lib/kubelet"}}
    assert not should_delete(elsewhere, "w1", BASE), "a path this agent did not make is never removed"
    two_nodes = released(volume)
    term = {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["w1", "w2"]}]}
    two_nodes["spec"] = {**volume["spec"], "nodeAffinity": {"required": {"nodeSelectorTerms": [term]}}}
    assert not should_delete(two_nodes, "w1", BASE)
    assert made([], [released(volume, "Bound"), released(retained), foreign, elsewhere]).delete == []


def test_kinds_host_path_class_must_be_recreated_and_ours_need_not():
    kind_fallback = {
        "metadata": {"name": "standard"},
        "provisioner": "kubernetes.io/host-path",
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    }
    ours = storage_class()
    assert ours["provisioner"] == PROVISIONER and ours["volumeBindingMode"] == "WaitForFirstConsumer"
    assert ours["metadata"]["annotations"] == {"storageclass.kubernetes.io/is-default-class": "true"}
    assert class_differs(kind_fallback, ours)
    served = {**ours, "metadata": {"name": "standard", "resourceVersion": "7", "uid": "x"}}
    assert not class_differs(served, ours)
