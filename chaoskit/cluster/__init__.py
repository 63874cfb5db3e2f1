"""Cluster providers behind one interface: ``kind`` and ``existing``."""

from __future__ import annotations

from chaoskit.cluster.base import Cluster, ClusterProvider, ClusterSpec, ClusterStatus
from chaoskit.errors import UsageError

PROVIDERS = ("kind", "existing")

__all__ = ["PROVIDERS", "Cluster", "ClusterProvider", "ClusterSpec", "ClusterStatus", "get_provider"]


def get_provider(name: str, provision: bool = True) -> ClusterProvider:
    """The provider called ``name``; ``provision`` lets kind install and start what it needs."""
    if name == "kind":
        from chaoskit.cluster.kind import KindProvider

        return KindProvider(provision=provision)
    if name == "existing":
        from chaoskit.cluster.existing import ExistingProvider

        return ExistingProvider()
    raise UsageError(f"unknown cluster provider {name!r}: choose one of {', '.join(PROVIDERS)}")
