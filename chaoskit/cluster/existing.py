"""The ``existing`` cluster provider: any cluster a kubeconfig context reaches.

chaoskit neither creates nor deletes such a cluster. Its NodePorts reachable on
127.0.0.1 of this machine (through a tunnel, or a kind cluster's port mappings)
are the spec's ``reachable_node_ports``, which the caller states (none by default).
"""

from __future__ import annotations

from typing import Any

from chaoskit.adapters.kube import Kube, current_context
from chaoskit.adapters.shell import say
from chaoskit.adapters.status import node_ready
from chaoskit.cluster.base import Cluster, ClusterSpec, ClusterStatus, NodeStatus
from chaoskit.errors import ClusterError, UsageError


class ExistingProvider:
    """Uses a cluster that someone else runs."""

    def up(self, spec: ClusterSpec) -> Cluster:
        with Kube(spec.kubeconfig, spec.context, spec.api_rate) as kube:
            version = kube.server_version()
        context = spec.context or _current_context(spec)
        say(f"using existing cluster of context {context!r} (Kubernetes {version})")
        return Cluster(
            name=context,
            provider="existing",
            kubeconfig=spec.kubeconfig,
            context=context,
            flavor="existing",
            node_ports=spec.reachable_node_ports,
            api_rate=spec.api_rate,
        )

    def attach(self, spec: ClusterSpec) -> Cluster:
        return self.up(spec)

    def down(self, spec: ClusterSpec) -> None:
        raise UsageError(
            "the 'existing' provider does not delete clusters it did not create; delete it with the tool that made it"
        )

    def status(self, spec: ClusterSpec) -> ClusterStatus:
        context = spec.context or _current_context(spec)
        kube = Kube(spec.kubeconfig, spec.context)  # a bad context is the user's to fix: let it raise
        try:
            with kube:
                version = kube.server_version(timeout=5)
                items: list[Any] = kube.core.list_node(_request_timeout=10).items
                nodes = tuple(
                    NodeStatus(name=n.metadata.name, role=_role(n), ready=node_ready(n), container_state=None)
                    for n in items
                )
        except ClusterError as exc:
            return ClusterStatus(name=context, exists=True, context=context, problem=str(exc))
        return ClusterStatus(
            name=context, exists=True, nodes=nodes, server_version=version, kubeconfig=spec.kubeconfig, context=context
        )


def _current_context(spec: ClusterSpec) -> str:
    return current_context(spec.kubeconfig)


def _role(node: object) -> str:
    labels = getattr(getattr(node, "metadata", None), "labels", None) or {}
    roles = [k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/")]
    return ",".join(sorted(roles)) or "worker"
