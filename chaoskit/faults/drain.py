"""Node drain: cordon, then evict every pod through the Eviction API, honouring PodDisruptionBudgets.

Evictions use ``policy/v1`` and fall back to ``policy/v1beta1`` on servers
older than 1.22 (such as the air-gapped 1.20 cluster). An eviction refused with
429 (a PodDisruptionBudget would be broken) is retried until the drain's
timeout, exactly as ``kubectl drain`` does; DaemonSet pods and static (mirror)
pods are left alone, as they would come straight back.

The node carries the annotation ``chaoskit.io/cordoned-by: <fault id>`` while
cordoned, and undo uncordons only a node that carries its own mark, so a node
someone else cordoned is never uncordoned by chaoskit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_fixed

from chaoskit.adapters.kube import CONTROL_PLANE_LABELS, ApiError, Kube
from chaoskit.cluster.base import Cluster
from chaoskit.errors import ClusterError, FaultNotEffective, FaultUndoFailed, SafetyError, SpecError
from chaoskit.faults.base import Fault, FaultRecord
from chaoskit.faults.node import eligible_nodes

MARK = "chaoskit.io/cordoned-by"
API_TIMEOUT = 30
"""Seconds any one API request of a drain may take."""


@dataclass(frozen=True)
class NodeDrainSpec:
    """Which node to drain."""

    node: str
    """The node's name."""
    timeout: float = 120.0
    """How long evictions may take in all (PodDisruptionBudgets can hold them back)."""
    grace_seconds: int | None = None
    """Termination grace of evicted pods (default: each pod's own)."""

    def __post_init__(self) -> None:
        if not self.node:
            raise SpecError("node drain needs a node name")
        if self.timeout <= 0:
            raise SpecError(f"timeout must be positive, not {self.timeout}")
        if self.grace_seconds is not None and self.grace_seconds < 0:
            raise SpecError(f"grace_seconds must be 0 or more, not {self.grace_seconds}")


def _evictable(pod: Any) -> bool:
    owners = pod.metadata.owner_references or []
    if any(o.kind == "DaemonSet" for o in owners):
        return False
    if "kubernetes.io/config.mirror" in (pod.metadata.annotations or {}):
        return False
    return pod.status.phase not in ("Succeeded", "Failed")


def _blocked_by_budget(exc: BaseException) -> bool:
    return isinstance(exc, ApiError) and exc.status == 429


