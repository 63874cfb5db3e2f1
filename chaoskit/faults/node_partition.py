"""Node partition: a node cut off from the control plane while its pods keep running.

DROP rules in the node's own network namespace (``filter`` OUTPUT to, and
INPUT from, every control-plane address: the control-plane nodes' internal
IPs and the API server's endpoints) cut what the node itself says to the
control plane and hears from it: its kubelet's heartbeats and lease, its
kube-proxy and node agents' watches, the API server's calls to the kubelet
(``kubectl exec`` and ``logs``). The pods' own traffic is forwarded, not
sent by the node, so it passes: the containers run on and serve, while the
control plane sees the node go NotReady after its grace period (40 s by
default), takes its pods out of the Services' endpoints and, after their
tolerations, evicts them. That is the outage the fault is for.

Proof of effect, from the node: a TCP connection to the API server that was
open before the rules went in is blocked after, and the rules' own drop
counters show it; then, unless told not to wait, the API marks the node
NotReady.

Undo deletes the rules and waits, as a node failure does, for the kubelet to
renew its lease since the undo and the node to be Ready; proven by listing
the rules again and reading the node and its lease once more.

A node cut off this way cannot be reached through the API, so the injector
agent cannot be told to undo it there: the fault runs through Docker (kind)
and refuses the agent path. It carries its own dead-man timer instead: a
process started with the rules on the node deletes them after
``max_seconds`` whatever happens to the run (a SIGKILL with the ledger lost),
and ``chaoskit cleanup`` undoes it from the ledger before that.
"""

from __future__ import annotations

import ipaddress
import shlex
import time
from dataclasses import dataclass
from typing import Any

from chaoskit.adapters import nodes
from chaoskit.adapters.kube import CONTROL_PLANE_LABELS, Kube, node_ready
from chaoskit.cluster.base import Cluster
from chaoskit.errors import FaultNotEffective, FaultUndoFailed, FaultUnsupported, SafetyError, SpecError
from chaoskit.faults.base import Fault, FaultRecord
from chaoskit.faults.netns import (
    COMMENT_PREFIX,
    HELPER_TAG,
    STEP_TIMEOUT,
    Netns,
    comment_rules,
    delete_rules_snippet,
    dropped,
    helpers_running,
    in_namespaces,
    insert_snippet,
    probe_from_node,
    refuse_if_held,
    rules_in,
)
from chaoskit.faults.network import agent_undo_rules_and_helpers, revert_rules_and_helpers
from chaoskit.faults.node import NodeFailure, eligible_nodes

MAX_SECONDS = 600.0
"""The longest a node partition may hold before its node heals itself (the dead-man timer)."""
API_PORT_DEFAULT = 6443


@dataclass(frozen=True)
class NodePartitionSpec:
    """Which node is cut off from the control plane, and for how long at most."""

    node: str
    """The node's name (on kind, also its container's name)."""
    wait_not_ready: bool = True
    """Prove the cut also by waiting for the API to mark the node NotReady."""
    timeout: float = 120.0
    """How long to wait for NotReady, and for Ready again on undo."""
    max_seconds: float = 300.0
    """The dead-man timer: the node deletes the rules itself after this many seconds, whatever happens to the
    run (the undo comes first when the run goes on), in 10-600."""

    def __post_init__(self) -> None:
        if not self.node:
            raise SpecError("node partition needs a node name")
        if self.timeout <= 0:
            raise SpecError(f"timeout must be positive, not {self.timeout}")
        if not 10 <= self.max_seconds <= MAX_SECONDS:
            raise SpecError(f"max_seconds must be in 10-{MAX_SECONDS:g}, not {self.max_seconds}")


def control_plane_addresses(kube: Kube) -> tuple[list[str], tuple[str, int]]:
    """Every IPv4 address of the control plane (its nodes' internal IPs and the API server's endpoints), and
    one endpoint of the API server (address, port) to probe."""
    found: set[str] = set()
    for node in kube.nodes():
        if any(k in (node.metadata.labels or {}) for k in CONTROL_PLANE_LABELS):
            found.update(a.address for a in node.status.addresses or [] if a.type == "InternalIP")
    endpoints: Any = kube.core.read_namespaced_endpoints("kubernetes", "default", _request_timeout=10)
    probe: tuple[str, int] | None = None
    for subset in endpoints.subsets or []:
        port = next((p.port for p in subset.ports or [] if p.name in ("https", None)), API_PORT_DEFAULT)
        for address in subset.addresses or []:
            found.add(address.ip)
            probe = probe or (address.ip, int(port))
    v4 = sorted(a for a in found if ipaddress.ip_address(a).version == 4)
    if probe is None or not v4:
        raise SpecError("the API server's endpoints (default/kubernetes) list no address: nothing to cut from")
    return v4, probe


def node_netns(node: str) -> Netns:
    """The node's own network namespace, as its init process (PID 1 of the node) holds it."""
    output = nodes.check(node, ["stat", "-L", "-c", "%i", "/proc/1/ns/net"], STEP_TIMEOUT).strip()
    if not output.isdigit():
        raise SpecError(f"the network namespace of node {node} could not be read: {output[-200:]}")
    return Netns(node, 1, int(output), f"node {node}")


def heal_timer_snippet(seconds: float, comment: str) -> str:
    """Shell, in the node's namespace: start the dead-man timer, a process (tagged with ``comment``) that
    deletes the rules carrying ``comment`` after ``seconds`` and ends."""
    script = f'sleep "$1"; {delete_rules_snippet(comment)}'
    start = shlex.join(["setsid", "bash", "-c", script, "chaoskit-heal", f"{seconds:g}", f"{HELPER_TAG}{comment}"])
    return f"{start} </dev/null >/dev/null 2>&1 &"


