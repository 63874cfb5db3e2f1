"""The command line and the ``existing`` provider against the real cluster."""

from __future__ import annotations

import subprocess
import sys

import pytest

from chaoskit.cluster import Cluster, ClusterSpec, get_provider


def test_status_lists_every_node_ready(cluster: Cluster) -> None:
    if not cluster.is_kind:
        pytest.skip("node containers exist only in kind clusters")
    result = subprocess.run(
        [sys.executable, "-m", "chaoskit.cli", "cluster", "status", "--name", cluster.name],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"cluster {cluster.name}: Kubernetes v")
    nodes = [line.split() for line in lines if line.startswith(f"  {cluster.name}-")]
    assert len(nodes) == 3
    assert all(words[2] == "Ready" for words in nodes), lines
    assert all(words[3:] == ["container", "running"] for words in nodes), lines


def test_existing_provider_uses_any_context(cluster: Cluster) -> None:
    spec = ClusterSpec(provider="existing", kubeconfig=cluster.kubeconfig, context=cluster.context)
    provider = get_provider("existing")
    found = provider.up(spec)
    assert (found.provider, found.flavor, found.context, found.created) == (
        "existing",
        "existing",
        cluster.context,
        False,
    )
    status = provider.status(spec)
    assert status.problem is None and len(status.nodes) == 3 and all(n.ready for n in status.nodes)
    with found.kube() as kube:
        assert kube.server_version().startswith("v1.")
