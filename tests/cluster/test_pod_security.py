"""Pod Security admission on the test namespaces and on the agent's, enforced by the API server (1.23+).

Kubernetes 1.20 has no Pod Security admission: there the labels are set and nothing enforces them, so the tests
that need enforcement skip with the server's version.
"""

from __future__ import annotations

import time

import pytest

from chaoskit.adapters.kube import POD_SECURITY_ENFORCE, Kube
from chaoskit.adapters.nodes import INJECTOR_NAMESPACE
from chaoskit.cluster import injector
from chaoskit.errors import ClusterError, UsageError


def enforcing(kube: Kube) -> None:
    minor = int(kube.server_version().removeprefix("v").split(".")[1])
    if minor < 23:
        pytest.skip(f"Kubernetes {kube.server_version()} has no Pod Security admission (1.23+)")


def privileged_deployment(namespace: str, image: str) -> dict:
    labels = {"app": "root-helper"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "root-helper", "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "hostPID": True,
                    "containers": [
                        {"name": "helper", "image": image, "securityContext": {"privileged": True}},
                    ],
                },
            },
        },
    }


def test_a_test_namespace_enforces_baseline_and_a_privileged_helper_is_refused_at_once_with_the_rule(
    kube: Kube, namespace: str, web_image: str
) -> None:
    assert kube.namespace_labels(namespace)[POD_SECURITY_ENFORCE] == "baseline"
    enforcing(kube)
    kube.apply([privileged_deployment(namespace, web_image)])
    started = time.monotonic()
    with pytest.raises(ClusterError) as refused:
        kube.wait_whole(namespace, "root-helper", timeout=120)
    waited = time.monotonic() - started
    message = str(refused.value)
    assert f"namespace {namespace} enforces Pod Security 'baseline'" in message, message
    assert "privileged" in message and "host namespaces" in message, message  # the server's rules, named
    assert "--chaos-pod-security" in message, message
    assert waited < 60, f"the refusal took {waited:.0f} s: the wait should end on the controller's event"
    assert kube.pods(namespace, "app=root-helper") == []


@pytest.mark.chaos_pod_security("restricted")
def test_a_marker_makes_the_namespace_restricted_and_a_pod_it_refuses_fails_to_apply_in_the_servers_words(
    kube: Kube, namespace: str, web_image: str
) -> None:
    assert kube.namespace_labels(namespace)[POD_SECURITY_ENFORCE] == "restricted"
    enforcing(kube)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "as-root", "namespace": namespace},
        "spec": {"containers": [{"name": "c", "image": web_image}]},
    }
    with pytest.raises(ClusterError) as refused:
        kube.apply([pod])
    message = str(refused.value)
    assert 'violates PodSecurity "restricted:latest"' in message and "runAsNonRoot" in message, message
    assert "HTTP response headers" not in message, message  # the server's message, not the client's dump


@pytest.mark.chaos_pod_security("privileged")
def test_a_privileged_namespace_runs_what_baseline_refuses(kube: Kube, namespace: str, web_image: str) -> None:
    assert kube.namespace_labels(namespace)[POD_SECURITY_ENFORCE] == "privileged"
    kube.apply([privileged_deployment(namespace, web_image)])
    kube.wait_whole(namespace, "root-helper", timeout=120)


def test_the_agent_is_not_installed_into_a_namespace_its_owner_made_stricter(cluster, kube: Kube) -> None:
    """An admin who labelled chaoskit-system ``restricted`` keeps their policy: chaoskit refuses, changing
    nothing, and says how to allow it."""
    before = kube.namespace_labels(INJECTOR_NAMESPACE)
    if before is None:
        kube.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": INJECTOR_NAMESPACE}}])
    image = injector.installed_image(kube)
    try:
        kube.core.patch_namespace(INJECTOR_NAMESPACE, {"metadata": {"labels": {POD_SECURITY_ENFORCE: "restricted"}}})
        with pytest.raises(UsageError) as refused:
            injector.install(cluster, kube, image or "chaoskit/injector:never-applied")
        message = str(refused.value)
        assert f"namespace {INJECTOR_NAMESPACE} enforces Pod Security 'restricted'" in message, message
        assert f"kubectl label namespace {INJECTOR_NAMESPACE} {POD_SECURITY_ENFORCE}=privileged" in message
        assert kube.namespace_labels(INJECTOR_NAMESPACE)[POD_SECURITY_ENFORCE] == "restricted"
        assert injector.installed_image(kube) == image  # nothing applied
    finally:
        if before is None:
            kube.delete("Namespace", INJECTOR_NAMESPACE)
        else:
            restored = before.get(POD_SECURITY_ENFORCE)
            kube.core.patch_namespace(INJECTOR_NAMESPACE, {"metadata": {"labels": {POD_SECURITY_ENFORCE: restored}}})
