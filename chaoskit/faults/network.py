"""Network faults inside pods' network namespaces: partition, packet loss, latency.

Rules are added from the pod's kind node (see :mod:`.netns`) with the node's
iptables, each carrying the comment ``chaoskit:<fault id>``: that comment is
how undo, and the sweeper after a killed run, find exactly these rules and
nothing else. A pod that restarts gets a fresh namespace without them.

Proof of effect: the rules are present in every target namespace, and a probe
shows the traffic really is affected (a TCP connection across the partition
fails; dropped packets counted by the loss rule).

Bandwidth and latency are queueing disciplines on the pod's ``eth0`` instead of
rules. A qdisc carries no comment, so each fault installs its root qdisc under
a handle derived from its id: undo deletes the root qdisc only while it still
bears that handle. A bandwidth limit proves itself by a measured transfer: the
pod sends a burst to a listener on its node and the node times its arrival.

Latency and jitter need the kernel's netem qdisc. Whether it exists is tried
first in a throwaway namespace of the node; where it does not (this project's
own machines), the fault raises :class:`FaultUnsupported` before anything is
injected, and the pytest plugin turns that into a skip with the reason.
"""

from __future__ import annotations

import math
import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from chaoskit.adapters import docker
from chaoskit.adapters.kube import Kube
from chaoskit.cluster.base import Cluster
from chaoskit.errors import FaultNotEffective, FaultUnsupported, SpecError
from chaoskit.faults.base import Fault, FaultRecord, check_selector
from chaoskit.faults.netns import (
    COMMENT_PREFIX,
    PodProcess,
    delete_rules,
    in_netns,
    locate,
    netem_available,
    pid_alive,
    qdisc_handle,
    root_qdisc,
    rules_with,
    tcp_blocked,
    timed_send,
)

API_SERVICE = ("10.96.0.1", 443)
"""The kubernetes Service every kubeadm cluster has: the probe target of a partition from everything."""


def _check_port(port: int | None) -> None:
    if port is not None and not 1 <= port <= 65535:
        raise SpecError(f"port must be in 1-65535, not {port}")


class _PodNetworkFault(Fault):
    """Shared parts: locating the pods, recording where the rules are, undoing them."""

    kind_only = "enters pods' network namespaces from their kind node"

    def _locate(self, namespace: str, selector: str) -> list[PodProcess]:
        return [locate(p) for p in self.live_pods(namespace, selector)]

    @property
    def comment(self) -> str:
        return f"{COMMENT_PREFIX}{self.fault_id}"

    def _undo(self, processes: list[PodProcess]) -> dict[str, Any]:
        return {"comment": self.comment, "namespaces": [[p.node, p.pid] for p in processes]}

    def _insert(self, process: PodProcess, rules: list[list[str]]) -> None:
        """Insert rules into one namespace with a single ``docker exec`` (one per rule costs ~0.1 s each)."""
        commands = [
            shlex.join(["iptables", "-w", "-I", *rule, "-m", "comment", "--comment", self.comment]) for rule in rules
        ]
        in_netns(process.node, process.pid, "sh", "-ec", "; ".join(commands))

    def _require_rules(self, processes: list[PodProcess], record: FaultRecord) -> None:
        for p in processes:
            if not rules_with(p.node, p.pid, self.comment):
                raise FaultNotEffective(f"no {self.kind} rule found in the network namespace of {p.pod}")
        # The fault takes effect when its rules are in place; the probe that follows confirms it.
        record.effect_mono = time.monotonic()

    @classmethod
    def revert(cls, cluster: Cluster, kube: Kube, undo: dict[str, Any]) -> None:
        for node, pid in _live_namespaces(undo):
            delete_rules(node, pid, str(undo["comment"]))


def _live_namespaces(undo: dict[str, Any]) -> Iterator[tuple[str, int]]:
    """The recorded (node, pid) namespaces that still exist: a stopped node or a restarted pod took
    its namespace, and the fault with it."""
    for node, pid in undo["namespaces"]:
        if docker.inspect(node).state == "running" and pid_alive(node, int(pid)):
            yield node, int(pid)


def _first_port(kube: Kube, process: PodProcess) -> int | None:
    pod: Any = kube.core.read_namespaced_pod(process.pod, process.namespace)
    for container in pod.spec.containers:
        for port in container.ports or []:
            if (port.protocol or "TCP") == "TCP":
                return int(port.container_port)
    return None


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

    def __post_init__(self) -> None:
        check_selector(self.selector)
        if self.peer_selector is not None:
            check_selector(self.peer_selector, "peer selector")
        _check_port(self.port)


