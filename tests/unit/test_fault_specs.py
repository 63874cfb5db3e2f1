"""Fault specs and safety rules refuse bad input before anything is injected."""

import pytest

from chaoskit.cluster.base import Cluster
from chaoskit.errors import SafetyError, SpecError
from chaoskit.faults import NodeFailureSpec, PodKillSpec, Safety


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"selector": ""}, "an empty selector would match every pod"),
        ({"selector": "  "}, "an empty selector would match every pod"),
        ({"count": -1}, "count must be at least 1, not -1"),
        ({"count": 0}, "count must be at least 1, not 0"),
        ({"percent": 150}, r"percent must be in \(0, 100\], not 150"),
        ({"percent": 0}, r"percent must be in \(0, 100\], not 0"),
        ({"count": 1, "percent": 50}, "either count or percent, not both"),
        ({"grace_seconds": -5}, "grace_seconds must be 0 or more"),
        ({"pick": "newest"}, "pick must be one of random, oldest"),
    ],
)
def test_bad_pod_kill_specs(kwargs, message):
    with pytest.raises(SpecError, match=message):
        PodKillSpec(**{"namespace": "shop", "selector": "app=web", **kwargs})


def test_pod_kill_counts():
    assert PodKillSpec("ns", "app=web").how_many(3) == 1
    assert PodKillSpec("ns", "app=web", count=2).how_many(3) == 2
    assert PodKillSpec("ns", "app=web", percent=50).how_many(3) == 2  # rounded up
    assert PodKillSpec("ns", "app=web", percent=1).how_many(3) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"node": ""}, "needs a node name"),
        ({"mode": "reboot"}, "mode must be one of stop, pause"),
        ({"timeout": 0}, "timeout must be positive"),
    ],
)
def test_bad_node_failure_specs(kwargs, message):
    with pytest.raises(SpecError, match=message):
        NodeFailureSpec(**{"node": "w1", **kwargs})


def cluster(provider="kind", context="kind-x"):
    return Cluster(name="x", provider=provider, kubeconfig=None, context=context, flavor=provider)


def test_safety_refuses_foreign_clusters_unless_allowed():
    with pytest.raises(SafetyError, match="--chaos-allow-context=prod"):
        Safety().check_cluster(cluster("existing", "prod"))
    Safety(allowed_contexts=("prod",)).check_cluster(cluster("existing", "prod"))
    Safety().check_cluster(cluster())


def test_safety_protects_system_namespaces():
    with pytest.raises(SafetyError, match="'kube-system' is protected"):
        Safety().check_namespace("kube-system")
    Safety(allowed_namespaces=("kube-system",)).check_namespace("kube-system")
    Safety().check_namespace("shop")


def test_safety_caps_the_blast_radius():
    with pytest.raises(SafetyError, match=r"2 of 3 pods .* over the blast-radius cap of 50%"):
        Safety().check_share(2, 3, "pods")
    Safety().check_share(1, 2, "pods")
    Safety(max_share=1.0).check_share(3, 3, "pods")
    with pytest.raises(SafetyError, match="max_share must be in"):
        Safety(max_share=0)
