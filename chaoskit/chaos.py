"""The ``chaos`` handle that tests use: faults and recovery watches bound to one cluster."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import cast

from chaoskit.adapters.kube import Kube
from chaoskit.adapters.status import WorkloadKind
from chaoskit.cluster.base import Cluster
from chaoskit.errors import FaultUnsupported, FaultVetoed, RunAborted
from chaoskit.faults.base import Fault, FaultHooks, FaultRecord
from chaoskit.faults.container import ContainerKill, ContainerKillSpec
from chaoskit.faults.disk import IO_LATENCY_UNSUPPORTED, DiskFill, DiskFillSpec, IoLatencySpec
from chaoskit.faults.dns import DnsFault, DnsSpec
from chaoskit.faults.drain import NodeDrain, NodeDrainSpec
from chaoskit.faults.freeze import Freeze, FreezeSpec
from chaoskit.faults.http import HttpFault, HttpSpec
from chaoskit.faults.network import (
    PacketLoss,
    PacketLossSpec,
    Partition,
    PartitionSpec,
)
from chaoskit.faults.node import NodeFailure, NodeFailureSpec, ZoneFailure, ZoneFailureSpec
from chaoskit.faults.node_partition import NodePartition, NodePartitionSpec
from chaoskit.faults.pod import PodKill, PodKillSpec
from chaoskit.faults.safety import Safety
from chaoskit.faults.shaping import Bandwidth, BandwidthSpec, Latency, LatencySpec
from chaoskit.faults.stress import Stress, StressSpec
from chaoskit.observe import RecoveryWatch
from chaoskit.state.ledger import Ledger


class Chaos:
    """Injects faults into ``cluster`` under ``safety``; keeps every fault's record.

    Every fault takes ``max_share=``: its own blast-radius cap (the largest share
    of the matching pods or nodes it may touch), instead of the session's; the
    record and the report show it. ``hooks`` is called at each step of every
    fault (:class:`~chaoskit.faults.FaultHooks`); its ``planned`` may veto one,
    which then raises :class:`~chaoskit.FaultVetoed` before anything acts.
    """

    def __init__(
        self, cluster: Cluster, kube: Kube, safety: Safety | None = None, hooks: FaultHooks | None = None
    ) -> None:
        self.cluster = cluster
        self.kube = kube
        self.safety = safety or Safety()
        self.hooks = hooks or FaultHooks()
        self.records: list[FaultRecord] = []
        """The record of every fault this handle ran (a vetoed one's included), in order."""
        self.fault_ids: list[str] = []
        """Every fault this handle started, in order, whether or not it got as far as a record."""
        self.created_at = time.time()
        self.stop_reason: str | None = None
        """Why this handle was stopped (:meth:`stop`); no fault may start after it."""

    def stop(self, reason: str) -> None:
        """Refuse every fault from now on (RunAborted, saying ``reason``): the run was aborted."""
        self.stop_reason = self.stop_reason or reason

    def stopped(self) -> str | None:
        """Why no fault may start: this handle was stopped, or ``chaoskit abort`` ran since it was made."""
        if self.stop_reason is None:
            aborts = Ledger(self.cluster.name).aborts(self.created_at, self.fault_ids)
            if aborts:
                self.stop(external_abort_reason(aborts[0], self.created_at))
        return self.stop_reason

    def active_records(self, since: int = 0) -> list[FaultRecord]:
        """Records from index ``since`` of the faults that acted and are not undone yet."""
        return [
            r
            for r in self.records[since:]
            if r.injected_at is not None and r.undoable and not r.reverted and not r.vetoed
        ]

    def pod_kill(
        self,
        namespace: str,
        selector: str,
        *,
        count: int | None = None,
        percent: float | None = None,
        grace_seconds: int = 0,
        crash: bool = False,
        pick: str = "random",
        seed: int | None = None,
        names: Sequence[str] = (),
        rounds: int = 1,
        interval_seconds: float = 0,
        max_share: float | None = None,
    ) -> AbstractContextManager[FaultRecord]:
        """Kill pods matching ``selector``: ``count`` of them (default 1) or ``percent``, or exactly ``names``;
        with ``rounds`` > 1, again every ``interval_seconds`` while the block runs. By default an API delete
        (SIGTERM, then SIGKILL after the grace); with ``crash``, SIGKILL to every process from the node and a
        force delete (see :class:`PodKillSpec`)."""
        spec = PodKillSpec(
            namespace=namespace,
            selector=selector,
            count=count,
            percent=percent,
            grace_seconds=grace_seconds,
            crash=crash,
            pick=pick,
            seed=seed,
            names=cast(tuple[str, ...], names),  # the spec makes it a tuple, refusing a bare string
            rounds=rounds,
            interval_seconds=interval_seconds,
        )
        return self._active(PodKill(self.cluster, self.kube, spec, safety=self.safety), max_share)

    def node_failure(
        self,
        node: str,
        *,
        mode: str = "stop",
        wait_not_ready: bool = True,
        timeout: float = 120.0,
        max_share: float | None = None,
    ) -> AbstractContextManager[FaultRecord]:
        """Fail a node: ``mode="stop"`` (graceful shutdown), ``"crash"`` (SIGKILL, power cut) or ``"pause"`` of a kind
        node's container, or ``"kubelet"`` through the agent (see :class:`NodeFailureSpec`)."""
        spec = NodeFailureSpec(node=node, mode=mode, wait_not_ready=wait_not_ready, timeout=timeout)
        return self._active(NodeFailure(self.cluster, self.kube, spec, safety=self.safety), max_share)

    def node_partition(
        self,
        node: str,
        *,
        wait_not_ready: bool = True,
        timeout: float = 120.0,
        max_seconds: float = 300.0,
        max_share: float | None = None,
    ) -> AbstractContextManager[FaultRecord]:
        """Cut a node off from the control plane while its pods run on (see :class:`NodePartitionSpec`)."""
        spec = NodePartitionSpec(node=node, wait_not_ready=wait_not_ready, timeout=timeout, max_seconds=max_seconds)
        return self._active(NodePartition(self.cluster, self.kube, spec, safety=self.safety), max_share)

    def node_drain(
        self,
        node: str,
        *,
        timeout: float = 120.0,
        grace_seconds: int | None = None,
        max_share: float | None = None,
    ) -> AbstractContextManager[FaultRecord]:
        """Cordon a node and evict its pods, honouring PodDisruptionBudgets (see :class:`NodeDrainSpec`)."""
        spec = NodeDrainSpec(node=node, timeout=timeout, grace_seconds=grace_seconds)
        return self._active(NodeDrain(self.cluster, self.kube, spec, safety=self.safety), max_share)

    def container_kill(
        self,
        namespace: str,
        selector: str,
        *,
        container: str | None = None,
        signal: str = "SIGKILL",
        count: int = 1,
        seed: int | None = None,
        max_share: float | None = None,
    ) -> AbstractContextManager[FaultRecord]:
        """Signal the main process of ``count`` pods' containers (see :class:`ContainerKillSpec`)."""
        spec = ContainerKillSpec(
            namespace=namespace, selector=selector, container=container, signal=signal, count=count, seed=seed
        )
        return self._active(ContainerKill(self.cluster, self.kube, spec, safety=self.safety), max_share)

    def process_freeze(
        self,
        namespace: str,
        selector: str,
        *,
        container: str | None = None,
        count: int | None = 1,
        seed: int | None = None,
        port: int | None = None,
        max_share: float | None = None,
    ) -> AbstractContextManager[FaultRecord]:
        """Stop (SIGSTOP) every process of ``count`` pods' container for the block, SIGCONT on undo: a hung
        dependency, proven by the processes' state and, with ``port``, a request that no longer gets an
        answer (see :class:`FreezeSpec`)."""
        spec = FreezeSpec(
            namespace=namespace, selector=selector, container=container, count=count, seed=seed, port=port
        )
        return self._active(Freeze(self.cluster, self.kube, spec, safety=self.safety), max_share)

    def partition(
        self,
        namespace: str,
        selector: str,
        *,
        peer_selector: str | None = None,
        peer_namespace: str | None = None,
        port: int | None = None,
        count: int | None = None,
        seed: int | None = None,
        max_share: float | None = None,
    ) -> AbstractContextManager[FaultRecord]:
        """Cut pods off from the ``peer_selector`` pods, or from everything (see :class:`PartitionSpec`)."""
        spec = PartitionSpec(
            namespace=namespace,
            selector=selector,
            peer_selector=peer_selector,
            peer_namespace=peer_namespace,
            port=port,
            count=count,
            seed=seed,
        )
        return self._active(Partition(self.cluster, self.kube, spec, safety=self.safety), max_share)

    def packet_loss(
        self,
        namespace: str,
        selector: str,
        percent: float,
        *,
        port: int | None = None,
        count: int | None = None,
        seed: int | None = None,
        max_share: float | None = None,
    ) -> AbstractContextManager[FaultRecord]:
        """Drop ``percent`` of the packets arriving at pods (see :class:`PacketLossSpec`)."""
        spec = PacketLossSpec(
            namespace=namespace, selector=selector, percent=percent, port=port, count=count, seed=seed
        )
        return self._active(PacketLoss(self.cluster, self.kube, spec, safety=self.safety), max_share)

    def bandwidth(
        self,
        namespace: str,
        selector: str,
        rate_kbit: int,
        *,
        burst_bytes: int | None = None,
        queue_ms: int = 200,
        count: int | None = None,
        seed: int | None = None,
        max_share: float | None = None,
    ) -> AbstractContextManager[FaultRecord]:
        """Limit the rate at which pods send, proven by a timed transfer (see :class:`BandwidthSpec`)."""
        spec = BandwidthSpec(
            namespace=namespace,
            selector=selector,
            rate_kbit=rate_kbit,
            burst_bytes=burst_bytes,
            queue_ms=queue_ms,
            count=count,
            seed=seed,
        )
        return self._active(Bandwidth(self.cluster, self.kube, spec, safety=self.safety), max_share)

    def latency(
        self,
        namespace: str,
        selector: str,
        delay_ms: int,
        *,
        jitter_ms: int = 0,
        count: int | None = None,
        seed: int | None = None,
        engine: str = "auto",
        max_share: float | None = None,
    ) -> AbstractContextManager[FaultRecord]:
        """Delay packets leaving pods: by netem where the kernel has it, else in user space (``engine=``)."""
        spec = LatencySpec(
            namespace=namespace,
            selector=selector,
            delay_ms=delay_ms,
            jitter_ms=jitter_ms,
            count=count,
            seed=seed,
            engine=engine,
        )
        return self._active(Latency(self.cluster, self.kube, spec, safety=self.safety), max_share)

    def dns(
        self,
        namespace: str,
        selector: str,
        names: Sequence[str] | str,
        *,
        answer: str = "nxdomain",
        address: str | None = None,
        delay_ms: int | None = None,
        count: int | None = None,
        seed: int | None = None,
        max_share: float | None = None,
    ) -> AbstractContextManager[FaultRecord]:
        """Answer ``names`` wrongly for the pods (NXDOMAIN, SERVFAIL, ``address``, or late); all else resolves."""
        spec = DnsSpec(
            namespace=namespace,
            selector=selector,
            names=(names,) if isinstance(names, str) else tuple(names),
            answer=answer,
            address=address,
            delay_ms=delay_ms,
            count=count,
            seed=seed,
        )
        return self._active(DnsFault(self.cluster, self.kube, spec, safety=self.safety), max_share)

    def stress(
        self,
        namespace: str,
        selector: str,
        *,
        cpu_workers: int = 0,
        cpu_percent: int = 100,
        memory_bytes: int = 0,
        container: str | None = None,
        count: int | None = 1,
        seed: int | None = None,
        max_share: float | None = None,
    ) -> AbstractContextManager[FaultRecord]:
        """Burn CPU and hold memory inside containers (their cgroups); past the memory limit, the OOM kill."""
        spec = StressSpec(
            namespace=namespace,
            selector=selector,
            cpu_workers=cpu_workers,
            cpu_percent=cpu_percent,
            memory_bytes=memory_bytes,
            container=container,
            count=count,
            seed=seed,
        )
        return self._active(Stress(self.cluster, self.kube, spec, safety=self.safety), max_share)

    def disk_fill(
        self,
        namespace: str,
        selector: str,
        percent: int,
        *,
        path: str = "/",
        max_bytes: int = 1 << 30,
        container: str | None = None,
        count: int | None = 1,
        seed: int | None = None,
        max_share: float | None = None,
    ) -> AbstractContextManager[FaultRecord]:
        """Fill the filesystem holding ``path`` in containers to ``percent`` with one file; undo deletes it."""
        spec = DiskFillSpec(
            namespace=namespace,
            selector=selector,
            percent=percent,
            path=path,
            max_bytes=max_bytes,
            container=container,
            count=count,
            seed=seed,
        )
        return self._active(DiskFill(self.cluster, self.kube, spec, safety=self.safety), max_share)

    def io_latency(
        self, namespace: str, selector: str, delay_ms: int, *, path: str = "/", max_share: float | None = None
    ) -> AbstractContextManager[FaultRecord]:
        """Not implemented: checks its arguments, then raises FaultUnsupported saying why (a test that asks for
        it skips with that reason; see :mod:`chaoskit.faults.disk`). Nothing is planned or recorded."""
        IoLatencySpec(namespace=namespace, selector=selector, delay_ms=delay_ms, path=path)
        raise FaultUnsupported(IO_LATENCY_UNSUPPORTED)

    def http(
        self,
        namespace: str,
        selector: str,
        port: int,
        *,
        abort_percent: float = 0.0,
        status: int = 503,
        delay_ms: int = 0,
        delay_percent: float = 100.0,
        count: int | None = None,
        seed: int | None = None,
        max_share: float | None = None,
    ) -> AbstractContextManager[FaultRecord]:
        """Abort a share of the requests to the pods' port with ``status``, or delay them."""
        spec = HttpSpec(
            namespace=namespace,
            selector=selector,
            port=port,
            abort_percent=abort_percent,
            status=status,
            delay_ms=delay_ms,
            delay_percent=delay_percent,
            count=count,
            seed=seed,
        )
        return self._active(HttpFault(self.cluster, self.kube, spec, safety=self.safety), max_share)

    def zone_failure(
        self,
        zone: str,
        *,
        mode: str = "stop",
        wait_not_ready: bool = True,
        timeout: float = 120.0,
        max_share: float | None = None,
    ) -> AbstractContextManager[FaultRecord]:
        """Fail every node of a zone (``topology.kubernetes.io/zone``) at once, as node_failure fails one."""
        spec = ZoneFailureSpec(zone=zone, mode=mode, wait_not_ready=wait_not_ready, timeout=timeout)
        return self._active(ZoneFailure(self.cluster, self.kube, spec, safety=self.safety), max_share)

    def recovery_watch(
        self, namespace: str, name: str, service: str | None = None, kind: WorkloadKind = "Deployment"
    ) -> RecoveryWatch:
        """Watch a workload (and its Service's ready endpoints) to measure recovery.

        ``kind`` is ``Deployment``, ``StatefulSet``, ``DaemonSet`` or
        ``ReplicaSet`` (anything else is a SpecError naming them); each is
        whole by its own status (see :func:`~chaoskit.adapters.status.workload_counts`).
        """
        return RecoveryWatch(self.kube, namespace, name, service, kind)

    @contextmanager
    def _active(self, fault: Fault, max_share: float | None = None) -> Iterator[FaultRecord]:
        """Run ``fault`` (under its own blast-radius cap if ``max_share`` is given), keeping its record."""
        reason = self.stopped()
        if reason is not None:
            raise RunAborted(f"{fault.kind} refused: {reason}")
        fault.with_max_share(max_share)
        fault.hooks = self.hooks
        fault.halted = lambda: self.stop_reason is not None
        self.fault_ids.append(fault.fault_id)  # before it acts: a block never left is still this handle's
        try:
            with fault.active() as record:
                self.records.append(record)
                if self.stop_reason is not None:  # aborted while this fault was being injected: undo it now
                    raise RunAborted(f"{fault.kind} undone at once: {self.stop_reason}")
                yield record
        except FaultVetoed:
            if fault.record is not None:
                self.records.append(fault.record)  # nothing acted, but the report says who refused and why
            raise


def external_abort_reason(line: dict[str, object], since: float) -> str:
    """The words for an abort line of the ledger: "aborted externally by chaoskit abort (pid 1234 on host)"."""
    at = float(str(line.get("at", since)))
    return f"aborted externally by {line.get('by', 'another process')} at t={at - since:.1f} s"