class Partition(_PodNetworkFault):
    kind = "network-partition"
    spec: PartitionSpec
    _a: list[PodProcess]
    _b: list[PodProcess]

    def plan(self) -> list[str]:
        spec = self.spec
        self._a = self._locate(spec.namespace, spec.selector)
        self._b = []
        if spec.peer_selector:
            self._b = self._locate(spec.peer_namespace or spec.namespace, spec.peer_selector)
            overlap = {p.pod for p in self._a} & {p.pod for p in self._b}
            if overlap and (spec.peer_namespace or spec.namespace) == spec.namespace:
                raise SpecError(f"pods {', '.join(sorted(overlap))} are on both sides of the partition")
        side_a = [p.pod for p in self._a]
        return side_a + [f"<-> {p.pod}" for p in self._b]

    def undo_data(self, targets: list[str]) -> dict[str, Any] | None:
        return self._undo(self._a + self._b)

    def inject(self, targets: list[str]) -> None:
        port = ["-p", "tcp", "--dport", str(self.spec.port)] if self.spec.port else []
        if not self._b:
            for a in self._a:
                self._insert(
                    a,
                    [["INPUT", "!", "-i", "lo", *port, "-j", "DROP"], ["OUTPUT", "!", "-o", "lo", *port, "-j", "DROP"]],
                )
            return
        for side, others in ((self._a, self._b), (self._b, self._a)):
            for proc in side:
                rules = []
                for other in others:
                    rules.append(["INPUT", "-s", other.ip, *port, "-j", "DROP"])
                    rules.append(["OUTPUT", "-d", other.ip, *port, "-j", "DROP"])
                self._insert(proc, rules)

    def verify(self, targets: list[str], record: FaultRecord) -> str:
        self._require_rules(self._a + self._b, record)
        a = self._a[0]
        if self._b:
            b = self._b[0]
            port = self.spec.port or _first_port(self.kube, b)
            if port is None:
                return "rules present on both sides (side B declares no TCP port to probe)"
            if not tcp_blocked(a.node, a.pid, b.ip, port):
                raise FaultNotEffective(f"{a.pod} still reaches {b.pod} at {b.ip}:{port}")
            return f"rules present on both sides; {a.pod} -> {b.pod}:{port} blocked"
        ip, port = API_SERVICE
        if self.spec.port:
            port = self.spec.port
        if not tcp_blocked(a.node, a.pid, ip, port):
            raise FaultNotEffective(f"{a.pod} still reaches {ip}:{port}")
        return f"rules present; {a.pod} -> {ip}:{port} blocked"


@dataclass(frozen=True)
class PacketLossSpec:
    """Random loss of packets arriving at the selected pods."""

    namespace: str
    selector: str
    percent: float
    """Share of incoming packets dropped, in (0, 100]."""
    port: int | None = None
    """Only TCP packets to this port; None: every packet but loopback."""

    def __post_init__(self) -> None:
        check_selector(self.selector)
        if not 0 < self.percent <= 100:
            raise SpecError(f"percent must be in (0, 100], not {self.percent}")
        _check_port(self.port)


class PacketLoss(_PodNetworkFault):
    kind = "packet-loss"
    spec: PacketLossSpec
    _pods: list[PodProcess]

    def plan(self) -> list[str]:
        self._pods = self._locate(self.spec.namespace, self.spec.selector)
        return [p.pod for p in self._pods]

    def undo_data(self, targets: list[str]) -> dict[str, Any] | None:
        return self._undo(self._pods)

    def inject(self, targets: list[str]) -> None:
        port = ["-p", "tcp", "--dport", str(self.spec.port)] if self.spec.port else []
        probability = f"{self.spec.percent / 100:.4f}"
        rule = ["INPUT", "!", "-i", "lo", *port, "-m", "statistic", "--mode", "random"]
        for proc in self._pods:
            self._insert(proc, [[*rule, "--probability", probability, "-j", "DROP"]])

    def verify(self, targets: list[str], record: FaultRecord) -> str:
        self._require_rules(self._pods, record)
        target = self._pods[0]
        port = self.spec.port or _first_port(self.kube, target)
        if port is None:
            return "rules present (the pod declares no TCP port to probe)"
        # Enough connection attempts from the node that about ten are expected to be dropped.
        attempts = min(500, math.ceil(10 / (self.spec.percent / 100)))
        docker.exec_in(
            target.node, "bash", "-c",
            f"for i in $(seq {attempts}); do timeout 0.3 bash -c 'echo > /dev/tcp/{target.ip}/{port}' "
            "2>/dev/null; done; true",
        )  # fmt: skip
        dropped = _dropped(target, self.comment)
        if dropped == 0:
            raise FaultNotEffective(f"{attempts} connection attempts to {target.pod}:{port}: no packet dropped")
        return f"rules present; the loss rule dropped {dropped} packets while {attempts} probe connections ran"


