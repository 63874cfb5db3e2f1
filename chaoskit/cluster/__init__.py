"""Cluster providers behind one interface: ``kind`` and ``existing``."""

from __future__ import annotations

from chaoskit.cluster.base import Cluster, ClusterProvider, ClusterSpec, ClusterStatus
from chaoskit.errors import UsageError

PROVIDERS = ("kind", "existing")

__all__ = ["PROVIDERS", "Cluster", "ClusterProvider", "ClusterSpec", "ClusterStatus", "get_provider"]


def get_provider(name: str, provision: bool = True, recreate: bool = True) -> ClusterProvider:
    """The provider called ``name``.

    ``provision`` lets kind install and start what it needs; ``recreate`` lets its ``up``
    delete a running cluster that differs from the spec or is unhealthy and create it anew
    (``chaoskit cluster up``). With ``recreate=False`` (the pytest plugin) ``up`` never
    deletes a cluster it did not create. ``existing`` never creates, deletes or recreates
    a cluster, so both are moot for it.
    """
    if name == "kind":
        from chaoskit.cluster.kind import KindProvider

        return KindProvider(provision=provision, recreate=recreate)
    if name == "existing":
        from chaoskit.cluster.existing import ExistingProvider

        return ExistingProvider()
    raise UsageError(f"unknown cluster provider {name!r}: choose one of {', '.join(PROVIDERS)}")
