"""The ``chaos`` handle that tests use: faults and recovery watches bound to one cluster."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from chaoskit.adapters.kube import Kube
from chaoskit.cluster.base import Cluster
from chaoskit.faults.base import Fault, FaultRecord, Safety
from chaoskit.faults.container import ContainerKill, ContainerKillSpec
from chaoskit.faults.drain import NodeDrain, NodeDrainSpec
from chaoskit.faults.network import (
    Bandwidth,
    BandwidthSpec,
    Latency,
    LatencySpec,
    PacketLoss,
    PacketLossSpec,
    Partition,
    PartitionSpec,
)
from chaoskit.faults.node import NodeFailure, NodeFailureSpec
from chaoskit.faults.pod import PodKill, PodKillSpec
from chaoskit.observe import RecoveryWatch


class Chaos:
    """Injects faults into ``cluster`` under ``safety``; keeps every fault's record.

    Every fault takes ``max_share=``: its own blast-radius cap (the largest share
    of the matching pods or nodes it may touch), instead of the session's; the
    record and the report show it.
    """

    def __init__(self, cluster: Cluster, kube: Kube, safety: Safety | None = None) -> None:
        self.cluster = cluster
        self.kube = kube
        self.safety = safety or Safety()
        self.records: list[FaultRecord] = []
        self.fault_ids: list[str] = []
        """Every fault this handle started, in order, whether or not it got as far as a record."""

    def pod_kill(self, namespace: str, selector: str, *, max_share: float | None = None, **options: Any) -> Any:
        """Kill pods matching ``selector`` (see :class:`PodKillSpec` for options)."""
        return self._active(
            PodKill(self.cluster, self.kube, PodKillSpec(namespace, selector, **options), safety=self.safety), max_share
        )

    def node_failure(self, node: str, *, max_share: float | None = None, **options: Any) -> Any:
        """Stop or pause a kind node's container (see :class:`NodeFailureSpec`)."""
        spec = NodeFailureSpec(node, **options)
        return self._active(NodeFailure(self.cluster, self.kube, spec, safety=self.safety), max_share)

    def node_drain(self, node: str, *, max_share: float | None = None, **options: Any) -> Any:
        """Cordon a node and evict its pods, honouring PodDisruptionBudgets (see :class:`NodeDrainSpec`)."""
        return self._active(
            NodeDrain(self.cluster, self.kube, NodeDrainSpec(node, **options), safety=self.safety), max_share
        )

    def container_kill(self, namespace: str, selector: str, *, max_share: float | None = None, **options: Any) -> Any:
        """Signal the main process of pods' containers (see :class:`ContainerKillSpec`)."""
        spec = ContainerKillSpec(namespace, selector, **options)
        return self._active(ContainerKill(self.cluster, self.kube, spec, safety=self.safety), max_share)

    def partition(self, namespace: str, selector: str, *, max_share: float | None = None, **options: Any) -> Any:
        """Cut pods off from other pods or from everything (see :class:`PartitionSpec`)."""
        spec = PartitionSpec(namespace, selector, **options)
        return self._active(Partition(self.cluster, self.kube, spec, safety=self.safety), max_share)

    def packet_loss(
        self, namespace: str, selector: str, percent: float, *, max_share: float | None = None, **options: Any
    ) -> Any:
        """Drop a share of the packets arriving at pods (see :class:`PacketLossSpec`)."""
        spec = PacketLossSpec(namespace, selector, percent, **options)
        return self._active(PacketLoss(self.cluster, self.kube, spec, safety=self.safety), max_share)

    def bandwidth(
        self, namespace: str, selector: str, rate_kbit: int, *, max_share: float | None = None, **options: Any
    ) -> Any:
        """Limit the rate at which pods send, proven by a timed transfer (see :class:`BandwidthSpec`)."""
        spec = BandwidthSpec(namespace, selector, rate_kbit, **options)
        return self._active(Bandwidth(self.cluster, self.kube, spec, safety=self.safety), max_share)

    def latency(
        self, namespace: str, selector: str, delay_ms: int, *, max_share: float | None = None, **options: Any
    ) -> Any:
        """Delay packets leaving pods; raises FaultUnsupported where the kernel lacks netem."""
        spec = LatencySpec(namespace, selector, delay_ms, **options)
        return self._active(Latency(self.cluster, self.kube, spec, safety=self.safety), max_share)

    def recovery_watch(self, namespace: str, deployment: str, service: str | None = None) -> RecoveryWatch:
        """Watch a Deployment (and its Service's endpoints) to measure recovery."""
        return RecoveryWatch(self.kube, namespace, deployment, service)

    @contextmanager
    def _active(self, fault: Fault, max_share: float | None = None) -> Iterator[FaultRecord]:
        """Run ``fault`` (under its own blast-radius cap if ``max_share`` is given), keeping its record."""
        fault.with_max_share(max_share)
        self.fault_ids.append(fault.fault_id)  # before it acts: a block never left is still this handle's
        with fault.active() as record:
            self.records.append(record)
            yield record
