"""Node partition: a node cut off from the control plane while its pods keep running.

DROP rules in the node's own network namespace (``filter`` OUTPUT to, and
INPUT from, every control-plane address, IPv4 and IPv6: the control-plane
nodes' internal IPs, the API server's endpoints, and the address the node's
kubelet resolves its API server's name to) cut what the node itself says to the
control plane and hears from it: its kubelet's heartbeats and lease, its
kube-proxy and node agents' watches, the API server's calls to the kubelet
(``kubectl exec`` and ``logs``). The pods' own traffic is forwarded, not
sent by the node, so it passes: the containers run on and serve, while the
control plane sees the node go NotReady after its grace period (40 s by
default up to 1.31, 50 s since 1.32), takes its pods out of the Services' endpoints and, after their
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
from chaoskit.adapters.kube import CONTROL_PLANE_LABELS, Kube
from chaoskit.adapters.nodes import NodeShell
from chaoskit.cluster.base import Cluster
from chaoskit.errors import FaultNotEffective, FaultUndoFailed, FaultUnsupported, SafetyError, SpecError
from chaoskit.faults.base import Fault, FaultRecord
from chaoskit.faults.netns import (
    COMMENT_PREFIX,
    STEP_TIMEOUT,
    NamespaceUnreadable,
    Netns,
    in_namespaces,
    probe_from_node,
)
from chaoskit.faults.netrules import (
    HELPER_TAG,
    comment_rules,
    delete_rules_snippet,
    dropped_snippet,
    for_ipv6,
    helpers_running,
    helpers_snippet,
    insert_snippet,
    read_rules,
    refuse_if_held,
)
from chaoskit.faults.network import agent_steps_rules_and_helpers
from chaoskit.faults.node import NodeFailure, await_not_ready, eligible_nodes

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
    """The addresses of the control plane that the API knows (its nodes' internal IPs and the API server's
    endpoints, IPv4 and IPv6), and one endpoint of the API server (address, port) to probe."""
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
    if probe is None:
        raise SpecError("the API server's endpoints (default/kubernetes) list no address: nothing to cut from")
    return sorted(found), probe


KUBELET_SERVER = (
    "f=/etc/kubernetes/kubelet.conf; [ -r $f ] || exit 0; "
    "url=$(sed -n 's/^ *server: *//p' $f | head -n 1); hostport=${url#*://}; host=${hostport%:*}; "
    "host=${host#[}; host=${host%]}; port=${hostport##*:}; "
    'echo "port $port"; getent ahosts "$host" | awk \'{print "address " $1}\' | sort -u'
)
"""Shell for the node: the API server its kubelet talks to (its kubeconfig's ``server``), resolved there as
the kubelet resolves it (a kind node may reach it over IPv6 alone)."""


def kubelet_api(shell: NodeShell, node: str) -> tuple[list[str], int | None]:
    """The addresses the node's kubelet reaches the API server at, and that port (none known: [], None)."""
    output = nodes.check(shell, node, ["bash", "-c", KUBELET_SERVER], STEP_TIMEOUT)
    addresses = [line.split()[1] for line in output.splitlines() if line.startswith("address ")]
    ports = [line.split()[1] for line in output.splitlines() if line.startswith("port ")]
    port = int(ports[0]) if ports and ports[0].isdigit() else None
    valid = []
    for address in addresses:
        try:
            valid.append(str(ipaddress.ip_address(address)))
        except ValueError:
            continue
    return valid, port


def _v6(address: str) -> bool:
    return ipaddress.ip_address(address).version == 6


def node_netns(shell: NodeShell, node: str) -> Netns:
    """The node's own network namespace, as its init process (PID 1 of the node) holds it."""
    output = nodes.check(shell, node, ["stat", "-L", "-c", "%i", "/proc/1/ns/net"], STEP_TIMEOUT).strip()
    if not output.isdigit():
        raise SpecError(f"the network namespace of node {node} could not be read: {output[-200:]}")
    return Netns(node, 1, int(output), f"node {node}")


def delete_both_snippet(comment: str) -> str:
    """Shell, in the node's namespace: delete the rules carrying ``comment`` from the IPv4 and the IPv6
    tables, each listed again after; fail if one is left in either."""
    v4, v6 = delete_rules_snippet(comment), for_ipv6(delete_rules_snippet(comment))
    return f"( {v4} ); a=$?; ( {v6} ); b=$?; [ $a = 0 ] && [ $b = 0 ]"


def heal_timer_snippet(seconds: float, comment: str) -> str:
    """Shell, in the node's namespace: start the dead-man timer, a process (tagged with ``comment``) that
    deletes the rules carrying ``comment`` (IPv4 and IPv6) after ``seconds`` and ends."""
    script = f'sleep "$1"; {delete_both_snippet(comment)}'
    start = shlex.join(["setsid", "bash", "-c", script, "chaoskit-heal", f"{seconds:g}", f"{HELPER_TAG}{comment}"])
    return f"{start} </dev/null >/dev/null 2>&1 &"


def _rules(addresses: list[str]) -> list[list[str]]:
    rules = []
    for address in addresses:
        prefix = "/128" if _v6(address) else "/32"
        rules += [["OUTPUT", "-d", address + prefix, "-j", "DROP"], ["INPUT", "-s", address + prefix, "-j", "DROP"]]
    return rules


class NodePartition(Fault):
    kind = "node-partition"
    hits_nodes = True
    node_wide = True
    node_access = "writes iptables rules in a node's own network namespace"
    spec: NodePartitionSpec
    _netns: Netns
    _addresses: list[str]
    _probe: tuple[str, int]

    @property
    def comment(self) -> str:
        return f"{COMMENT_PREFIX}{self.fault_id}"

    def nodes(self) -> list[str]:
        return [self.spec.node]

    def plan(self) -> list[str]:
        spec = self.spec
        if self.cluster.node_shell.name != "docker":
            raise FaultUnsupported(
                "a node partition cuts the node's link to the API server, which is how the injector agent is "
                "asked to act (and to undo): it runs through Docker on kind only "
                f"({self.safety.option('injector', 'docker')})"
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
        addresses, self._probe = control_plane_addresses(self.kube)
        used, port = kubelet_api(self.cluster.node_shell, spec.node)
        if used and port is not None:
            self._probe = (used[0], port)  # what the kubelet itself connects to
        self._addresses = sorted(set(addresses) | set(used))
        self._netns = node_netns(self.cluster.node_shell, spec.node)
        before = probe_from_node(self.cluster.node_shell, spec.node, *self._probe)
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
        v4 = _rules([a for a in self._addresses if not _v6(a)])
        v6 = _rules([a for a in self._addresses if _v6(a)])
        first = (
            refuse_if_held("filter", "node-partition-", "another node partition already holds this node")
            + f"{heal_timer_snippet(self.spec.max_seconds, self.comment)} "
            + (insert_snippet(v4, self.comment) if v4 else read_rules())
        )
        work = [(self._netns, first)]
        if v6:
            work.append((self._netns, for_ipv6(insert_snippet(v6, self.comment))))
        outcomes = in_namespaces(self.cluster.node_shell, self._netns.node, work)
        for outcome, wanted in zip(outcomes, [v4, v6], strict=False):
            if outcome.gone or outcome.code != 0:
                why = "its namespace is gone" if outcome.gone else f"exit {outcome.code}: {outcome.output[-300:]}"
                raise FaultNotEffective(f"node partition: the rules did not go in on {self._netns.node} ({why})")
            if len(comment_rules(outcome.output, self.comment)) != len(wanted):
                raise FaultNotEffective(f"node partition: the rules {self.comment} are not all in {self._netns}")
        self._in_place_mono = time.monotonic()

    @classmethod
    def _both(cls, shell: NodeShell, netns: Netns, snippet: str) -> tuple[str, str]:
        """``snippet`` in the node's namespace on the IPv4 tables and on the IPv6 ones: both outputs."""
        outcomes = in_namespaces(shell, netns.node, [(netns, snippet), (netns, for_ipv6(snippet))])
        for outcome in outcomes:
            if outcome.gone or outcome.code != 0:
                raise NamespaceUnreadable(
                    f"'{snippet[:60]}' failed in {netns} (exit {outcome.code}): {outcome.output[-200:]}"
                )
        return outcomes[0].output, outcomes[1].output

    def verify(self, targets: list[str], record: FaultRecord) -> str:
        node, (ip, port) = targets[0], self._probe
        record.effect_mono = self._in_place_mono
        during = probe_from_node(self.cluster.node_shell, node, ip, port)
        counts = self._both(self.cluster.node_shell, self._netns, dropped_snippet(self.comment))
        drops = sum(int(out.split()[-1]) for out in counts if out.split() and out.split()[-1].isdigit())
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
        return await_not_ready(self, record, node, what, self.spec.timeout)

    @classmethod
    def _namespaces(cls, undo: dict[str, Any]) -> list[Netns]:
        return [Netns.from_undo(item) for item in undo["namespaces"]]

    @classmethod
    def revert(cls, cluster: Cluster, kube: Kube, undo: dict[str, Any]) -> None:
        since = time.time() - 1
        comment = str(undo["comment"])
        for netns in cls._namespaces(undo):
            script = f"{delete_both_snippet(comment)} && {helpers_snippet(comment, stop=True)}"
            (outcome,) = in_namespaces(cluster.node_shell, netns.node, [(netns, script)])
            if not outcome.gone and outcome.code != 0:
                raise FaultUndoFailed(f"deleting the rules {comment} on {netns.node} failed: {outcome.output[-300:]}")
        NodeFailure.await_back(cluster, kube, str(undo["node"]), since, None, float(undo.get("timeout", 120)) + 60)

    @classmethod
    def agent_steps(cls, undo: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        return agent_steps_rules_and_helpers(cls._namespaces(undo), str(undo["comment"]), "filter", ("ipv4", "ipv6"))

    @classmethod
    def check_undone(cls, cluster: Cluster, kube: Kube, undo: dict[str, Any]) -> str:
        comment, node = str(undo["comment"]), str(undo["node"])
        namespaces = cls._namespaces(undo)
        for netns in namespaces:
            left = [
                rule
                for listing in cls._both(cluster.node_shell, netns, read_rules())
                for rule in comment_rules(listing, comment)
            ]
            if left:
                raise FaultUndoFailed(f"rules with comment {comment} are still in place on {node}: {left}")
        running = helpers_running(cluster.node_shell, namespaces, comment)
        if running:
            raise FaultUndoFailed(f"the dead-man timer of {comment} still runs: {running}")
        back = NodeFailure.check_undone(cluster, kube, {"node": node, "mode": "stop"})
        return f"no rule {comment} (IPv4 or IPv6) and no timer left on {node}; {back}"

    @classmethod
    def moot(cls, cluster: Cluster, kube: Kube, undo: dict[str, Any]) -> str | None:
        return NodeFailure.moot(cluster, kube, {"node": undo["node"], "mode": "stop"})
