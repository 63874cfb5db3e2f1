"""Cluster providers behind one interface: ``kind`` and ``existing``."""

from __future__ import annotations

from chaoskit.cluster.base import Cluster, ClusterProvider, ClusterSpec, ClusterStatus
from chaoskit.errors import UsageError

PROVIDERS = ("kind", "existing")

__all__ = [
    "PROVIDERS",
    "Cluster",
    "ClusterProvider",
    "ClusterSpec",
    "ClusterStatus",
    "choose_provider",
    "get_provider",
]


def choose_provider(
    provider: str | None, context: str | None, kubeconfig: object | None, flags: tuple[str, str, str]
) -> str:
    """The one rule every front end follows, as kubectl users expect: a ``context`` or ``kubeconfig`` names an
    existing cluster, so without a ``provider`` it is ``existing``; without any of them it is ``kind``. Asking
    for ``kind`` with a context is a UsageError naming ``flags`` (the front end's provider, context and
    kubeconfig options): kind clusters are chosen by name."""
    if provider is None:
        return "existing" if context or kubeconfig else "kind"
    if provider not in PROVIDERS:
        raise UsageError(f"{flags[0]} {provider!r} is unknown: choose one of {', '.join(PROVIDERS)}")
    if provider == "kind" and (context or kubeconfig):
        given = flags[1] if context else flags[2]
        raise UsageError(
            f"{given} names an existing cluster, and {flags[0]} kind asks for a kind cluster (chosen by its name): "
            f"drop {flags[0]} kind to use the cluster {given} names, or drop {given}"
        )
    return provider


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
