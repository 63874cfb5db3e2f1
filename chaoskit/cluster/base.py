"""What every cluster provider offers, and the specs that describe a cluster."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from chaoskit.adapters.kube import Kube
from chaoskit.adapters.nodes import DockerShell, NodeShell
from chaoskit.adapters.rate import ApiRate
from chaoskit.errors import ClusterError, UsageError
from chaoskit.state import leases, locks

DEFAULT_NODE_PORTS = tuple(range(30080, 30090))
NODE_PORT_RANGE = (30000, 32767)


def parse_node_ports(text: str, option: str = "--node-ports") -> tuple[int, ...]:
    """``FIRST-LAST`` (or one port) as the ports it spans; a bad one is a UsageError naming ``option``."""
    try:
        first, _, last = text.partition("-")
        low, high = int(first), int(last or first)
    except ValueError:
        raise UsageError(f"{option} {text!r} is not FIRST-LAST, e.g. 30080-30089") from None
    if high < low:
        raise UsageError(f"{option} {text!r}: the last port is below the first")
    return tuple(range(low, high + 1))


NAME_ENV = "CHAOSKIT_CLUSTER"
"""The environment variable naming the kind cluster when no option does (pytest, the CLI and game days alike,
so every chaoskit a test or a script starts reaches the same cluster)."""
KUBERNETES_ENV = "CHAOSKIT_KUBERNETES"
"""The environment variable naming the Kubernetes line of chaoskit's node image when no option does."""


def default_name() -> str:
    """The kind cluster's name when no option gives one: ``$CHAOSKIT_CLUSTER``, else ``chaoskit``."""
    return os.environ.get(NAME_ENV) or "chaoskit"


def default_kubernetes() -> str | None:
    """The Kubernetes line when no option gives one: ``$CHAOSKIT_KUBERNETES``, else None (chaoskit's default)."""
    return os.environ.get(KUBERNETES_ENV) or None


@dataclass(frozen=True)
class ClusterSpec:
    """What the user asked for."""

    provider: str = "kind"
    """Which provider makes the cluster: ``kind`` or ``existing``."""
    name: str = field(default_factory=default_name)
    """The kind cluster name (nodes are ``<name>-control-plane``, ``<name>-worker``...)."""
    workers: int = 2
    """Worker nodes beside the one control plane (kind only)."""
    node_image: str | None = None
    """Force a node image (kind only); by default the stock image where it can be pulled, else the air-gapped build."""
    node_ports: tuple[int, ...] = DEFAULT_NODE_PORTS
    """NodePorts published on 127.0.0.1 of the host (kind only)."""
    reachable_node_ports: tuple[int, ...] = ()
    """NodePorts of the cluster that the host reaches on 127.0.0.1 (existing only: through a tunnel, or a kind
    cluster's port mappings); none unless stated."""
    kubeconfig: Path | None = None
    """The kubeconfig to use (existing only; kind writes its own)."""
    context: str | None = None
    """The kubeconfig context to use (existing only)."""
    kubernetes: str | None = field(default_factory=default_kubernetes)
    """The Kubernetes line of chaoskit's own node image (``1.20``, ``1.37``; kind only; None: the default)."""
    api_rate: ApiRate | None = None
    """How fast chaoskit's API clients may call the cluster (None: :data:`~chaoskit.adapters.kube.DEFAULT_RATE`)."""

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise UsageError(f"workers must be 0 or more, not {self.workers}")
        if not self.name or not self.name.replace("-", "").isalnum() or self.name != self.name.lower():
            source = f" (from ${NAME_ENV})" if self.name == os.environ.get(NAME_ENV) else ""
            raise UsageError(f"cluster name {self.name!r}{source} must be lower-case letters, digits and '-'")
        for port in (*self.node_ports, *self.reachable_node_ports):
            if not NODE_PORT_RANGE[0] <= port <= NODE_PORT_RANGE[1]:
                raise UsageError(f"node port {port} is outside the NodePort range 30000-32767")


