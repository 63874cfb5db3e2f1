"""A whole cluster's life on this machine: create, heal when stopped, delete without a trace.

Uses a second, single-node cluster so the session's cluster is untouched.
"""

from __future__ import annotations

import pytest

from chaoskit.adapters import docker, kind
from chaoskit.cluster import ClusterSpec, get_provider
from chaoskit.cluster.kind import kubeconfig_path, network_name

pytestmark = pytest.mark.destructive

NAME = "ck-lifecycle"


def test_up_reuses_and_heals_a_stopped_cluster_and_down_leaves_nothing(cluster) -> None:
    if not cluster.is_kind:
        pytest.skip("cluster lifecycle is tested with the kind provider")
    spec = ClusterSpec(name=NAME, workers=0, node_ports=())
    provider = get_provider("kind", provision=False)
    try:
        first = provider.up(spec)
        assert first.created
        nodes = docker.containers(f"{docker.KIND_CLUSTER_LABEL}={NAME}")
        assert [n.name for n in nodes] == [f"{NAME}-control-plane"]
        volumes = [v for n in nodes for v in n.volumes]
        assert network_name(NAME) in nodes[0].networks

        # A stale cluster: its node container stopped, as after a machine restart.
        docker.stop(nodes[0].name)
        again = provider.up(spec)
        assert not again.created, "a stopped cluster should be started again, not recreated"
        assert docker.inspect(nodes[0].name).state == "running"
        status = provider.status(spec)
        assert status.problem is None and [n.ready for n in status.nodes] == [True]
    finally:
        provider.down(spec)

    assert NAME not in kind.clusters()
    assert docker.containers(f"{docker.KIND_CLUSTER_LABEL}={NAME}") == []
    assert not any(docker.volume_exists(v) for v in volumes), volumes
    assert not docker.network_exists(network_name(NAME))
    assert not kubeconfig_path(NAME).exists()
