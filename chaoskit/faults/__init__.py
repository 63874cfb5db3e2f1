"""The fault library: every fault injected for real, proven, and always undone."""

from chaoskit.faults.base import Fault, FaultHooks, FaultRecord
from chaoskit.faults.container import ContainerKill, ContainerKillSpec
from chaoskit.faults.disk import DiskFill, DiskFillSpec
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

__all__ = [
    "Bandwidth",
    "BandwidthSpec",
    "ContainerKill",
    "ContainerKillSpec",
    "DiskFill",
    "DiskFillSpec",
    "DnsFault",
    "DnsSpec",
    "Fault",
    "FaultHooks",
    "FaultRecord",
    "Freeze",
    "FreezeSpec",
    "HttpFault",
    "HttpSpec",
    "Latency",
    "LatencySpec",
    "NodeDrain",
    "NodeDrainSpec",
    "NodeFailure",
    "NodeFailureSpec",
    "NodePartition",
    "NodePartitionSpec",
    "PacketLoss",
    "PacketLossSpec",
    "Partition",
    "PartitionSpec",
    "PodKill",
    "PodKillSpec",
    "Safety",
    "Stress",
    "StressSpec",
    "ZoneFailure",
    "ZoneFailureSpec",
]
