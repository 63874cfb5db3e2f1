"""What chaoskit applies, it applies server-side as field manager ``chaoskit``: applying again keeps the
fields other managers own. Read back with the dynamic client's plain GET, not through ``Kube.apply``."""

from __future__ import annotations

import json
from typing import Any

from kubernetes import dynamic

from chaoskit.adapters.kube import Kube


def config_map(namespace: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "applied", "namespace": namespace, "labels": {"app": "applied"}},
        "data": data,
    }


def service(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "applied", "namespace": namespace},
        "spec": {"selector": {"app": "applied"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }


def test_applying_again_keeps_what_other_managers_own_and_takes_back_its_own_fields(kube: Kube, namespace: str) -> None:
    client = dynamic.DynamicClient(kube.api_client)
    maps = client.resources.get(api_version="v1", kind="ConfigMap")
    kube.apply([config_map(namespace, {"mode": "fast"}), service(namespace)])
    first_ip = kube.core.read_namespaced_service("applied", namespace).spec.cluster_ip

    # Another manager (an operator, kubectl by hand) adds an annotation, a label and a data key of its own,
    # and changes one of chaoskit's fields.
    theirs = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "applied",
            "namespace": namespace,
            "annotations": {"example.com/owner": "team-a"},
            "labels": {"team": "a"},
        },
        "data": {"theirs": "kept", "mode": "slow"},
    }
    maps.server_side_apply(
        body=json.dumps(theirs), name="applied", namespace=namespace, field_manager="someone-else", force_conflicts=True
    )

    kube.apply([config_map(namespace, {"mode": "fast"}), service(namespace)])  # chaoskit applies again
    found = maps.get(name="applied", namespace=namespace).to_dict()
    assert found["data"] == {"mode": "fast", "theirs": "kept"}, found["data"]
    assert found["metadata"]["annotations"] == {"example.com/owner": "team-a"}, found["metadata"]
    assert found["metadata"]["labels"] == {"app": "applied", "team": "a"}, found["metadata"]
    managers = {m["manager"]: m["operation"] for m in found["metadata"]["managedFields"]}
    assert managers == {"chaoskit": "Apply", "someone-else": "Apply"}, managers
    # The Service applied twice keeps the clusterIP the server gave it (a replace had to copy it back).
    assert kube.core.read_namespaced_service("applied", namespace).spec.cluster_ip == first_ip
