"""Network faults inside pods' network namespaces: partition, packet loss, latency.

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

Bandwidth and latency are queueing disciplines on the pod's ``eth0`` instead of
rules. A qdisc carries no comment, so each fault installs its root qdisc under
a handle derived from its id: undo deletes the root qdisc only while it still
bears that handle. A bandwidth limit proves itself by a measured transfer: the
pod sends a burst to a listener on its node and the node times its arrival.

Latency and jitter use the kernel's netem qdisc where it exists (tried first in
a throwaway namespace of the node). Where it does not (Docker Desktop, WSL2,
this project's own machines) a user-space delayer does the same job: an
NFQUEUE rule in the pod's namespace hands each outgoing packet to a python3
process there, which releases it after the delay (:mod:`chaoskit.agent.nfqdelay`).
Either way the delay is proven by timing TCP handshakes to the pod before and
during the fault.
"""

from __future__ import annotations

import hashlib
import math
import re
import shlex
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from chaoskit.adapters.kube import Kube
from chaoskit.adapters.nodes import NodeShell
from chaoskit.agent import actions
from chaoskit.cluster.base import Cluster
from chaoskit.errors import FaultNotEffective, FaultUndoFailed, FaultUnsupported, SafetyError, SpecError
from chaoskit.faults.base import Fault, FaultRecord, check_selector
from chaoskit.faults.netns import (
    COMMENT_PREFIX,
    SHOW_ROOT,
    Netns,
    PodProcess,
    comment_rules,
    connect_times,
    delete_qdisc_snippet,
    delete_rules,
    dropped,
    dropped_snippet,
    helpers_running,
    helpers_snippet,
    insert_snippet,
    locate_all,
    netem_available,
    on_node,
    parse_root_qdisc,
    probe_from_node,
    probe_from_pod,
    qdisc_handle,
    refuse_if_held,
    root_qdiscs,
    rules_in,
    run_everywhere,
    start_helper_snippet,
    steps_by_node,
    tcp_snippet,
    timed_send,
    write_helpers,
)


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


