"""Network faults that shape a pod's traffic: bandwidth and latency.

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

Which pods, the blast-radius cap, and the rules' comment: as every pod network fault (:mod:`.network`).
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from chaoskit.adapters.kube import Kube
from chaoskit.cluster.base import Cluster
from chaoskit.errors import FaultNotEffective, FaultUndoFailed, FaultUnsupported, SpecError
from chaoskit.faults.base import FaultRecord
from chaoskit.faults.netns import PodProcess, connect_times, run_everywhere, steps_by_node, timed_send
from chaoskit.faults.netrules import (
    SHOW_ROOT,
    comment_rules,
    delete_qdisc_snippet,
    insert_snippet,
    netem_available,
    parse_root_qdisc,
    qdisc_handle,
    refuse_if_held,
    root_qdiscs,
    start_helper_snippet,
    write_helpers,
)
from chaoskit.faults.network import (
    _check_count,
    _describe_checked,
    _first_port,
    _PodNetworkFault,
    agent_steps_rules_and_helpers,
    check_rules_and_helpers,
    revert_rules_and_helpers,
)
from chaoskit.faults.safety import check_selector


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
