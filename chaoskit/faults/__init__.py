"""The fault library: every fault injected for real, proven, and always undone."""

from chaoskit.faults.base import Fault, FaultRecord, Safety
from chaoskit.faults.node import NodeFailure, NodeFailureSpec
from chaoskit.faults.pod import PodKill, PodKillSpec

__all__ = ["Fault", "FaultRecord", "NodeFailure", "NodeFailureSpec", "PodKill", "PodKillSpec", "Safety"]
