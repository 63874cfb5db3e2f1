"""Node failure: a kind node's container stopped or paused, or any node's kubelet stopped, for real.

A kind node is a Docker container, so stopping it is a real machine going
away (kubelet, containerd and every pod on it stop) and pausing it is a real
hang (processes frozen, TCP connections open but silent). The proof is the
container's state and, unless told not to wait, the node turning NotReady in
the API (after the controller's grace period: 40 s by default up to 1.31, 50 s since 1.32).

Undo starts or unpauses the container and waits until the node's kubelet has
renewed its Lease since then (the kubelet runs again: it renews every 10 s or
so, while the Ready condition itself may be posted only every few minutes when
nothing changed) and the node is Ready; after a stop, Ready as posted since the
restart, and its pod-network agent running again. The proof of the undo reads all of that once more.

Off kind, mode ``crash`` has the injector agent on the node do what a power
loss does to the node's processes: SIGKILL to the kubelet (whose unit is then
stopped, so systemd does not restart it), to every process of every pod there
but the agent's own, and to those pods' runtime shims, with no SIGTERM to any.
It cannot take the kernel, containerd or the node's network down with them: the
node's IP still answers pings and its sockets are reset, not silent (a real
power loss leaves peers' connections hanging until their timeouts). The undo
starts the kubelet, which starts every pod of the node again.

On any cluster, mode ``kubelet`` has the injector agent on the node stop its
kubelet (``systemctl stop kubelet`` in the host's namespaces): the control
plane loses the node (NotReady after its grace period) while its containers run
on unmanaged, as when a kubelet crashes or a node is cut off from the API
server. The runner asks through the fault's object in the cluster
(:mod:`.objects`), since the kubelet's stop would break an exec that asked for
it; the agent restarts the kubelet when asked, or by itself when the runner's
owner Lease expires.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from chaoskit.adapters import docker
from chaoskit.adapters.kube import CONTROL_PLANE_LABELS, ZONE_LABEL, Kube
from chaoskit.adapters.nodes import AgentShell
from chaoskit.adapters.shell import say
from chaoskit.adapters.status import lease_renewed, node_ready, pod_ready
from chaoskit.agent import actions
from chaoskit.cluster.base import Cluster
from chaoskit.errors import ClusterError, FaultNotEffective, FaultUndoFailed, SafetyError, SpecError
from chaoskit.faults import objects
from chaoskit.faults.base import Fault, FaultRecord

MODES = ("stop", "crash", "pause", "kubelet")
DOCKER_MODES = ("stop", "crash", "pause")
AGENT_TIMEOUT = 60.0
"""How long the injector on the node may take to act on a request."""
PAUSE_ATTEMPTS = 3
"""Tries of a pause whose freezer gives up (see NodeFailure.inject)."""
NODE_LEASES = "kube-node-lease"
LEASE_FRESH_S = 40.0
"""A kubelet whose lease is older than this (the node-monitor grace period) is not known to run."""


def by_agent(undo: dict[str, Any]) -> bool:
    """A node fault's undo data says it went through the injector agent (mode kubelet, or crash off kind)."""
    return undo.get("mode") == "kubelet" or bool(undo.get("agent"))


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


def await_not_ready(fault: Fault, record: FaultRecord, node: str, what: str, timeout: float) -> str:
    """Wait until the API marks ``node`` NotReady (after the node-monitor grace period): the view from outside
    of a node that failed or was cut off, which ``what`` says; the proof."""
    fault.await_effect(
        record,
        fault.kube.core.list_node,
        lambda nodes: node in nodes and not node_ready(nodes[node]),
        timeout,
        f"node {node} NotReady after: {what}",
    )
    return f"{what}; node NotReady"


