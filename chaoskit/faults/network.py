"""Network faults inside pods' network namespaces by rules: partition and packet loss; and what every pod
network fault shares.

Rules are added from the pod's kind node (see :mod:`.netns`) with the node's
iptables, each carrying the comment ``chaoskit:<fault id>``: that comment is
how undo, and the sweeper after a killed run, find exactly these rules and
nothing else. A pod that restarts gets a fresh namespace without them.

Proof of effect: the rules are present in every target namespace, and a probe
shows the traffic really is affected. A partition probes a connection that
must cross the cut (to the peer's port, to the pod's own port from its node,
or to the ``kubernetes`` Service as the cluster serves it): it must be open
before the rules go in (else there is nothing to prove against, and the fault
refuses) and blocked after; a probe that fails for another reason is an
error, not "blocked". Packet loss counts the packets its rule dropped while
probe connections ran.

Undo deletes the rules by their comment and is proven by listing every
recorded namespace again: none may still hold a rule with the comment. A
namespace that is gone (the pod restarted, its node stopped) took its rules
with it. Each step is one exec per node, the nodes in parallel (:mod:`.netns`).

Which pods: every pod the selector matches, or ``count`` of them; either way
the share of the matching pods is checked against the blast-radius cap, which
a fault may raise for itself (``max_share=``).

Bandwidth and latency are queueing disciplines on the pod's ``eth0``: :mod:`.shaping`.
"""

from __future__ import annotations

import math
import re
import shlex
import time
from dataclasses import dataclass
from typing import Any

from chaoskit.adapters.kube import Kube
from chaoskit.adapters.nodes import NodeShell
from chaoskit.agent import actions
from chaoskit.cluster.base import Cluster
from chaoskit.errors import FaultNotEffective, FaultUndoFailed, SafetyError, SpecError
from chaoskit.faults.base import Fault, FaultRecord
from chaoskit.faults.netns import (
    COMMENT_PREFIX,
    Netns,
    PodProcess,
    locate_all,
    on_node,
    probe_from_node,
    probe_from_pod,
    run_everywhere,
    steps_by_node,
    tcp_snippet,
)
from chaoskit.faults.netrules import (
    comment_rules,
    delete_rules,
    dropped,
    dropped_snippet,
    helpers_running,
    helpers_snippet,
    insert_snippet,
    rules_in,
)
from chaoskit.faults.safety import check_selector


def _check_port(port: int | None) -> None:
    if port is not None and not 1 <= port <= 65535:
        raise SpecError(f"port must be in 1-65535, not {port}")


def _check_count(count: int | None) -> None:
    if count is not None and count < 1:
        raise SpecError(f"count must be at least 1 (or None for every matching pod), not {count}")