def _dropped(proc: PodProcess, comment: str) -> int:
    _, output = in_netns(proc.node, proc.pid, "iptables", "-w", "-L", "INPUT", "-v", "-n", "-x")
    return sum(int(line.split()[0]) for line in output.splitlines() if comment in line)


class _QdiscFault(_PodNetworkFault):
    """A root qdisc on the pods' eth0, under a handle that says it is this fault's."""

    qdisc: ClassVar[str]
    _pods: list[PodProcess]

    @property
    def handle(self) -> str:
        return qdisc_handle(self.fault_id)

    def plan(self) -> list[str]:
        self._pods = self._locate(self.spec.namespace, self.spec.selector)
        return [p.pod for p in self._pods]

    def undo_data(self, targets: list[str]) -> dict[str, Any] | None:
        return {**self._undo(self._pods), "handle": self.handle}

    def _add(self, *parameters: str) -> None:
        for proc in self._pods:
            in_netns(
                proc.node, proc.pid, "tc", "qdisc", "add", "dev", "eth0", "root", "handle", self.handle, *parameters
            )

    def _require_qdisc(self, record: FaultRecord) -> None:
        for proc in self._pods:
            if root_qdisc(proc.node, proc.pid) != (self.qdisc, self.handle):
                raise FaultNotEffective(f"no {self.qdisc} qdisc {self.handle} on {proc.pod}'s eth0")
        record.effect_mono = time.monotonic()

    @classmethod
    def revert(cls, cluster: Cluster, kube: Kube, undo: dict[str, Any]) -> None:
        for node, pid in _live_namespaces(undo):
            current = root_qdisc(node, pid)
            if current is not None and current[1] == undo["handle"]:
                in_netns(node, pid, "tc", "qdisc", "del", "dev", "eth0", "root", check=False)


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

    def __post_init__(self) -> None:
        check_selector(self.selector)
        if self.rate_kbit < 64:
            raise SpecError(f"rate_kbit must be at least 64, not {self.rate_kbit}")
        if self.burst_bytes is not None and self.burst_bytes < MTU:
            raise SpecError(f"burst_bytes must be at least one packet ({MTU}), not {self.burst_bytes}")
        if self.queue_ms <= 0:
            raise SpecError(f"queue_ms must be positive, not {self.queue_ms}")

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
        self._require_qdisc(record)
        spec = self.spec
        size = max(math.ceil(spec.rate_bytes * PROBE_SECONDS), 2 * spec.burst)
        target = self._pods[0]
        seconds = timed_send(target, size, timeout=10 * PROBE_SECONDS + size / spec.rate_bytes)
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


@dataclass(frozen=True)
class LatencySpec:
    """Delay (and jitter) on packets leaving the selected pods; needs netem."""

    namespace: str
    selector: str
    delay_ms: int
    jitter_ms: int = 0

    def __post_init__(self) -> None:
        check_selector(self.selector)
        if self.delay_ms <= 0:
            raise SpecError(f"delay_ms must be positive, not {self.delay_ms}")
        if not 0 <= self.jitter_ms <= self.delay_ms:
            raise SpecError(f"jitter_ms must be in 0-{self.delay_ms}, not {self.jitter_ms}")


class Latency(_QdiscFault):
    kind = "latency"
    qdisc = "netem"
    spec: LatencySpec

    def plan(self) -> list[str]:
        targets = super().plan()
        available, detail = netem_available(self._pods[0].node)
        if not available:
            raise FaultUnsupported(
                f"latency needs the kernel's netem qdisc, which this kernel lacks ({detail}); nothing was injected"
            )
        return targets

    def inject(self, targets: list[str]) -> None:
        jitter = [f"{self.spec.jitter_ms}ms"] if self.spec.jitter_ms else []
        self._add("netem", "delay", f"{self.spec.delay_ms}ms", *jitter)

    def verify(self, targets: list[str], record: FaultRecord) -> str:
        self._require_qdisc(record)
        return f"netem delay {self.spec.delay_ms}ms on eth0 of {', '.join(targets)}"
