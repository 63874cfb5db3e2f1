"""Which faults and test namespaces a command acts on: ``-n/--namespace`` and ``-l/--selector`` of ``chaoskit
status``, ``cleanup`` and ``abort``.

A fault is in scope when one of the pods it was injected on is: in the namespace ``-n`` names, and matching the
label selector ``-l`` gives (read from the cluster when the command runs, with the API server's own selector
syntax). A fault's pods are those its ledger entry or its record in the cluster lists (``namespace/name``); an
entry written before chaoskit recorded them falls back to the namespaces its undo data names, and then ``-l``
cannot match it. Node-wide faults (node failure, drain, node partition, zone failure) act on nodes, not on pods:
no ``-n`` or ``-l`` selects them, and the command says how many it left out.

A test namespace is in scope when ``-n`` names it and no ``-l`` is given: ``-l`` narrows to pods, and deleting
their whole namespace would reach past them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chaoskit.errors import UsageError

if TYPE_CHECKING:
    from chaoskit.adapters.kube import Kube


@dataclass(frozen=True)
class Scope:
    """What ``-n`` and ``-l`` asked for; the whole cluster when neither did."""

    namespace: str | None = None
    selector: str | None = None

    def __post_init__(self) -> None:
        if self.namespace is not None and not _dns_label(self.namespace):
            raise UsageError(
                f"-n/--namespace {self.namespace!r} is not a namespace name (lower-case letters, "
                "digits and '-', at most 63)"
            )
        if self.selector is not None and not self.selector.strip():
            raise UsageError("-l/--selector is empty: give a label selector such as app=web")

    @property
    def whole(self) -> bool:
        """Whether this is the whole cluster (neither ``-n`` nor ``-l``)."""
        return self.namespace is None and self.selector is None

    def describe(self) -> str:
        """The scope in words, for a command's first line (empty for the whole cluster)."""
        parts = [f"namespace {self.namespace}"] if self.namespace else []
        parts += [f"pods matching {self.selector}"] if self.selector else []
        return " and ".join(parts)

    def within(self) -> str:
        """`` within <the scope>`` for a command's first line (empty for the whole cluster)."""
        return f" within {self.describe()}" if not self.whole else ""

    def resolve(self, kube: Kube) -> Resolved:
        """The scope against the cluster now: the pods ``-l`` selects, read once."""
        if self.selector is None:
            return Resolved(self, None)
        pods = kube.select_pods(self.namespace, self.selector)
        return Resolved(self, frozenset(f"{p.metadata.namespace}/{p.metadata.name}" for p in pods))


@dataclass(frozen=True)
class Resolved:
    scope: Scope
    selected: frozenset[str] | None
    """``namespace/name`` of the pods ``-l`` selects now (None without ``-l``)."""

    def covers(self, pods: Iterable[str], namespaces: Iterable[str] = ()) -> bool:
        """Whether a fault on ``pods`` (``namespace/name``; ``namespaces`` where an old entry lists no pods) is
        in scope."""
        if self.scope.whole:
            return True
        pods = tuple(pods)
        if self.selected is not None:
            return any(pod in self.selected for pod in pods)
        spaces = {pod.split("/", 1)[0] for pod in pods} or set(namespaces)
        return self.scope.namespace in spaces

    def holds(self, fault: Any) -> bool:
        """Whether a ledger entry or a fault the cluster records (anything with ``pods`` and ``undo``) is in
        scope: :meth:`covers` on its pods, or on the namespaces its undo data names."""
        from chaoskit.faults.objects import namespaces_of  # here: the CLI imports this module at start-up

        return self.covers(fault.pods, namespaces_of(fault.undo))

    def covers_namespace(self, name: str) -> bool:
        """Whether test namespace ``name`` is in scope."""
        return self.scope.whole or (self.scope.namespace == name and self.scope.selector is None)


def _dns_label(name: str) -> bool:
    return (
        0 < len(name) <= 63
        and name[0].isalnum()
        and name[-1].isalnum()
        and all(c.isdigit() or ("a" <= c <= "z") or c == "-" for c in name)
    )