class _PodNetworkFault(Fault):
    """Shared parts: choosing and locating the pods, recording where the rules are, undoing them."""

    node_access = "enters pods' network namespaces from their node"
    _pods: list[PodProcess]

    def nodes(self) -> list[str]:
        return sorted({p.node for p in self._pods})

    def _locate(
        self, namespace: str, selector: str, count: int | None = None, seed: int | None = None
    ) -> list[PodProcess]:
        pods = self.live_pods(namespace, selector)
        chosen = self.choose(pods, count, seed, f"pods matching {selector!r} in {namespace!r}")
        return self._own_namespaces(chosen)

    def _own_namespaces(self, pods: list[Any]) -> list[PodProcess]:
        """Locate the pods, refusing any on the host's network: its "namespace" is the whole node's."""
        shared = [p.metadata.name for p in pods if p.spec.host_network]
        if shared:
            raise SafetyError(
                f"pods {', '.join(shared)} use the host's network (hostNetwork): a network fault there would "
                "hit the whole node, not the pod; choose pods with a network of their own"
            )
        return locate_all(self.cluster.node_shell, pods)

    @property
    def comment(self) -> str:
        return f"{COMMENT_PREFIX}{self.fault_id}"

    def _undo(self, processes: list[PodProcess]) -> dict[str, Any]:
        return {"comment": self.comment, "namespaces": [p.netns.to_undo() for p in processes]}

    def _insert(self, rules: dict[PodProcess, list[list[str]]]) -> None:
        """Insert each pod's rules and read them back: one exec per node, the nodes in parallel.

        The fault takes effect when every rule is in place (stamped here, used by
        :meth:`verify`); the probe that follows confirms it.
        """
        outputs = self._apply({p: insert_snippet(r, self.comment) for p, r in rules.items()}, "inserting rules into")
        for p, wanted in rules.items():
            found = len(comment_rules(outputs[p], self.comment))
            if found != len(wanted):
                raise FaultNotEffective(f"{self.kind}: {found} of {len(wanted)} rules found in {p.netns}")
        self._in_place_mono = time.monotonic()

    def _apply(self, snippets: dict[PodProcess, str], doing: str) -> dict[PodProcess, str]:
        """Run each pod's snippet (one exec per node, the nodes in parallel); each one's output.

        A namespace that is gone, or a snippet that fails, means the fault is not in place there.
        """
        outcomes = run_everywhere(self.cluster.node_shell, [(p.netns, snippet) for p, snippet in snippets.items()])
        for p in snippets:
            outcome = outcomes[p.netns]
            if outcome.gone or outcome.code != 0:
                why = "its namespace is gone" if outcome.gone else f"exit {outcome.code}: {outcome.output[-300:]}"
                raise FaultNotEffective(f"{self.kind}: {doing} {p.netns} failed ({why})")
        return {p: outcomes[p.netns].output for p in snippets}

    @classmethod
    def _namespaces(cls, undo: dict[str, Any]) -> list[Netns]:
        return [Netns.from_undo(item) for item in undo["namespaces"]]

    @classmethod
    def revert(cls, cluster: Cluster, kube: Kube, undo: dict[str, Any]) -> None:
        delete_rules(cluster.node_shell, cls._namespaces(undo), str(undo["comment"]))

    @classmethod
    def agent_steps(cls, undo: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        return steps_by_node(cls._namespaces(undo), "delete-rules", comment=str(undo["comment"]))

    @classmethod
    def check_undone(cls, cluster: Cluster, kube: Kube, undo: dict[str, Any]) -> str:
        comment = str(undo["comment"])
        present = rules_in(cluster.node_shell, cls._namespaces(undo), comment)
        left = {ns: rules for ns, rules in present.items() if rules}
        if left:
            where = "; ".join(f"{len(rules)} rule(s) in {ns}" for ns, rules in left.items())
            raise FaultUndoFailed(f"rules with comment {comment} are still in place: {where}")
        return _describe_checked(present.values(), f"no rule with comment {comment}")


def revert_rules_and_helpers(shell: NodeShell, namespaces: list[Netns], comment: str, table: str, what: str) -> None:
    """Undo a fault made of rules in ``table`` and helper processes: delete the rules, then end the helpers."""
    delete_rules(shell, namespaces, comment, table)
    outcomes = run_everywhere(shell, [(ns, helpers_snippet(comment, stop=True)) for ns in namespaces])
    failed = [f"{ns} ({o.output.strip()[-200:]})" for ns, o in outcomes.items() if not o.gone and o.code != 0]
    if failed:
        raise FaultUndoFailed(f"ending the {what} of {comment} failed in {'; '.join(failed)}")


def agent_steps_rules_and_helpers(
    namespaces: list[Netns], comment: str, table: str, families: tuple[str, ...] = ("ipv4",)
) -> dict[str, list[dict[str, Any]]]:
    """The injector agent's steps for :func:`revert_rules_and_helpers`, by node: the rules of ``table`` (for
    ``families``) deleted in each namespace, then the helpers of the fault ended on each node."""
    steps = steps_by_node(namespaces, "delete-rules", comment=comment, table=table, families=list(families))
    for node_steps in steps.values():
        node_steps.append(actions.step("stop-helpers", comment=comment))
    return steps


def check_rules_and_helpers(shell: NodeShell, namespaces: list[Netns], comment: str, table: str, what: str) -> str:
    """Prove :func:`revert_rules_and_helpers`: no rule with the comment in ``table``, no helper process left."""
    present = rules_in(shell, namespaces, comment, table)
    left = {ns: rules for ns, rules in present.items() if rules}
    if left:
        where = "; ".join(f"{len(rules)} rule(s) in {ns}" for ns, rules in left.items())
        raise FaultUndoFailed(f"{table} rules with comment {comment} are still in place: {where}")
    running = helpers_running(shell, namespaces, comment)
    if running:
        raise FaultUndoFailed(f"{what} of {comment} still run: {running}")
    return _describe_checked(present.values(), f"no {table} rule {comment} and no {what} left")


class _HelperFault(_PodNetworkFault):
    """A pod fault made of rules in ``helper_table`` and helper processes (the DNS responder, the HTTP proxy):
    undone, proven and handed to the agent by :func:`revert_rules_and_helpers` and its twins."""

    helper_table = "filter"
    helpers_are = "helpers"
    """What the helpers are called in messages (``DNS responders``)."""

    @classmethod
    def revert(cls, cluster: Cluster, kube: Kube, undo: dict[str, Any]) -> None:
        revert_rules_and_helpers(
            cluster.node_shell, cls._namespaces(undo), str(undo["comment"]), cls.helper_table, cls.helpers_are
        )

    @classmethod
    def agent_steps(cls, undo: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        return agent_steps_rules_and_helpers(cls._namespaces(undo), str(undo["comment"]), cls.helper_table)

    @classmethod
    def check_undone(cls, cluster: Cluster, kube: Kube, undo: dict[str, Any]) -> str:
        return check_rules_and_helpers(
            cluster.node_shell, cls._namespaces(undo), str(undo["comment"]), cls.helper_table, cls.helpers_are
        )


def _describe_checked(values: Any, what: str) -> str:
    values = list(values)
    gone = sum(v is None for v in values)
    read = len(values) - gone
    tail = f"; {gone} namespace(s) gone with their pods" if gone else ""
    return f"{what} in the {read} namespace(s) read again{tail}"


def _first_port(kube: Kube, process: PodProcess) -> int | None:
    pod: Any = kube.core.read_namespaced_pod(process.pod, process.namespace, _request_timeout=10)
    for container in pod.spec.containers:
        for port in container.ports or []:
            if (port.protocol or "TCP") == "TCP":
                return int(port.container_port)
    return None


def api_service(kube: Kube) -> tuple[str, int]:
    """The ``kubernetes`` Service's ClusterIP and port, as this cluster serves them."""
    service: Any = kube.core.read_namespaced_service("kubernetes", "default", _request_timeout=10)
    ports = [p for p in service.spec.ports or [] if (p.protocol or "TCP") == "TCP"]
    if not service.spec.cluster_ip or not ports:
        raise SpecError("the kubernetes Service has no ClusterIP and TCP port to probe a partition against")
    return str(service.spec.cluster_ip), int(ports[0].port)


@dataclass(frozen=True)
class PartitionSpec:
    """Who is cut off from whom."""

    namespace: str
    """Namespace of side A."""
    selector: str
    """Side A: a label selector."""
    peer_selector: str | None = None
    """Side B: a label selector; None cuts side A off from everything."""
    peer_namespace: str | None = None
    """Namespace of side B (default: side A's)."""
    port: int | None = None
    """Cut only TCP traffic to this port (in both directions); None cuts all traffic."""
    count: int | None = None
    """How many of side A's matching pods to cut off (default: all of them)."""
    seed: int | None = None
    """Seed of the pick when ``count`` is given."""

    def __post_init__(self) -> None:
        check_selector(self.selector)
        if self.peer_selector is not None:
            check_selector(self.peer_selector, "peer selector")
        _check_port(self.port)
        _check_count(self.count)


@dataclass(frozen=True)
class _Probe:
    """A connection that must cross the cut: from a pod's namespace, or from a node."""

    shell: NodeShell
    """How the probe reaches the node it runs on."""
    ip: str
    port: int
    source: Netns | None
    """From inside this namespace; None: from ``node``'s own namespace."""
    node: str
    what: str
    counted: Netns
    """The namespace whose rules must drop the probe's packets (its source's, or the pod probed)."""

    def run(self) -> str:
        if self.source is not None:
            return probe_from_pod(self.shell, self.source, self.ip, self.port)
        return probe_from_node(self.shell, self.node, self.ip, self.port)


class Partition(_PodNetworkFault):
    kind = "partition"
    spec: PartitionSpec
    _a: list[PodProcess]
    _b: list[PodProcess]
    _probe: _Probe

    def plan(self) -> list[str]:
        spec = self.spec
        self._a = self._locate(spec.namespace, spec.selector, spec.count, spec.seed)
        self._b = []
        if spec.peer_selector:
            self._b = self._own_namespaces(self.live_pods(spec.peer_namespace or spec.namespace, spec.peer_selector))
            overlap = {p.pod for p in self._a} & {p.pod for p in self._b}
            if overlap and (spec.peer_namespace or spec.namespace) == spec.namespace:
                raise SpecError(f"pods {', '.join(sorted(overlap))} are on both sides of the partition")
        self._probe = self._open_probe()
        side_a = [p.pod for p in self._a]
        return side_a + [f"<-> {p.pod}" for p in self._b]

    def nodes(self) -> list[str]:
        return sorted({p.node for p in self._a + self._b})

    def _candidates(self) -> list[_Probe]:
        """Connections the cut must block, in order of preference."""
        spec = self.spec
        a = self._a[0]
        if self._b:
            b = self._b[0]
            candidates = []
            for src, dst in ((a, b), (b, a)):
                port = spec.port or _first_port(self.kube, dst)
                if port is not None:
                    candidates.append(
                        _Probe(
                            self.cluster.node_shell,
                            dst.ip,
                            port,
                            src.netns,
                            src.node,
                            f"{src.pod} -> {dst.pod}:{port}",
                            src.netns,
                        )
                    )
            return candidates
        ip, port = api_service(self.kube)
        if spec.port is None or spec.port == port:
            return [
                _Probe(
                    self.cluster.node_shell,
                    ip,
                    port,
                    a.netns,
                    a.node,
                    f"{a.pod} -> the kubernetes Service {ip}:{port}",
                    a.netns,
                )
            ]
        # Only one port is cut: probe it where it is served, the pod itself, from its node.
        return [
            _Probe(
                self.cluster.node_shell, a.ip, spec.port, None, a.node, f"node {a.node} -> {a.pod}:{spec.port}", a.netns
            )
        ]

    def _open_probe(self) -> _Probe:
        """The first candidate that connects before any rule is in place; none is a refusal."""
        tried = []
        for probe in self._candidates():
            state = probe.run()
            if state == "open":
                return probe
            tried.append(f"{probe.what} is {state}")
        why = "; ".join(tried) or "neither side declares a TCP port"
        raise SpecError(
            f"nothing to prove the partition against: {why} before any rule is in place; "
            "cut a port that answers (port=) or choose pods that talk"
        )

    def undo_data(self, targets: list[str]) -> dict[str, Any] | None:
        return self._undo(self._a + self._b)

    def inject(self, targets: list[str]) -> None:
        self._insert(self._rules())

    def _rules(self) -> dict[PodProcess, list[list[str]]]:
        port = ["-p", "tcp", "--dport", str(self.spec.port)] if self.spec.port else []
        if not self._b:
            cut = [["INPUT", "!", "-i", "lo", *port, "-j", "DROP"], ["OUTPUT", "!", "-o", "lo", *port, "-j", "DROP"]]
            return {a: cut for a in self._a}
        rules: dict[PodProcess, list[list[str]]] = {}
        for side, others in ((self._a, self._b), (self._b, self._a)):
            for proc in side:
                rules[proc] = [
                    rule
                    for other in others
                    for rule in (
                        ["INPUT", "-s", other.ip, *port, "-j", "DROP"],
                        ["OUTPUT", "-d", other.ip, *port, "-j", "DROP"],
                    )
                ]
        return rules

    def verify(self, targets: list[str], record: FaultRecord) -> str:
        record.effect_mono = self._in_place_mono
        probe = self._probe
        before = dropped(self.cluster.node_shell, [probe.counted], self.comment)[probe.counted]
        after = probe.run()
        if after != "blocked":
            raise FaultNotEffective(f"{probe.what} is {after} with the partition's rules in place")
        # Blocked by these rules, not by something else (a full listen backlog, a slow node): they dropped it.
        drops = dropped(self.cluster.node_shell, [probe.counted], self.comment)[probe.counted] - before
        if drops <= 0:
            raise FaultNotEffective(f"{probe.what} failed, but the partition's rules dropped none of its packets")
        side = "on both sides" if self._b else f"in {len(self._a)} pod(s)"
        return f"rules present {side}; {probe.what} open before, blocked after ({drops} packet(s) dropped by them)"


@dataclass(frozen=True)
class PacketLossSpec:
    """Random loss of packets arriving at the selected pods."""

    namespace: str
    selector: str
    percent: float
    """Share of incoming packets dropped, in (0, 100]."""
    port: int | None = None
    """Only TCP packets to this port; None: every packet but loopback."""
    count: int | None = None
    """How many of the matching pods (default: all of them)."""
    seed: int | None = None
    """Seed of the pick when ``count`` is given."""

    def __post_init__(self) -> None:
        check_selector(self.selector)
        if not 0 < self.percent <= 100:
            raise SpecError(f"percent must be in (0, 100], not {self.percent}")
        _check_port(self.port)
        _check_count(self.count)


MAX_LOSS_PROBES = 500
"""Most probe connections the packet-loss proof makes before it gives up."""


class PacketLoss(_PodNetworkFault):
    kind = "packet-loss"
    spec: PacketLossSpec
    _pods: list[PodProcess]

    def plan(self) -> list[str]:
        self._pods = self._locate(self.spec.namespace, self.spec.selector, self.spec.count, self.spec.seed)
        return [p.pod for p in self._pods]

    def undo_data(self, targets: list[str]) -> dict[str, Any] | None:
        return self._undo(self._pods)

    def inject(self, targets: list[str]) -> None:
        port = ["-p", "tcp", "--dport", str(self.spec.port)] if self.spec.port else []
        probability = f"{self.spec.percent / 100:.4f}"
        rule = ["INPUT", "!", "-i", "lo", *port, "-m", "statistic", "--mode", "random"]
        self._insert({p: [[*rule, "--probability", probability, "-j", "DROP"]] for p in self._pods})

    def verify(self, targets: list[str], record: FaultRecord) -> str:
        record.effect_mono = self._in_place_mono
        target = self._pods[0]
        # Any TCP port will do without a port filter: a SYN to a closed port crosses INPUT all the same.
        port = self.spec.port or _first_port(self.kube, target) or 9
        # Connections from the node until the rule has dropped something, reading its counter every
        # 5 attempts: about 10/percent attempts are expected, bounded by MAX_LOSS_PROBES.
        attempts = min(MAX_LOSS_PROBES, max(20, math.ceil(50 / (self.spec.percent / 100))))
        probe = tcp_snippet(target.ip, port, timeout=0.3)
        count = shlex.quote(dropped_snippet(self.comment))
        script = (
            f"count() {{ nsenter -t {target.pid} -n sh -c {count}; }}; d=0; i=0; "
            f"while [ $i -lt {attempts} ]; do i=$((i + 1)); ( {probe} ) >/dev/null 2>&1; "
            'if [ $((i % 5)) = 0 ]; then d=$(count) || exit 3; [ "$d" -gt 0 ] && break; fi; done; '
            'd=$(count) || exit 3; echo "dropped=$d attempts=$i"'
        )
        output = on_node(self.cluster.node_shell, target.node, script, timeout=attempts * 0.4 + 10)
        found = re.search(r"dropped=(\d+) attempts=(\d+)", output)
        if found is None:
            raise FaultNotEffective(f"the packet-loss probe from {target.node} gave no count: {output.strip()[-200:]}")
        lost, tried = int(found.group(1)), int(found.group(2))
        if lost == 0:
            raise FaultNotEffective(f"{tried} connection attempts to {target.pod}:{port}: no packet dropped")
        return (
            f"rules present in {len(self._pods)} pod(s); the loss rule dropped {lost} packets "
            f"while {tried} probe connections ran"
        )
