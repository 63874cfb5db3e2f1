"""Every fault kind, declared once: its name (which gives its ``Chaos`` method), its spec, its fault class and
what it models. Everything else that lists the kinds reads them from here: the experiment files' kinds and their
option checks (:mod:`chaoskit.gameday.spec`), ``chaoskit inject KIND``, and the sweeper, which undoes a
recorded fault by its kind's class. A new kind is its module plus one line below.

``name`` is the kind's one name everywhere: in files, on the command line, in the ledger, in the cluster's
fault records and in the reports. ``Chaos`` keeps one typed method per kind (for users and mypy); a unit
test holds each method's arguments to its spec's fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from chaoskit.faults.base import Fault
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
from chaoskit.faults.shaping import Bandwidth, BandwidthSpec, Latency, LatencySpec
from chaoskit.faults.stress import Stress, StressSpec


@dataclass(frozen=True)
class FaultKind:
    """One kind of fault."""

    name: str
    """Its one name (``pod-kill``): files, ``chaoskit inject``, the ledger, the cluster's records, reports."""
    spec: type
    """The spec dataclass the method builds from its arguments (all but ``max_share``)."""
    fault: type[Fault]
    models: str
    """What it models, in a line (the fault docs say what it does not)."""

    @property
    def method(self) -> str:
        """The :class:`~chaoskit.chaos.Chaos` method that injects it: its name with underscores (``pod_kill``)."""
        return self.name.replace("-", "_")

    @property
    def node_access(self) -> str | None:
        """What it does from the nodes (through Docker on kind, or the injector agent); None: the API alone."""
        return self.fault.node_access


CATALOG: tuple[FaultKind, ...] = (
    FaultKind("pod-kill", PodKillSpec, PodKill, "pods deleted gracefully, or crashed with SIGKILL"),
    FaultKind("container-kill", ContainerKillSpec, ContainerKill, "a container's process signalled"),
    FaultKind("node-failure", NodeFailureSpec, NodeFailure, "a node shut down, crashed or hung"),
    FaultKind("node-drain", NodeDrainSpec, NodeDrain, "a planned drain: cordon and evictions"),
    FaultKind("node-partition", NodePartitionSpec, NodePartition, "a node cut off from the API"),
    FaultKind("partition", PartitionSpec, Partition, "pods cut off from their peers or everything"),
    FaultKind("packet-loss", PacketLossSpec, PacketLoss, "a share of arriving packets dropped"),
    FaultKind("bandwidth", BandwidthSpec, Bandwidth, "what pods send, limited to a rate"),
    FaultKind("latency", LatencySpec, Latency, "every packet delayed"),
    FaultKind("process-freeze", FreezeSpec, Freeze, "a container's processes stopped (a hang)"),
    FaultKind("dns", DnsSpec, DnsFault, "wrong or late DNS answers for some names"),
    FaultKind("http", HttpSpec, HttpFault, "HTTP requests aborted or delayed"),
    FaultKind("stress", StressSpec, Stress, "CPU and memory pressure inside a container"),
    FaultKind("zone-failure", ZoneFailureSpec, ZoneFailure, "every node of a zone failing at once"),
    FaultKind("disk-fill", DiskFillSpec, DiskFill, "a filesystem filled"),
)

KINDS: Mapping[str, FaultKind] = MappingProxyType({kind.name: kind for kind in CATALOG})
"""Each kind by its name, in the catalog's order."""

LEGACY_NAMES: Mapping[str, str] = MappingProxyType({"network-partition": "partition"})
"""Names the ledger and the cluster's records held before each kind had one name: still undone by a sweep."""

FAULT_CLASSES: Mapping[str, type[Fault]] = MappingProxyType(
    {**{kind.name: kind.fault for kind in CATALOG}, **{old: KINDS[new].fault for old, new in LEGACY_NAMES.items()}}
)
"""The fault class of each kind name a ledger entry or a record may hold, the legacy names too: what a sweep
undoes by."""