class NodeDrain(Fault):
    kind = "node-drain"
    hits_nodes = True
    node_wide = True
    spec: NodeDrainSpec
    _evicted: dict[str, str]
    _policy_version = "policy/v1"
    """Falls back to policy/v1beta1 at the first eviction a pre-1.22 server refuses."""

    def nodes(self) -> list[str]:
        return [self.spec.node]

    def plan(self) -> list[str]:
        spec = self.spec
        self._evicted = {}
        nodes = {n.metadata.name: n for n in self.kube.nodes()}
        if spec.node not in nodes:
            raise SpecError(f"no node named {spec.node!r}; nodes: {', '.join(sorted(nodes))}")
        node = nodes[spec.node]
        if not self.safety.allow_control_plane and any(k in (node.metadata.labels or {}) for k in CONTROL_PLANE_LABELS):
            raise SafetyError(
                f"{spec.node} is a control-plane node: refused unless allowed with "
                f"{self.safety.option('allow-control-plane')}"
            )
        if node.spec.unschedulable:
            raise SpecError(f"node {spec.node} is already cordoned; uncordon it first")
        self.safety.check_share(1, len(eligible_nodes(nodes.values(), self.safety)), "nodes it may touch")
        return [spec.node]

    def undo_data(self, targets: list[str]) -> dict[str, Any] | None:
        return {"node": targets[0], "mark": self.fault_id}

    def inject(self, targets: list[str]) -> None:
        node = targets[0]
        self.kube.core.patch_node(
            node,
            {"spec": {"unschedulable": True}, "metadata": {"annotations": {MARK: self.fault_id}}},
            _request_timeout=API_TIMEOUT,
        )
        pods: list[Any] = self.kube.core.list_pod_for_all_namespaces(
            field_selector=f"spec.nodeName={node}", _request_timeout=API_TIMEOUT
        ).items
        deadline = time.monotonic() + self.spec.timeout
        for pod in pods:
            if not _evictable(pod):
                continue
            if pod.metadata.deletion_timestamp is None:  # pods already terminating need no eviction
                self._evict(pod, deadline)
            self._evicted[f"{pod.metadata.namespace}/{pod.metadata.name}"] = pod.metadata.uid

    def _evict(self, pod: Any, deadline: float) -> None:
        remaining = max(1.0, deadline - time.monotonic())
        for attempt in Retrying(
            stop=stop_after_delay(remaining), wait=wait_fixed(1), retry=retry_if_exception(_blocked_by_budget)
        ):
            with attempt:
                self._evict_once(pod)

    def _evict_once(self, pod: Any) -> None:
        try:
            self.kube.evict(
                pod.metadata.name, pod.metadata.namespace, self._policy_version, self.spec.grace_seconds, API_TIMEOUT
            )
        except ApiError as exc:
            if exc.status == 404:
                return  # already gone
            if exc.status == 403 and "NamespaceTerminating" in str(exc.body):
                return  # it leaves with its namespace; verify() still waits for it to be gone
            if exc.status == 400 and self._policy_version == "policy/v1" and "policy/v1" in str(exc.body):
                self._policy_version = "policy/v1beta1"  # servers before 1.22 know only v1beta1
                self._evict_once(pod)
                return
            if exc.status == 429:
                raise  # a PodDisruptionBudget says not now: retried by the caller
            raise ClusterError(
                f"evicting {pod.metadata.namespace}/{pod.metadata.name} failed ({exc.status}): {exc.body!r}"
            ) from None

    def verify(self, targets: list[str], record: FaultRecord) -> str:
        node = targets[0]
        current: Any = self.kube.core.read_node(node, _request_timeout=API_TIMEOUT)
        if not current.spec.unschedulable:
            raise FaultNotEffective(f"node {node} is not cordoned")
        uids = set(self._evicted.values())
        self.await_effect(
            record,
            self.kube.core.list_pod_for_all_namespaces,
            lambda pods: not uids & {p.metadata.uid for p in pods.values()},
            self.spec.timeout,
            f"the evicted pods to leave {node}",
            field_selector=f"spec.nodeName={node}",
        )
        return f"node {node} cordoned; {len(uids)} pods evicted ({self._policy_version} Eviction)"

    @classmethod
    def revert(cls, cluster: Cluster, kube: Kube, undo: dict[str, Any]) -> None:
        node: Any = kube.core.read_node(str(undo["node"]), _request_timeout=API_TIMEOUT)
        if (node.metadata.annotations or {}).get(MARK) != undo["mark"]:
            return  # not cordoned by this fault (already undone, or someone else's cordon)
        kube.core.patch_node(
            node.metadata.name,
            {"spec": {"unschedulable": False}, "metadata": {"annotations": {MARK: None}}},
            _request_timeout=API_TIMEOUT,
        )

    @classmethod
    def check_undone(cls, cluster: Cluster, kube: Kube, undo: dict[str, Any]) -> str:
        name = str(undo["node"])
        node: Any = kube.core.read_node(name, _request_timeout=API_TIMEOUT)
        if (node.metadata.annotations or {}).get(MARK) == undo["mark"]:
            raise FaultUndoFailed(f"node {name} still carries this fault's cordon ({MARK}={undo['mark']})")
        if node.spec.unschedulable:
            # Someone else cordoned it since (their mark, or none): not this fault's to lift.
            return f"node {name} no longer carries this fault's cordon (it is cordoned by someone else)"
        return f"node {name} schedulable; this fault's mark gone"

    @classmethod
    def moot(cls, cluster: Cluster, kube: Kube, undo: dict[str, Any]) -> str | None:
        try:
            kube.core.read_node(str(undo["node"]), _request_timeout=API_TIMEOUT)
        except ApiError as exc:
            if exc.status == 404:
                return f"node {undo['node']} no longer exists"
            raise
        return None