@dataclass(frozen=True)
class NodeFailureSpec:
    """Which node fails and how."""

    node: str
    """The node's name (on kind, also its container's name)."""
    mode: str = "stop"
    """``stop``: a graceful shutdown (``docker stop``: SIGTERM to the node's init, which stops the kubelet and
    every container cleanly, SIGKILL after 10 s), kind only; ``crash``: the power cut, nothing shut down (on
    kind, ``docker kill``: SIGKILL to the node's init, so every process on it dies at once; on any other
    cluster, the injector agent SIGKILLs the kubelet, every pod process on the node but its own, and their
    runtime shims, while the kernel, containerd and the network stay up); ``pause``: the machine hangs (its
    processes frozen), kind only. ``kubelet``: the node's kubelet stopped by the injector agent (the control
    plane loses the node, its pods run on), any cluster."""
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
    hits_nodes = True
    node_wide = True
    spec: NodeFailureSpec
    agent_said = ""
    """What the injector agent marked it did (mode crash through the agent)."""

    def nodes(self) -> list[str]:
        return [self.spec.node]

    @property
    def by_agent(self) -> bool:
        """Through the injector agent on the node: mode kubelet anywhere, and mode crash off kind (on kind,
        the node's container is killed instead)."""
        return self.spec.mode == "kubelet" or (self.spec.mode == "crash" and not self.cluster.is_kind)

    def plan(self) -> list[str]:
        spec = self.spec
        nodes = {n.metadata.name: n for n in self.kube.nodes()}
        if spec.node not in nodes:
            raise SpecError(f"no node named {spec.node!r}; nodes: {', '.join(sorted(nodes))}")
        labels = nodes[spec.node].metadata.labels or {}
        if not self.safety.allow_control_plane and any(k in labels for k in CONTROL_PLANE_LABELS):
            raise SafetyError(
                f"{spec.node} is a control-plane node: refused unless allowed with "
                f"{self.safety.option('allow-control-plane')}"
            )
        self.safety.check_share(1, len(eligible_nodes(nodes.values(), self.safety)), "nodes it may touch")
        if self.by_agent:
            if AgentShell(self.kube).pod_on(spec.node, refresh=True) is None:
                raise SpecError(
                    f"mode {spec.mode} needs the injector agent on {spec.node} here, and it has none running: "
                    "install it with 'chaoskit agent install'"
                )
            return [spec.node]
        if not self.cluster.is_kind:
            raise SpecError(
                f"mode {spec.mode} stops or pauses a kind node's container, and {self.cluster.name} is not kind: "
                "use mode crash or kubelet (with the injector agent)"
            )
        if docker.state(spec.node) != "running":
            raise SpecError(f"node container {spec.node} is not running; fix the cluster first")
        return [spec.node]

    def undo_data(self, targets: list[str]) -> dict[str, Any] | None:
        undo: dict[str, Any] = {"node": targets[0], "mode": self.spec.mode, "timeout": self.spec.timeout}
        if self.by_agent:
            undo["fault_id"] = self.fault_id
            undo["agent"] = True
        return undo

    @classmethod
    def agent_steps(cls, undo: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        return {str(undo["node"]): [actions.step("start-kubelet")]} if by_agent(undo) else {}

    def inject(self, targets: list[str]) -> None:
        if self.by_agent:
            op = "crash-node" if self.spec.mode == "crash" else "stop-kubelet"
            objects.ask_inject(self.kube, self.fault_id, targets[0], [actions.step(op)])
            mark = objects.await_mark(self.kube, self.fault_id, targets[0], "injected", AGENT_TIMEOUT)
            steps = [str(done) for done in mark.get("steps", [])]
            self.agent_said = steps[-1].split(": ", 1)[-1] if steps else str(mark.get("why", ""))
            return
        if self.spec.mode == "stop":
            docker.stop(targets[0], grace=10)
            return
        if self.spec.mode == "crash":
            docker.kill(targets[0])
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
        if self.spec.mode == "kubelet":
            # The agent's mark says the kubelet is inactive by systemd's own account; the API's NotReady,
            # after the grace period, is the view from outside.
            what = f"kubelet of {node} stopped (systemd: inactive)"
        elif self.by_agent:
            what = f"node {node} crashed by its injector agent: {self.agent_said}"
        else:
            want = "paused" if self.spec.mode == "pause" else "exited"
            found = docker.inspect(node)
            if found.state != want:
                raise FaultNotEffective(f"node container {node} is {found.state}, not {want}")
            what = f"node container {node} {want}"
            if self.spec.mode == "crash":
                if found.exit_code != 137:  # 128 + 9: its init ended by SIGKILL, nothing shut down
                    raise FaultNotEffective(f"node container {node} exited {found.exit_code}, not 137 (SIGKILL)")
                what += " by SIGKILL to its init (exit 137: nothing shut down)"
            elif self.spec.mode == "stop":
                what += f" by a graceful shutdown (exit {found.exit_code})"
        record.effect_mono = time.monotonic()
        record.deaths[node] = what  # a zone's members share their zone record's dict
        if not self.spec.wait_not_ready:
            return what
        return await_not_ready(self, record, node, what, self.spec.timeout)

    @classmethod
    def _restart_kubelet(cls, cluster: Cluster, kube: Kube, undo: dict[str, Any]) -> float:
        """Have the node's injector start the kubelet again (through the fault's object, recreated if it is
        gone); return the Unix time from which the kubelet's signs of life count."""
        node, fault_id = str(undo["node"]), str(undo["fault_id"])
        if objects.read(kube, fault_id) is None:
            objects.record(cluster, kube, fault_id, cls.kind, undo, cls.agent_steps(undo))
        objects.ask_undo(kube, fault_id)
        mark = objects.await_mark(kube, fault_id, node, "undone", AGENT_TIMEOUT)
        say(f"node {node}: the injector started its kubelet ({mark.get('why')})")
        # By the node's own clock, as the kubelet's lease and heartbeats are: this machine's may differ.
        return float(mark.get("began", time.time())) - 1

    @classmethod
    def revert(cls, cluster: Cluster, kube: Kube, undo: dict[str, Any]) -> None:
        node = str(undo["node"])
        timeout = float(undo.get("timeout", 120.0)) + 60
        if by_agent(undo):
            since = cls._restart_kubelet(cluster, kube, undo)
            # After a crash every pod of the node starts afresh: its pod-network agent too.
            cls.await_back(cluster, kube, node, since, since if undo.get("mode") == "crash" else None, timeout)
            return
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
        cls.await_back(cluster, kube, node, since, pods_since, timeout)

    @classmethod
    def await_back(
        cls, cluster: Cluster, kube: Kube, node: str, since: float, pods_since: float | None, timeout: float
    ) -> None:
        """Wait for the node's kubelet to renew its lease after ``since``, the node to be Ready, and (air-gapped
        clusters) its pod-network agent to be ready (since ``pods_since``, after a restart)."""
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
        kubelet_mode = by_agent(undo)
        state = "running" if kubelet_mode else docker.state(node)
        if state != "running":
            raise FaultUndoFailed(f"node container {node} is {state}, not running")
        current: Any = kube.core.read_node(node, _request_timeout=10)
        if not node_ready(current):
            raise FaultUndoFailed(f"node {node} is not Ready")
        lease: Any = kube.coordination.read_namespaced_lease(node, NODE_LEASES, _request_timeout=10)
        if not lease_renewed(lease, time.time() - LEASE_FRESH_S):
            raise FaultUndoFailed(f"the kubelet of {node} has not renewed its lease in the last {LEASE_FRESH_S:g} s")
        where = f"kubelet of {node} started by the injector" if kubelet_mode else f"node container {node} running"
        return f"{where}; node {node} Ready; its kubelet renewed its lease"

    @classmethod
    def moot(cls, cluster: Cluster, kube: Kube, undo: dict[str, Any]) -> str | None:
        node = str(undo["node"])
        if by_agent(undo):
            if node not in {n.metadata.name for n in kube.nodes()}:
                return f"node {node} no longer exists"
            return None
        if docker.state(node) == "missing":
            # This machine's Docker does not have it: gone with its cluster, unless the cluster still lists the
            # node (a kind cluster of another machine, cleaned up from here): then it is not ours to settle.
            try:
                listed = {n.metadata.name for n in kube.nodes()}
            except Exception:
                listed = set()
            if node in listed:
                return None
            return f"node container {node} no longer exists (its cluster was deleted or recreated)"
        return None


@dataclass(frozen=True)
class ZoneFailureSpec:
    """Which zone fails (every node labelled with it, at once) and how."""

    zone: str
    """The value of the nodes' ``topology.kubernetes.io/zone`` label (kind clusters from ``chaoskit cluster up``
    have their control plane in ``zone-a`` and their workers in ``zone-b``, ``zone-c``, ``zone-b``, ...)."""
    mode: str = "stop"
    """As for a node failure: ``stop``, ``pause`` (kind), ``crash`` (kind, or the injector agent elsewhere) or
    ``kubelet`` (the injector agent)."""
    wait_not_ready: bool = True
    """Prove the failure by waiting for the API to mark every node of the zone NotReady."""
    timeout: float = 120.0

    def __post_init__(self) -> None:
        if not self.zone:
            raise SpecError("zone failure needs a zone")
        if self.mode not in MODES:
            raise SpecError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.timeout <= 0:
            raise SpecError(f"timeout must be positive, not {self.timeout}")


class ZoneFailure(Fault):
    """Every node of a zone fails at once: one node failure per node, injected and undone in parallel.

    The blast-radius cap counts the zone's nodes among those a node fault may
    touch; a zone that holds a control-plane node is refused unless that is
    allowed. Each node's failure and undo is a :class:`NodeFailure`'s, proven
    the same way (its container's state, or its kubelet stopped; NotReady; and
    back: a renewed lease, Ready).
    """

    kind = "zone-failure"
    hits_nodes = True
    node_wide = True
    spec: ZoneFailureSpec
    _members: list[NodeFailure]

    def nodes(self) -> list[str]:
        return [m.spec.node for m in self._members]

    def plan(self) -> list[str]:
        spec = self.spec
        nodes = list(self.kube.nodes())
        zones = sorted(
            {str((n.metadata.labels or {})[ZONE_LABEL]) for n in nodes if ZONE_LABEL in (n.metadata.labels or {})}
        )
        members = [n for n in nodes if (n.metadata.labels or {}).get(ZONE_LABEL) == spec.zone]
        if not members:
            raise SpecError(
                f"no node is in zone {spec.zone!r} (label {ZONE_LABEL}); zones here: {', '.join(zones) or 'none'}"
            )
        names = sorted(n.metadata.name for n in members)
        control = [
            n.metadata.name for n in members if any(k in (n.metadata.labels or {}) for k in CONTROL_PLANE_LABELS)
        ]
        if control and not self.safety.allow_control_plane:
            raise SafetyError(
                f"zone {spec.zone} holds control-plane node(s) {', '.join(control)}: refused unless allowed with "
                f"{self.safety.option('allow-control-plane')}"
            )
        self.safety.check_share(len(names), len(eligible_nodes(nodes, self.safety)), f"nodes (zone {spec.zone})")
        self._members = [self._member(name) for name in names]
        for member in self._members:
            member.plan()
        return names

    def _member(self, node: str) -> NodeFailure:
        spec = NodeFailureSpec(node, self.spec.mode, self.spec.wait_not_ready, self.spec.timeout)
        member = NodeFailure(self.cluster, self.kube, spec, safety=self.safety)
        member.fault_id = self.fault_id  # kubelet mode: the agents read the requests from this fault's record
        return member

    def undo_data(self, targets: list[str]) -> dict[str, Any] | None:
        return {"zone": self.spec.zone, "members": [m.undo_data([m.spec.node]) for m in self._members]}

    @classmethod
    def agent_steps(cls, undo: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        steps: dict[str, list[dict[str, Any]]] = {}
        for member in undo["members"]:
            steps.update(NodeFailure.agent_steps(member))
        return steps

    def inject(self, targets: list[str]) -> None:
        with ThreadPoolExecutor(max_workers=len(self._members)) as pool:
            for done in [pool.submit(m.inject, [m.spec.node]) for m in self._members]:
                done.result()

    def verify(self, targets: list[str], record: FaultRecord) -> str:
        with ThreadPoolExecutor(max_workers=len(self._members)) as pool:
            futures = [pool.submit(m.verify, [m.spec.node], replace(record)) for m in self._members]
            proofs = [f.result() for f in futures]
        record.effect_mono = time.monotonic()
        return f"zone {self.spec.zone} down: " + "; ".join(proofs)

    @classmethod
    def _each(cls, undo: dict[str, Any], work: Any) -> list[Any]:
        members = list(undo["members"])
        with ThreadPoolExecutor(max_workers=max(1, len(members))) as pool:
            return [f.result() for f in [pool.submit(work, m) for m in members]]

    @classmethod
    def revert(cls, cluster: Cluster, kube: Kube, undo: dict[str, Any]) -> None:
        cls._each(undo, lambda m: NodeFailure.revert(cluster, kube, m))

    @classmethod
    def check_undone(cls, cluster: Cluster, kube: Kube, undo: dict[str, Any]) -> str:
        return f"zone {undo['zone']} back: " + "; ".join(
            cls._each(undo, lambda m: NodeFailure.check_undone(cluster, kube, m))
        )

    @classmethod
    def moot(cls, cluster: Cluster, kube: Kube, undo: dict[str, Any]) -> str | None:
        reasons = [NodeFailure.moot(cluster, kube, m) for m in undo["members"]]
        return "; ".join(r for r in reasons if r) if all(reasons) else None
