"""Fault specs and safety rules refuse bad input before anything is injected."""

import re

import pytest

from chaoskit.cluster.base import Cluster
from chaoskit.errors import SafetyError, SpecError
from chaoskit.faults import BandwidthSpec, LatencySpec, NodeFailureSpec, PacketLossSpec, PodKillSpec, Safety
from chaoskit.faults.netrules import qdisc_handle


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
        ({"rounds": 0}, "rounds must be in 1-1000, not 0"),
        ({"names": "redis-0"}, "names must be a list of pod names, not the string 'redis-0'"),
        ({"names": ["redis-0"], "count": 1}, "give names, or count/percent, not both"),
        ({"rounds": 3}, r"a repeated kill needs interval_seconds in \(0, 3600\], not 0"),
        ({"rounds": 3, "interval_seconds": -1}, "a repeated kill needs interval_seconds"),
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
    assert PodKillSpec("ns", "app=redis", names=["redis-0"]).how_many(3) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"node": ""}, "needs a node name"),
        ({"mode": "reboot"}, "mode must be one of stop, crash, pause"),
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
        Safety(front_end="pytest").check_cluster(cluster("existing", "prod"))
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


@pytest.mark.parametrize(
    ("spec", "kwargs", "message"),
    [
        (BandwidthSpec, {"rate_kbit": 10}, "rate_kbit must be at least 64, not 10"),
        (BandwidthSpec, {"rate_kbit": 1000, "burst_bytes": 100}, r"burst_bytes must be at least one packet \(1500\)"),
        (BandwidthSpec, {"rate_kbit": 1000, "queue_ms": 0}, "queue_ms must be positive"),
        (BandwidthSpec, {"selector": "", "rate_kbit": 1000}, "an empty selector would match every pod"),
        (LatencySpec, {"delay_ms": 0}, "delay_ms must be positive"),
        (LatencySpec, {"delay_ms": 10, "jitter_ms": 20}, "jitter_ms must be in 0-10, not 20"),
        (PacketLossSpec, {"percent": 0}, r"percent must be in \(0, 100\], not 0"),
        (PacketLossSpec, {"percent": 50, "port": 70000}, "port must be in 1-65535, not 70000"),
    ],
)
def test_bad_network_fault_specs(spec, kwargs, message):
    with pytest.raises(SpecError, match=message):
        spec(**{"namespace": "shop", "selector": "app=web", **kwargs})


def test_bandwidth_burst_defaults_to_a_fiftieth_of_a_second():
    assert BandwidthSpec("ns", "app=web", rate_kbit=64).burst == 4096  # the floor
    assert BandwidthSpec("ns", "app=web", rate_kbit=80_000).burst == 200_000  # 10 MB/s / 50
    assert BandwidthSpec("ns", "app=web", rate_kbit=80_000, burst_bytes=3000).burst == 3000


def test_qdisc_handles_are_stable_and_clear_of_the_kernels():
    handles = {qdisc_handle(f"bandwidth-{i:08x}") for i in range(2000)}
    assert qdisc_handle("bandwidth-1") == qdisc_handle("bandwidth-1")
    majors = {int(h.rstrip(":"), 16) for h in handles}
    assert all(h.endswith(":") for h in handles) and len(handles) > 1900
    assert min(majors) >= 0x100 and max(majors) < 0x8000  # the kernel numbers its own from 8001:


@pytest.mark.parametrize(
    ("front_end", "said"),
    [
        ("pytest", "allowed explicitly with --chaos-allow-namespace=kube-system"),
        ("cli", "allowed explicitly with --allow-namespace kube-system"),
        ("python", "allowed explicitly with Safety(allowed_namespaces=('kube-system',))"),
    ],
)
def test_a_refusal_names_the_option_of_the_front_end_in_use(front_end, said):
    with pytest.raises(SafetyError, match=re.escape(said)):
        Safety(front_end=front_end).check_namespace("kube-system")
