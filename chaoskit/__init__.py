"""chaoskit: chaos and resilience testing for Kubernetes, as pytest plugins, on real kind clusters.

The public API. The pytest plugin (:mod:`chaoskit.plugin`) gives tests these
through fixtures (``chaos``, ``experiment``, ``prometheus``); scripts and game
days can use them directly.

The names load on first use: ``python -m chaoskit.load.worker`` runs this file
before Locust monkey-patches the interpreter, and must find nothing here that
imports ssl (the Kubernetes client does) before gevent has patched it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "AckedWriter": "chaoskit.writes",
    "Availability": "chaoskit.slo",
    "Baseline": "chaoskit.baseline",
    "AvailabilityBelow": "chaoskit.stops",
    "BandwidthSpec": "chaoskit.faults",
    "Chaos": "chaoskit.chaos",
    "ChaoskitError": "chaoskit.errors",
    "Cluster": "chaoskit.cluster",
    "ClusterError": "chaoskit.errors",
    "ClusterSpec": "chaoskit.cluster",
    "ContainerKillSpec": "chaoskit.faults",
    "ErrorBurst": "chaoskit.slo",
    "ErrorBurstOver": "chaoskit.stops",
    "Experiment": "chaoskit.experiment",
    "ExperimentResult": "chaoskit.results",
    "DiskFillSpec": "chaoskit.faults",
    "DnsSpec": "chaoskit.faults",
    "HttpSpec": "chaoskit.faults",
    "ExperimentSpec": "chaoskit.experiment",
    "FaultBlocked": "chaoskit.errors",
    "FaultHooks": "chaoskit.faults",
    "FaultNotEffective": "chaoskit.errors",
    "FaultRecord": "chaoskit.faults",
    "FaultUndoFailed": "chaoskit.errors",
    "FaultUnsupported": "chaoskit.errors",
    "FaultVetoed": "chaoskit.errors",
    "FreezeSpec": "chaoskit.faults",
    "Kube": "chaoskit.adapters.kube",
    "LatencyAbove": "chaoskit.stops",
    "LatencyPercentile": "chaoskit.slo",
    "LatencySpec": "chaoskit.faults",
    "Load": "chaoskit.load",
    "LoadSpec": "chaoskit.load",
    "LostWrites": "chaoskit.slo",
    "NodeDrainSpec": "chaoskit.faults",
    "NodeFailureSpec": "chaoskit.faults",
    "NodePartitionSpec": "chaoskit.faults",
    "PacketLossSpec": "chaoskit.faults",
    "PartitionSpec": "chaoskit.faults",
    "PodKillSpec": "chaoskit.faults",
    "StressSpec": "chaoskit.faults",
    "ZoneFailureSpec": "chaoskit.faults",
    "PrometheusClient": "chaoskit.prometheus",
    "PromQL": "chaoskit.slo",
    "AlertFires": "chaoskit.slo",
    "AlertResolves": "chaoskit.slo",
    "PromQLAbove": "chaoskit.stops",
    "read_back": "chaoskit.writes",
    "ReadBack": "chaoskit.writes",
    "ReadBackFailed": "chaoskit.writes",
    "Recovery": "chaoskit.observe",
    "RecoveryTime": "chaoskit.slo",
    "RecoveryWatch": "chaoskit.observe",
    "RequestRecord": "chaoskit.load",
    "RunAborted": "chaoskit.errors",
    "Safety": "chaoskit.faults",
    "SafetyError": "chaoskit.errors",
    "Session": "chaoskit.session",
    "open_session": "chaoskit.session",
    "SloVerdict": "chaoskit.slo",
    "SloViolation": "chaoskit.slo",
    "Regressed": "chaoskit.results",
    "Judgement": "chaoskit.results",
    "SpecError": "chaoskit.errors",
    "Workload": "chaoskit.experiment",
    "WriteLog": "chaoskit.writes",
}

if TYPE_CHECKING:
    from chaoskit.adapters.kube import Kube
    from chaoskit.baseline import Baseline
    from chaoskit.chaos import Chaos
    from chaoskit.cluster import Cluster, ClusterSpec
    from chaoskit.errors import (
        ChaoskitError,
        ClusterError,
        FaultBlocked,
        FaultNotEffective,
        FaultUndoFailed,
        FaultUnsupported,
        FaultVetoed,
        RunAborted,
        SafetyError,
        SpecError,
    )
    from chaoskit.experiment import Experiment, ExperimentSpec, Workload
    from chaoskit.faults import (
        BandwidthSpec,
        ContainerKillSpec,
        DiskFillSpec,
        DnsSpec,
        FaultHooks,
        FaultRecord,
        FreezeSpec,
        HttpSpec,
        LatencySpec,
        NodeDrainSpec,
        NodeFailureSpec,
        NodePartitionSpec,
        PacketLossSpec,
        PartitionSpec,
        PodKillSpec,
        Safety,
        StressSpec,
        ZoneFailureSpec,
    )
    from chaoskit.load import Load, LoadSpec, RequestRecord
    from chaoskit.observe import Recovery, RecoveryWatch
    from chaoskit.prometheus import PrometheusClient
    from chaoskit.results import ExperimentResult, Judgement, Regressed
    from chaoskit.session import Session, open_session
    from chaoskit.slo import (
        AlertFires,
        AlertResolves,
        Availability,
        ErrorBurst,
        LatencyPercentile,
        LostWrites,
        PromQL,
        RecoveryTime,
        SloVerdict,
        SloViolation,
    )
    from chaoskit.stops import AvailabilityBelow, ErrorBurstOver, LatencyAbove, PromQLAbove
    from chaoskit.writes import AckedWriter, ReadBack, ReadBackFailed, WriteLog, read_back


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'chaoskit' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "AckedWriter",
    "AlertFires",
    "AlertResolves",
    "Availability",
    "AvailabilityBelow",
    "BandwidthSpec",
    "Baseline",
    "Chaos",
    "ChaoskitError",
    "Cluster",
    "ClusterError",
    "ClusterSpec",
    "ContainerKillSpec",
    "DiskFillSpec",
    "DnsSpec",
    "ErrorBurst",
    "ErrorBurstOver",
    "Experiment",
    "ExperimentResult",
    "ExperimentSpec",
    "FaultBlocked",
    "FaultHooks",
    "FaultNotEffective",
    "FaultRecord",
    "FaultUndoFailed",
    "FaultUnsupported",
    "FaultVetoed",
    "FreezeSpec",
    "HttpSpec",
    "Judgement",
    "Kube",
    "LatencyAbove",
    "LatencyPercentile",
    "LatencySpec",
    "Load",
    "LoadSpec",
    "LostWrites",
    "NodeDrainSpec",
    "NodeFailureSpec",
    "NodePartitionSpec",
    "PacketLossSpec",
    "PartitionSpec",
    "PodKillSpec",
    "PromQL",
    "PromQLAbove",
    "PrometheusClient",
    "ReadBack",
    "ReadBackFailed",
    "Recovery",
    "RecoveryTime",
    "RecoveryWatch",
    "Regressed",
    "RequestRecord",
    "RunAborted",
    "Safety",
    "SafetyError",
    "Session",
    "SloVerdict",
    "SloViolation",
    "SpecError",
    "StressSpec",
    "Workload",
    "WriteLog",
    "ZoneFailureSpec",
    "open_session",
    "read_back",
]