class NodePartition(Fault):
    kind = "node-partition"
    node_access = "writes iptables rules in a node's own network namespace"
    spec: NodePartitionSpec
    _netns: Netns
    _addresses: list[str]
    _probe: tuple[str, int]

    @property
    def comment(self) -> str:
        return f"{COMMENT_PREFIX}{self.fault_id}"

    def plan(self) -> list[str]:
        spec = self.spec
        if nodes.current().name != "docker":
            raise FaultUnsupported(
                "a node partition cuts the node's link to the API server, which is how the injector agent is "
                "asked to act (and to undo): it runs through Docker on kind only (--chaos-injector docker)"
            )
        if not self.cluster.is_kind:
            raise FaultUnsupported(
                f"a node partition needs Docker's way into the node, and {self.cluster.name} is not kind"
            )
        listed = {n.metadata.name: n for n in self.kube.nodes()}
        if spec.node not in listed:
            raise SpecError(f"no node named {spec.node!r}; nodes: {', '.join(sorted(listed))}")
        if any(k in (listed[spec.node].metadata.labels or {}) for k in CONTROL_PLANE_LABELS):
            raise SafetyError(f"{spec.node} is a control-plane node: a node partition cuts a node off from it")
        self.safety.check_share(1, len(eligible_nodes(listed.values(), self.safety)), "nodes it may touch")
        self._addresses, self._probe = control_plane_addresses(self.kube)
        self._netns = node_netns(spec.node)
        before = probe_from_node(spec.node, *self._probe)
        if before != "open":
            raise SpecError(
                f"node {spec.node} cannot reach the API server at {self._probe[0]}:{self._probe[1]} before the "
                f"fault ({before}): nothing to prove the cut against"
            )
        return [spec.node]

    def undo_data(self, targets: list[str]) -> dict[str, Any] | None:
        return {
            "node": targets[0],
            "comment": self.comment,
            "namespaces": [self._netns.to_undo()],
            "timeout": self.spec.timeout,
        }

    def inject(self, targets: list[str]) -> None:
        rules = []
        for address in self._addresses:
            rules += [["OUTPUT", "-d", f"{address}/32", "-j", "DROP"], ["INPUT", "-s", f"{address}/32", "-j", "DROP"]]
        snippet = (
            refuse_if_held("filter", "node-partition-", "another node partition already holds this node")
            + f"{heal_timer_snippet(self.spec.max_seconds, self.comment)} "
            + insert_snippet(rules, self.comment)
        )
        (outcome,) = in_namespaces(self._netns.node, [(self._netns, snippet)])
        if outcome.gone or outcome.code != 0:
            why = "its namespace is gone" if outcome.gone else f"exit {outcome.code}: {outcome.output[-300:]}"
            raise FaultNotEffective(f"node partition: the rules did not go in on {self._netns.node} ({why})")
        if len(comment_rules(outcome.output, self.comment)) != len(rules):
            raise FaultNotEffective(f"node partition: the rules {self.comment} are not all in {self._netns}")
        self._in_place_mono = time.monotonic()

    def verify(self, targets: list[str], record: FaultRecord) -> str:
        node, (ip, port) = targets[0], self._probe
        record.effect_mono = self._in_place_mono
        during = probe_from_node(node, ip, port)
        drops = dropped([self._netns], self.comment)[self._netns]
        if during != "blocked" or drops == 0:
            raise FaultNotEffective(
                f"node partition: from {node}, the API server at {ip}:{port} is {during} with the rules in place "
                f"({drops} packet(s) dropped by them)"
            )
        what = (
            f"{node} -> API server {ip}:{port} open before, blocked during ({drops} packet(s) dropped by the "
            f"fault's rules; {len(self._addresses)} control-plane address(es) cut both ways)"
        )
        if not self.spec.wait_not_ready:
            return what
        self.await_effect(
            record,
            self.kube.core.list_node,
            lambda listed: node in listed and not node_ready(listed[node]),
            self.spec.timeout,
            f"node {node} NotReady after: {what}",
        )
        return f"{what}; node NotReady"

    @classmethod
    def _namespaces(cls, undo: dict[str, Any]) -> list[Netns]:
        return [Netns.from_undo(item) for item in undo["namespaces"]]

    @classmethod
    def revert(cls, cluster: Cluster, kube: Kube, undo: dict[str, Any]) -> None:
        since = time.time() - 1
        revert_rules_and_helpers(cls._namespaces(undo), str(undo["comment"]), "filter", "dead-man timers")
        NodeFailure.await_back(cluster, kube, str(undo["node"]), since, None, float(undo.get("timeout", 120)) + 60)

    @classmethod
    def agent_undo(cls, undo: dict[str, Any]) -> dict[str, str]:
        return agent_undo_rules_and_helpers(cls._namespaces(undo), str(undo["comment"]), "filter")

    @classmethod
    def check_undone(cls, cluster: Cluster, kube: Kube, undo: dict[str, Any]) -> str:
        comment, node = str(undo["comment"]), str(undo["node"])
        namespaces = cls._namespaces(undo)
        left = {str(ns): rules for ns, rules in rules_in(namespaces, comment).items() if rules}
        if left:
            raise FaultUndoFailed(f"rules with comment {comment} are still in place: {left}")
        running = helpers_running(namespaces, comment)
        if running:
            raise FaultUndoFailed(f"the dead-man timer of {comment} still runs: {running}")
        back = NodeFailure.check_undone(cluster, kube, {"node": node, "mode": "stop"})
        return f"no rule {comment} and no timer left on {node}; {back}"

    @classmethod
    def moot(cls, cluster: Cluster, kube: Kube, undo: dict[str, Any]) -> str | None:
        return NodeFailure.moot(cluster, kube, {"node": undo["node"], "mode": "stop"})