@dataclass(frozen=True)
class Cluster:
    """A running cluster that tests can use."""

    name: str
    """The cluster's name (for kind, the prefix of its node containers)."""
    provider: str
    """The provider that made or found it."""
    kubeconfig: Path | None
    """The kubeconfig that reaches it (None: the default one)."""
    context: str | None
    """The context in that kubeconfig."""
    flavor: str
    """``airgap`` (chaoskit's node image and agents), ``stock`` (kind's own) or ``existing``."""
    node_ports: tuple[int, ...] = ()
    """NodePorts reachable on 127.0.0.1 of the host, as the running cluster publishes them (for kind,
    read from its control-plane container); empty for a cluster that publishes none."""
    created: bool = False
    """Whether this call created the cluster (rather than reusing one)."""
    api_rate: ApiRate | None = field(default=None, compare=False, repr=False)
    """How fast its API clients may call it (the session's ``ClusterSpec.api_rate``; None: the default)."""
    shell: NodeShell | None = field(default=None, compare=False, repr=False)
    """How this session reaches the cluster's nodes, chosen when it was opened
    (:func:`chaoskit.session.open_session`); None until then (see :attr:`node_shell`)."""

    @property
    def node_shell(self) -> NodeShell:
        """How faults and undos reach this cluster's nodes: the shell the session chose, or Docker on a handle
        no session has opened (Docker reaches kind nodes only; a node fault refuses it on any other cluster)."""
        return self.shell if self.shell is not None else DockerShell()

    def kube(self) -> Kube:
        """API clients for this cluster."""
        return Kube(self.kubeconfig, self.context, self.api_rate)

    @property
    def is_kind(self) -> bool:
        return self.provider == "kind"

    def free_node_port(self, kube: Kube | None = None, *, highest: bool = False) -> int:
        """A NodePort this cluster publishes on 127.0.0.1 that no Service uses yet: the lowest (or the
        ``highest``), for a Service of type NodePort the host must reach (``http://127.0.0.1:PORT``).

        Free when asked: a Service created later by someone else may take it.
        Raises UsageError for a cluster that publishes none, ClusterError when
        every published one is taken.
        """
        if not self.node_ports:
            raise UsageError(
                f"cluster {self.name!r} publishes no NodePort on 127.0.0.1, so the host cannot reach a Service "
                "of it; a kind cluster made by 'chaoskit cluster up' publishes 30080-30089"
            )
        if kube is None:
            with self.kube() as own:
                used = own.node_ports_in_use()
        else:
            used = kube.node_ports_in_use()
        free = [p for p in sorted(self.node_ports, reverse=highest) if p not in used]
        # Other runs on this machine (pytest -n workers) choose at the same time: each is handed its own.
        chosen = locks.reserve_port(self.name, free)
        if chosen is None:
            taken = ", ".join(f"{p} ({used.get(p, 'just handed to another run')})" for p in self.node_ports)
            raise ClusterError(f"every NodePort cluster {self.name!r} publishes on 127.0.0.1 is taken: {taken}")
        return chosen

    def load_image(self, image: str) -> tuple[str, ...]:
        """Make a local Docker image available on every node (kind only); return the nodes it was loaded into.

        A node that holds an image by that name *and* with the local image's ID
        is skipped, so an unchanged image is loaded once and one rebuilt under
        the same name is loaded again; an empty result means every node had it.
        Pods use it with ``imagePullPolicy: IfNotPresent`` (or ``Never``).
        Raises UsageError for a cluster whose nodes cannot be loaded into (not
        kind: push the image to a registry it pulls from) or an image Docker
        does not have, ClusterError for a node that is not running.
        """
        if not self.is_kind:
            raise UsageError(
                f"cannot load {image} into the {self.provider} cluster {self.name}: chaoskit can load images only "
                "into kind clusters; push it to a registry the cluster pulls from and use that name"
            )
        from chaoskit.adapters import kind

        image_id = kind.local_image_id(image)
        if image_id is None:
            raise UsageError(
                f"there is no local image {image}: build it with 'chaoskit image build DIR' "
                f"or 'docker pull {image}' first"
            )
        # Not while another run's node-wide fault has nodes down (a node failure stops one): wait for its undo.
        with leases.experiment_turn(self, f"loading {image}"):
            return self._load(image, image_id)

    def _load(self, image: str, image_id: str) -> tuple[str, ...]:
        from chaoskit import cache
        from chaoskit.adapters import kind

        nodes = kind.nodes(self.name)
        if not nodes:
            raise ClusterError(
                f"cluster {self.name} has no node containers: run 'chaoskit cluster up --name {self.name}'"
            )
        stopped = [f"{n.name} is {n.state}" for n in nodes if n.state != "running"]
        if stopped:
            raise ClusterError(
                f"cannot load {image} into cluster {self.name}: node {', '.join(stopped)}; "
                f"run 'chaoskit cluster up --name {self.name}', which starts it"
            )
        with locks.machine_lock(self.name, "load-image"):  # pytest -n workers load the same images at once
            # Each node is asked at once (a docker exec apiece): every session opening a kind cluster checks the
            # agent image this way, and in turn the three took half a second of it.
            with ThreadPoolExecutor(max_workers=min(8, len(nodes))) as pool:
                held = list(pool.map(lambda node: kind.node_image_id(node.name, image), nodes))
            missing = tuple(sorted(n.name for n, found in zip(nodes, held, strict=True) if found != image_id))
            if missing:
                kind.load_image(self.name, image, cache.root() / "logs" / f"load-{self.name}.log", missing)
        return missing


@dataclass(frozen=True)
class NodeStatus:
    name: str
    role: str
    ready: bool
    container_state: str | None


@dataclass(frozen=True)
class ClusterStatus:
    """What ``chaoskit cluster status`` reports."""

    name: str
    exists: bool
    nodes: tuple[NodeStatus, ...] = ()
    server_version: str | None = None
    kubeconfig: Path | None = None
    context: str | None = None
    problem: str | None = None


class ClusterProvider(Protocol):
    """Makes, finds and removes clusters."""

    def up(self, spec: ClusterSpec) -> Cluster:
        """Return a ready cluster, reusing a running one where it can.

        Whether a running cluster that differs from ``spec`` or is unhealthy may be
        deleted and created anew is the provider's setting (``recreate`` of
        :func:`chaoskit.cluster.get_provider`); without it, ``up`` uses a running
        cluster as it is or fails saying how to fix it, and ``Cluster.created`` is
        True only for a cluster this call made. No provider deletes one it did not
        create unless told to.
        """
        ...

    def attach(self, spec: ClusterSpec) -> Cluster:
        """A handle on an existing cluster without creating or repairing it."""
        ...

    def down(self, spec: ClusterSpec) -> None:
        """Remove the cluster and everything it left on the machine."""
        ...

    def status(self, spec: ClusterSpec) -> ClusterStatus:
        """Report the cluster without changing it."""
        ...
