"""Every object chaoskit creates, checked against the schemas of current Kubernetes releases.

The clusters here run Kubernetes 1.20; users run 1.30 and later. kubernetes-validate holds the OpenAPI
schemas of each release, and validates strictly: a field the release does not know, a type it does not
take, an API version it no longer serves (policy/v1beta1 PodDisruptionBudgets left in 1.25) fails.
What this proves is the shape of the objects, not how a current cluster runs them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import kubernetes_validate
import pytest
from systems import redis_objects, shop_objects
from workloads import client_pod, pdb, web_objects

from chaoskit.agent.records import crd
from chaoskit.cluster import addons, injector
from chaoskit.cluster.base import Cluster
from chaoskit.faults.objects import Owner
from chaoskit.namespaces import owned_namespace
from chaoskit.prometheus.deploy import prometheus_objects

RELEASES = ("1.30.0", "1.37.0")
"""The oldest release users run, and the newest one the library knows."""


def objects() -> Iterator[tuple[str, dict[str, Any]]]:
    """(what, object) for every object chaoskit itself creates, and the systems its tests deploy."""
    for obj in injector.manifests("registry.example/chaoskit/injector:r3"):
        yield "the injector agent", obj
    yield "the runner's Role", injector.runner_role()
    yield "the fault record CRD", crd()
    for obj in addons.manifests("registry.example/chaoskit/agent:r3"):
        yield "the cluster add-ons", obj
    yield "the local volumes' StorageClass", addons.storage_class()
    for obj in prometheus_objects("chaoskit-monitoring", "chaoskit/prometheus:r1", 30089):
        yield "Prometheus", obj
    yield "a test namespace", owned_namespace("ck-test-a-1", "chaoskit-owner-0123456789")
    yield "the owner Lease", Owner(Cluster("unit", "kind", None, None, "airgap")).lease()
    for obj in web_objects("ck-web", "chaoskit/web:1", 30080, min_available=2):
        yield "the web tier", obj
    yield "the client pod", client_pod("ck-web", "chaoskit/web:1")
    yield "a PodDisruptionBudget", pdb("ck-web", "web", {"app": "web"}, minAvailable=2)
    for obj in shop_objects("ck-shop", "chaoskit/shop:1", 30081):
        yield "the shop", obj
    for obj in redis_objects("ck-shop", "chaoskit/redis:1"):
        yield "Redis", obj


@pytest.mark.parametrize("release", RELEASES)
def test_every_object_chaoskit_creates_is_valid_in_current_kubernetes(release: str) -> None:
    checked = []
    refused = []
    for what, obj in objects():
        name = f"{what}: {obj['kind']} {obj['metadata'].get('name') or obj['metadata'].get('generateName')}"
        try:
            kubernetes_validate.validate(obj, release, strict=True)
        except kubernetes_validate.ValidationError as exc:
            refused.append(f"{name}: {exc.message} at {'.'.join(str(p) for p in exc.path)}")
        checked.append(name)
    assert refused == [], "\n".join(refused)
    assert len(checked) >= 25  # every kind of object above was checked, not skipped
    print(f"Kubernetes {release}: {len(checked)} objects valid")


def test_an_object_a_release_no_longer_serves_is_refused() -> None:
    """The check can fail: a policy/v1beta1 budget, which 1.20 needs and 1.25 removed; and a field no release
    knows."""
    old = pdb("ck-web", "web", {"app": "web"}, api_version="policy/v1beta1", minAvailable=2)
    misspelt = {**pdb("ck-web", "web", {"app": "web"}, minAvailable=2), "spec": {"minAvailble": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(misspelt, "1.30.0", strict=True)
    with pytest.raises((kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError)):
        kubernetes_validate.validate(old, "1.30.0", strict=True)