class _QdiscFault(_PodNetworkFault):
    """A root qdisc on the pods' eth0, under a handle that says it is this fault's."""

    qdisc: ClassVar[str]
    _pods: list[PodProcess]

    @property
    def handle(self) -> str:
        return qdisc_handle(self.fault_id)

    def plan(self) -> list[str]:
        self._pods = self._locate(self.spec.namespace, self.spec.selector, self.spec.count, self.spec.seed)
        return [p.pod for p in self._pods]

    def undo_data(self, targets: list[str]) -> dict[str, Any] | None:
        return {**self._undo(self._pods), "handle": self.handle}

    def _add(self, *parameters: str) -> None:
        """Add the qdisc and show it back in every pod: one exec per node, the nodes in parallel."""
        add = " ".join(["tc", "qdisc", "add", "dev", "eth0", "root", "handle", self.handle, *parameters])
        outputs = self._apply(
            {p: f"set -e; {add}; {SHOW_ROOT}" for p in self._pods}, f"adding the {self.qdisc} qdisc to"
        )
        for p, output in outputs.items():
            if parse_root_qdisc(output) != (self.qdisc, self.handle):
                raise FaultNotEffective(f"no {self.qdisc} qdisc {self.handle} on {p.netns}'s eth0")
        self._in_place_mono = time.monotonic()

    @classmethod
    def revert(cls, cluster: Cluster, kube: Kube, undo: dict[str, Any]) -> None:
        handle = str(undo["handle"])
        outcomes = run_everywhere(
            cluster.node_shell, [(ns, delete_qdisc_snippet(handle)) for ns in cls._namespaces(undo)]
        )
        failed = [f"{ns} (exit {o.code}: {o.output.strip()[-200:]})" for ns, o in outcomes.items() if o.code > 0]
        if failed:
            raise FaultUndoFailed(f"deleting the qdisc {handle} failed in {'; '.join(failed)}")

    @classmethod
    def agent_steps(cls, undo: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        return steps_by_node(cls._namespaces(undo), "delete-qdisc", handle=str(undo["handle"]))

    @classmethod
    def check_undone(cls, cluster: Cluster, kube: Kube, undo: dict[str, Any]) -> str:
        handle = str(undo["handle"])
        current = root_qdiscs(cluster.node_shell, cls._namespaces(undo))
        left = [str(ns) for ns, qdisc in current.items() if qdisc is not None and qdisc[1] == handle]
        if left:
            raise FaultUndoFailed(f"the root qdisc of eth0 still bears handle {handle} in {', '.join(left)}")
        return _describe_checked(current.values(), f"no root qdisc {handle}")


@dataclass(frozen=True)
class BandwidthSpec:
    """A limit on the rate at which the selected pods send (a token bucket on their eth0)."""

    namespace: str
    selector: str
    rate_kbit: int
    """The limit in kilobits per second (1000 bits)."""
    burst_bytes: int | None = None
    """Bytes that may pass at full speed before the limit applies (default: 1/50 s worth, at least 4 KiB)."""
    queue_ms: int = 200
    """How long a packet may wait in the bucket's queue before it is dropped."""
    count: int | None = None
    """How many of the matching pods (default: all of them)."""
    seed: int | None = None
    """Seed of the pick when ``count`` is given."""

    def __post_init__(self) -> None:
        check_selector(self.selector)
        if self.rate_kbit < 64:
            raise SpecError(f"rate_kbit must be at least 64, not {self.rate_kbit}")
        if self.burst_bytes is not None and self.burst_bytes < MTU:
            raise SpecError(f"burst_bytes must be at least one packet ({MTU}), not {self.burst_bytes}")
        if self.queue_ms <= 0:
            raise SpecError(f"queue_ms must be positive, not {self.queue_ms}")
        _check_count(self.count)

    @property
    def rate_bytes(self) -> float:
        return self.rate_kbit * 1000 / 8

    @property
    def burst(self) -> int:
        return self.burst_bytes or max(4096, math.ceil(self.rate_bytes / 50))


MTU = 1500
PROBE_SECONDS = 0.5
"""How long the bandwidth probe's transfer should take at the limit."""
PROBE_TOLERANCE = 1.25
"""The measured rate may exceed the limit by this factor (timing and accounting slack) and still prove it."""


class Bandwidth(_QdiscFault):
    kind = "bandwidth"
    qdisc = "tbf"
    spec: BandwidthSpec

    def inject(self, targets: list[str]) -> None:
        spec = self.spec
        self._add("tbf", "rate", f"{spec.rate_kbit}kbit", "burst", str(spec.burst), "latency", f"{spec.queue_ms}ms")

    def verify(self, targets: list[str], record: FaultRecord) -> str:
        record.effect_mono = self._in_place_mono
        spec = self.spec
        size = max(math.ceil(spec.rate_bytes * PROBE_SECONDS), 2 * spec.burst)
        target = self._pods[0]
        seconds = timed_send(self.cluster.node_shell, target, size, timeout=10 * PROBE_SECONDS + size / spec.rate_bytes)
        # The first `burst` bytes pass unshaped; the rest must arrive no faster than the limit.
        measured = (size - spec.burst) / seconds
        kbit = measured * 8 / 1000
        if measured > spec.rate_bytes * PROBE_TOLERANCE:
            raise FaultNotEffective(
                f"{target.pod} sent {size} bytes at {kbit:.0f} kbit/s, over the {spec.rate_kbit} kbit/s limit"
            )
        # Far under the limit: the probe shared the bucket with the pod's own traffic (a busy server).
        shared = " (sharing the limit with the pod's own traffic)" if measured < spec.rate_bytes / 2 else ""
        return (
            f"tbf {spec.rate_kbit} kbit/s on eth0 of {', '.join(targets)}; {target.pod} measured at "
            f"{kbit:.0f} kbit/s sending {size} bytes in {seconds:.2f} s{shared}"
        )


LATENCY_ENGINES = ("auto", "netem", "nfqueue")
"""How a latency fault delays: the kernel's netem qdisc, chaoskit's user-space NFQUEUE delayer, or
whichever the node has (netem first)."""


@dataclass(frozen=True)
class LatencySpec:
    """Delay (and jitter) on the selected pods' traffic: every round trip to or from them takes ``delay_ms``
    longer (netem delays the packets leaving them, the user-space delayer those arriving)."""

    namespace: str
    selector: str
    delay_ms: int
    jitter_ms: int = 0
    """Each packet's delay varies by up to this much either way (uniformly)."""
    count: int | None = None
    """How many of the matching pods (default: all of them)."""
    seed: int | None = None
    """Seed of the pick when ``count`` is given."""
    engine: str = "auto"
    """``netem`` (the kernel's qdisc), ``nfqueue`` (a user-space delayer fed by an NFQUEUE rule, for
    kernels without netem: Docker Desktop, WSL2, this project's machines), or ``auto``: netem where the
    kernel has it, else nfqueue."""

    def __post_init__(self) -> None:
        check_selector(self.selector)
        _check_count(self.count)
        if self.delay_ms <= 0:
            raise SpecError(f"delay_ms must be positive, not {self.delay_ms}")
        if not 0 <= self.jitter_ms <= self.delay_ms:
            raise SpecError(f"jitter_ms must be in 0-{self.delay_ms}, not {self.jitter_ms}")
        if self.engine not in LATENCY_ENGINES:
            raise SpecError(f"engine must be one of {', '.join(LATENCY_ENGINES)}, not {self.engine!r}")


DELAYER = "nfqdelay.py"
"""The user-space delayer's module in :mod:`chaoskit.agent`, copied to the node as it is."""
DELAYER_TABLE = "mangle"
"""The table of the delayer's NFQUEUE rule: chaoskit's filter rules (a partition) still apply after the
delay, as a queued packet that is accepted skips only the rest of its own table.

The rule queues the packets *arriving* at the pod (``PREROUTING``), where netem delays those leaving it:
every round trip to or from the pod grows by the delay all the same. Holding the pod's outgoing packets
instead would throttle its own TCP senders, which count packets held in a queue against their socket (TCP
small queues): a bulk transfer fell to 2 Mbit/s at 20 ms (benchmarks/latency_bench.py --egress)."""
LATENCY_ROUNDS = 3
"""Rounds of handshakes the latency proof may take before it calls the delay not in place."""
LATENCY_PROBES = 9
"""Handshakes timed before and during the fault; the medians are compared."""
LATENCY_TOLERANCE = 0.2
"""The measured added delay may differ from the configured one by this share (plus 1 ms and half the jitter)."""


def start_delayer_snippet(fault_id: str, comment: str, delay_ms: int, jitter_ms: int) -> str:
    """Shell, inside a pod's namespace: refuse a second delayed fault there, start the delayer, wait until
    it has bound its queue, then insert the NFQUEUE rule (with ``--queue-bypass``: should the delayer die,
    packets pass undelayed) and list the table."""
    queue = queue_number(fault_id)
    start = start_helper_snippet(
        DELAYER, [f"--queue={queue}", f"--delay-ms={delay_ms}", f"--jitter-ms={jitter_ms}"], comment
    )
    rule = ["PREROUTING", "!", "-i", "lo", "-j", "NFQUEUE", "--queue-num", str(queue), "--queue-bypass"]
    return (
        refuse_if_held(DELAYER_TABLE, ".* NFQUEUE ", "another latency fault already delays this pod")
        + f"{start}; "
        + insert_snippet([rule], comment, DELAYER_TABLE)
    )


def queue_number(fault_id: str) -> int:
    """The NFQUEUE a fault's delayer reads, derived from its id (queues are per network namespace)."""
    return 1 + int(hashlib.sha256(fault_id.encode()).hexdigest()[:8], 16) % 65000


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


class Latency(_QdiscFault):
    """Delay the pods' traffic: netem where the kernel has it, else the user-space delayer.

    Both are proven the same way, by measurement: TCP handshakes from the pod's
    node to the pod are timed before the fault and with it in place, and the
    difference of the medians must match the delay (within 20 %, 1 ms and half
    the jitter). The delayer (:mod:`chaoskit.agent.nfqdelay`) is a python3
    process in the pod's namespace reading an NFQUEUE that a ``mangle`` rule
    feeds with the packets arriving at the pod; it delays established
    connections as much as new ones. Its undo
    deletes the rule and ends the process, and is proven by both being gone.
    """

    kind = "latency"
    qdisc = "netem"
    spec: LatencySpec
    _engine: str
    _probe: tuple[str, int]
    _before: list[float]

    def plan(self) -> list[str]:
        targets = super().plan()
        node = self._pods[0].node
        self._engine = self.spec.engine
        if self._engine in ("auto", "netem"):
            available, detail = netem_available(self.cluster.node_shell, node)
            if available:
                self._engine = "netem"
            elif self._engine == "netem":
                raise FaultUnsupported(
                    f"latency with engine netem needs the kernel's netem qdisc, which this kernel lacks ({detail}); "
                    "engine nfqueue (or auto) delays in user space instead; nothing was injected"
                )
            else:
                self._engine = "nfqueue"
        if self._engine == "nfqueue":
            write_helpers(
                self.cluster.node_shell, DELAYER, sorted({p.node for p in self._pods}), "latency without netem"
            )
        target = self._pods[0]
        self._probe = (target.ip, _first_port(self.kube, target) or 9)
        self._before = connect_times(self.cluster.node_shell, target.node, *self._probe, count=LATENCY_PROBES)
        return targets

    def undo_data(self, targets: list[str]) -> dict[str, Any] | None:
        if self._engine == "netem":
            return {**self._undo(self._pods), "handle": self.handle, "engine": "netem"}
        return {**self._undo(self._pods), "engine": "nfqueue", "table": DELAYER_TABLE}

    def inject(self, targets: list[str]) -> None:
        spec = self.spec
        if self._engine == "netem":
            jitter = [f"{spec.jitter_ms}ms"] if spec.jitter_ms else []
            self._add("netem", "delay", f"{spec.delay_ms}ms", *jitter)
            return
        snippet = start_delayer_snippet(self.fault_id, self.comment, spec.delay_ms, spec.jitter_ms)
        outputs = self._apply({p: snippet for p in self._pods}, "starting the delayer in")
        for p, output in outputs.items():
            if len(comment_rules(output, self.comment)) != 1:
                raise FaultNotEffective(f"latency: no NFQUEUE rule {self.comment} in {p.netns} after inserting it")
        self._in_place_mono = time.monotonic()

    def verify(self, targets: list[str], record: FaultRecord) -> str:
        record.effect_mono = self._in_place_mono
        spec = self.spec
        target = self._pods[0]
        before = _median(self._before)
        slack = LATENCY_TOLERANCE * spec.delay_ms + 1 + spec.jitter_ms / 2
        where = f"{target.pod}:{self._probe[1]} from {target.node}"
        seen = []
        # Up to LATENCY_ROUNDS rounds of handshakes, the first within the tolerance passes: a node busy for a
        # moment (its CPUs taken, the delayer not scheduled in time) must not fail a delay that is in place.
        for _ in range(LATENCY_ROUNDS):
            now = _median(connect_times(self.cluster.node_shell, target.node, *self._probe, count=LATENCY_PROBES))
            seen.append(now)
            if abs(now - before - spec.delay_ms) <= slack:
                break
        else:
            rounds = ", ".join(f"{v:.2f}" for v in seen)
            raise FaultNotEffective(
                f"latency {spec.delay_ms} ms: TCP handshakes to {where} took {before:.2f} ms before and "
                f"{rounds} ms with the fault (medians of {LATENCY_PROBES}, {len(seen)} rounds), not "
                f"{spec.delay_ms} ms more within {slack:.0f} ms"
            )
        added = now - before
        how = "netem on eth0" if self._engine == "netem" else "the user-space delayer (NFQUEUE)"
        return (
            f"{spec.delay_ms} ms delay by {how} in {len(targets)} pod(s); TCP handshakes to {where}: "
            f"{before:.2f} ms before, {now:.2f} ms during (median of {LATENCY_PROBES}), {added:.2f} ms added"
        )

    @classmethod
    def revert(cls, cluster: Cluster, kube: Kube, undo: dict[str, Any]) -> None:
        if undo.get("engine", "netem") == "netem":
            return super().revert(cluster, kube, undo)
        revert_rules_and_helpers(
            cluster.node_shell, cls._namespaces(undo), str(undo["comment"]), DELAYER_TABLE, "delayers"
        )

    @classmethod
    def agent_steps(cls, undo: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        if undo.get("engine", "netem") == "netem":
            return super().agent_steps(undo)
        return agent_steps_rules_and_helpers(cls._namespaces(undo), str(undo["comment"]), DELAYER_TABLE)

    @classmethod
    def check_undone(cls, cluster: Cluster, kube: Kube, undo: dict[str, Any]) -> str:
        if undo.get("engine", "netem") == "netem":
            return super().check_undone(cluster, kube, undo)
        return check_rules_and_helpers(
            cluster.node_shell, cls._namespaces(undo), str(undo["comment"]), DELAYER_TABLE, "delayers"
        )
