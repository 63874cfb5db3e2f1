"""Node failure on kind: the node's container stopped or paused, for real.

A kind node is a Docker container, so stopping it is a real machine going
away (kubelet, containerd and every pod on it stop) and pausing it is a real
hang (processes frozen, TCP connections open but silent). The proof is the
container's state and, unless told not to wait, the node turning NotReady in
the API (after the controller's grace period, 40 s by default).

Undo starts or unpauses the container and waits until the node's kubelet has
renewed its Lease since then (the kubelet runs again: it renews every 10 s or
so, while the Ready condition itself may be posted only every few minutes when
nothing changed) and the node is Ready; after a stop, Ready as posted since the
restart, and its pod-network agent running again. The proof of the undo reads all of that once more.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from chaoskit.adapters import docker
from chaoskit.adapters.kube import Kube, lease_renewed, node_ready, pod_ready
from chaoskit.adapters.shell import say
from chaoskit.cluster.base import Cluster
from chaoskit.errors import ClusterError, FaultNotEffective, FaultUndoFailed, SafetyError, SpecError
from chaoskit.faults.base import Fault, FaultRecord

MODES = ("stop", "pause")
PAUSE_ATTEMPTS = 3
"""Tries of a pause whose freezer gives up (see NodeFailure.inject)."""
NODE_LEASES = "kube-node-lease"
LEASE_FRESH_S = 40.0
"""A kubelet whose lease is older than this (the node-monitor grace period) is not known to run."""
CONTROL_PLANE_LABELS = ("node-role.kubernetes.io/master", "node-role.kubernetes.io/control-plane")


def eligible_nodes(nodes: Any, safety: Any) -> list[Any]:
    """The nodes a node fault may touch: the workers, and the control plane only where it is allowed.

    The blast-radius cap counts the share of these, not of every node: with one
    control plane and one worker, the worker is all a fault may take down.
    """
    return [
        n
        for n in nodes
        if safety.allow_control_plane or not any(k in (n.metadata.labels or {}) for k in CONTROL_PLANE_LABELS)
    ]


@dataclass(frozen=True)
class NodeFailureSpec:
    """Which node fails and how."""

    node: str
    """The node's name (on kind, also its container's name)."""
    mode: str = "stop"
    """``stop`` (the machine goes away) or ``pause`` (the machine hangs)."""
    wait_not_ready: bool = True
    """Prove the failure by waiting for the API to mark the node NotReady."""
    timeout: float = 120.0
    """How long to wait for NotReady, and for Ready again on undo."""

    def __post_init__(self) -> None:
        if not self.node:
            raise SpecError("node failure needs a node name")
        if self.mode not in MODES:
            raise SpecError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.timeout <= 0:
            raise SpecError(f"timeout must be positive, not {self.timeout}")


class NodeFailure(Fault):
    kind = "node-failure"
    kind_only = "stops or pauses the node's container"
    spec: NodeFailureSpec

    def plan(self) -> list[str]:
        spec = self.spec
        nodes = {n.metadata.name: n for n in self.kube.nodes()}
        if spec.node not in nodes:
            raise SpecError(f"no node named {spec.node!r}; nodes: {', '.join(sorted(nodes))}")
        labels = nodes[spec.node].metadata.labels or {}
        if not self.safety.allow_control_plane and any(k in labels for k in CONTROL_PLANE_LABELS):
            raise SafetyError(
                f"{spec.node} is a control-plane node: refused unless allowed with --chaos-allow-control-plane "
                "(Safety(allow_control_plane=True) outside pytest)"
            )
        self.safety.check_share(1, len(eligible_nodes(nodes.values(), self.safety)), "nodes it may touch")
        if docker.state(spec.node) != "running":
            raise SpecError(f"node container {spec.node} is not running; fix the cluster first")
        return [spec.node]

    def undo_data(self, targets: list[str]) -> dict[str, Any] | None:
        return {"node": targets[0], "mode": self.spec.mode, "timeout": self.spec.timeout}

    def inject(self, targets: list[str]) -> None:
        if self.spec.mode == "stop":
            docker.stop(targets[0], grace=10)
            return
        for attempt in range(PAUSE_ATTEMPTS):
            try:
                docker.pause(targets[0])
                return
            except ClusterError as exc:
                # The cgroup freezer gives up ("unable to freeze") when a task of the node is mid-change, such
                # as a container being started there: a moment later it freezes. Any other failure is final.
                if "unable to freeze" not in str(exc) or attempt == PAUSE_ATTEMPTS - 1:
                    raise
                say(f"pausing {targets[0]}: the freezer gave up ({exc}); trying again in 1 s")
                time.sleep(1)

    def verify(self, targets: list[str], record: FaultRecord) -> str:
        node = targets[0]
        want = "exited" if self.spec.mode == "stop" else "paused"
        state = docker.inspect(node).state
        if state != want:
            raise FaultNotEffective(f"node container {node} is {state}, not {want}")
        record.effect_mono = time.monotonic()
        if not self.spec.wait_not_ready:
            return f"node container {node} {want}"
        self.await_effect(
            record,
            self.kube.core.list_node,
            lambda nodes: node in nodes and not node_ready(nodes[node]),
            self.spec.timeout,
            f"node {node} NotReady after its container was {want}",
        )
        return f"node container {node} {want}; node NotReady"

    @classmethod
    def revert(cls, cluster: Cluster, kube: Kube, undo: dict[str, Any]) -> None:
        node = str(undo["node"])
        state = docker.state(node)
        if state == "missing":
            raise FaultUndoFailed(f"node container {node} no longer exists: nothing to start")
        # After a pause the node's processes simply go on; after a stop they start afresh,
        # so their Ready transitions must be newer than the restart.
        pods_since: float | None = None
        if state == "paused":
            docker.unpause(node)
            since = time.time() - 1
        elif state != "running":
            docker.start(node)
            since = pods_since = docker.inspect(node).started_at - 1
        else:
            since = min(time.time(), docker.inspect(node).started_at) - 1
        say(f"node {node}: container running again, waiting for its kubelet and for it to be Ready")
        timeout = float(undo.get("timeout", 120.0)) + 60
        kube.wait_for(
            kube.coordination.list_namespaced_lease,
            lambda leases: node in leases and lease_renewed(leases[node], since),
            timeout,
            f"the kubelet of {node} to renew its lease after the restart",
            namespace=NODE_LEASES,
            field_selector=f"metadata.name={node}",
        )
        # A restarted kubelet posts its status as it starts (NotReady while its runtime and network
        # come up, then Ready): only a Ready posted since the restart counts. After a pause it goes on
        # where it was and may not post again for minutes: its renewed lease and Ready suffice.
        kube.wait_for(
            kube.core.list_node,
            lambda nodes: node in nodes and node_ready(nodes[node], pods_since),
            timeout,
            f"node {node} Ready after its restart",
        )
        if cluster.flavor == "airgap":
            kube.wait_for(
                kube.core.list_namespaced_pod,
                lambda pods: any(pod_ready(p, pods_since) and p.spec.node_name == node for p in pods.values()),
                timeout,
                f"the pod-network agent on {node}",
                namespace="kube-system",
                label_selector="app=chaoskit-netd",
            )

    @classmethod
    def check_undone(cls, cluster: Cluster, kube: Kube, undo: dict[str, Any]) -> str:
        node = str(undo["node"])
        state = docker.state(node)
        if state != "running":
            raise FaultUndoFailed(f"node container {node} is {state}, not running")
        current: Any = kube.core.read_node(node, _request_timeout=10)
        if not node_ready(current):
            raise FaultUndoFailed(f"node {node} is not Ready")
        lease: Any = kube.coordination.read_namespaced_lease(node, NODE_LEASES, _request_timeout=10)
        if not lease_renewed(lease, time.time() - LEASE_FRESH_S):
            raise FaultUndoFailed(f"the kubelet of {node} has not renewed its lease in the last {LEASE_FRESH_S:g} s")
        return f"node container {node} running; node {node} Ready; its kubelet renewed its lease"

    @classmethod
    def moot(cls, cluster: Cluster, kube: Kube, undo: dict[str, Any]) -> str | None:
        node = str(undo["node"])
        if docker.state(node) == "missing":
            return f"node container {node} no longer exists (its cluster was deleted or recreated)"
        return None
