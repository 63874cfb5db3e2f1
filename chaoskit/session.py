"""One way in: open a cluster for a run, and hold what every front end needs while it runs.

Opening a cluster is the same steps whoever asks (the pytest plugin, ``chaoskit run``, ``inject``,
``status``, ``abort``, ``cleanup`` and ``agent``):

1. bring it up (``chaoskit.cluster`` provider ``up``: create a kind cluster, or check an existing one)
   or only attach to it;
2. choose how its nodes are reached (Docker on kind, the injector agent anywhere), installing the agent
   where the run may;
3. sweep what an earlier, killed run left: its faults (undone and proven) and its test namespaces.

:func:`open_session` does them in that order and returns a :class:`Session`. The node shell it chose
travels with the session's cluster handle (``session.cluster.node_shell``), so every fault, undo and
sweep of the session reaches nodes the same way, and two sessions in one process keep their own.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from types import TracebackType

from chaoskit.adapters.kube import Kube
from chaoskit.adapters.nodes import NodeShell
from chaoskit.chaos import Chaos
from chaoskit.cluster import Cluster, ClusterSpec, get_provider
from chaoskit.errors import FaultUndoFailed
from chaoskit.faults.base import FaultHooks
from chaoskit.faults.safety import Safety
from chaoskit.faults.scope import Scope
from chaoskit.faults.sweeper import SweepResult, sweep
from chaoskit.namespaces import sweep_namespaces
from chaoskit.state import locks


@dataclass
class Swept:
    """What opening the session (or :meth:`Session.sweep`) cleaned up after earlier runs."""

    faults: SweepResult
    namespaces: list[str]
    """Test namespaces of dead owners, deleted."""


@dataclass
class Session:
    """An open cluster: its handle (with the way to its nodes), an API client, and the safety rules.

    Close it (or use it as a context manager) to close its API client; the cluster itself is left as it is.
    """

    cluster: Cluster
    """The cluster; ``cluster.node_shell`` is how this session reaches its nodes."""
    kube: Kube
    """The session's API client."""
    safety: Safety = field(default_factory=Safety)
    """The rules every fault of the session is held to."""
    swept: Swept | None = None
    """What the opening sweep cleaned up (None when the session was opened without one)."""

    @property
    def shell(self) -> NodeShell:
        """How this session reaches nodes."""
        return self.cluster.node_shell

    def chaos(self, hooks: FaultHooks | None = None, kind: type[Chaos] = Chaos) -> Chaos:
        """A fresh fault handle on this session (``kind``: :class:`Chaos` or a subclass, such as the plugin's)."""
        return kind(self.cluster, self.kube, self.safety, hooks)

    def sweep(self, scope: Scope | None = None) -> Swept:
        """Undo (and prove undone) every fault a dead run left, then delete dead runs' test namespaces (the faults
        first: their undo is proven while the pods they hit still stand); within ``scope`` (``-n``/``-l`` of
        ``chaoskit cleanup``) when one is given."""
        resolved = scope.resolve(self.kube) if scope is not None and not scope.whole else None
        faults = sweep(self.cluster, self.kube, scope=resolved)
        return Swept(faults, sweep_namespaces(self.kube, resolved.covers_namespace if resolved else None))

    def close(self) -> None:
        self.kube.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def open_session(
    spec: ClusterSpec,
    *,
    bring_up: bool = True,
    reach_nodes: bool = True,
    injector: str | None = None,
    agent_image: str | None = None,
    install_agent: bool = True,
    sweep_first: bool = True,
    safety: Safety | None = None,
    loud: Callable[[], AbstractContextManager[object]] = nullcontext,
) -> Session:
    """Open ``spec``'s cluster for a run (see the module's docstring for the steps).

    ``bring_up``: create or repair it as its provider may (False: attach to it as it is). ``reach_nodes``:
    choose the node shell by ``injector`` (``docker`` or ``agent``; the cluster's default when None; see
    :func:`chaoskit.cluster.injector.select` for ``agent_image`` and ``install_agent``); without it the
    session runs no node-level step. ``sweep_first``: sweep before returning, and raise FaultUndoFailed
    naming what an earlier run left that could not be undone. ``loud``: a context under which progress
    lines reach the user (the plugin lifts pytest's capture with it).
    """
    from chaoskit.cluster import injector as injectors

    provider = get_provider(spec.provider, provision=False, recreate=False)
    with loud():
        if bring_up:
            # pytest -n: the workers start together, and one brings the cluster up while the others wait for it.
            with locks.machine_lock(spec.name, "up"):
                cluster = provider.up(spec)
        else:
            cluster = provider.attach(spec)
    kube = cluster.kube()
    try:
        if reach_nodes:
            with loud():
                shell = injectors.select(
                    cluster,
                    kube,
                    injector,
                    agent_image,
                    install_agent=install_agent,
                    agent_option=(safety or Safety()).option("injector", "agent"),
                )
            cluster = replace(cluster, shell=shell)
        session = Session(cluster, kube, safety or Safety())
        if sweep_first:
            session.swept = session.sweep()
            if session.swept.faults.failed:
                raise FaultUndoFailed(
                    f"faults left by an earlier run could not be undone: {'; '.join(session.swept.faults.failed)}"
                )
    except BaseException:
        kube.close()
        raise
    return session
