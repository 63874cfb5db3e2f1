"""Undo what a killed run left behind.

Reads the cluster's ledger and undoes every entry whose injecting process is
dead, with the fault kind's own ``revert`` and the data recorded before the
fault acted. Runs at the start of every pytest session that uses the cluster
and from ``chaoskit cleanup``. An entry whose undo fails stays unsettled, so
the next sweep tries again, and the failure is reported.
"""

from __future__ import annotations

from dataclasses import dataclass

from chaoskit.adapters.kube import Kube
from chaoskit.adapters.shell import say
from chaoskit.cluster.base import Cluster
from chaoskit.faults import container, drain, network, node, pod  # noqa: F401  (registers the fault kinds)
from chaoskit.faults.base import Fault
from chaoskit.faults.ledger import Ledger


@dataclass(frozen=True)
class SweepResult:
    """What a sweep did."""

    undone: tuple[str, ...]
    """Fault ids undone."""
    failed: tuple[str, ...]
    """Fault ids whose undo failed, with the reason."""
    skipped_live: tuple[str, ...]
    """Fault ids of runs still in progress, left alone."""


def sweep(cluster: Cluster, kube: Kube) -> SweepResult:
    """Undo every fault a dead process left in ``cluster``."""
    ledger = Ledger(cluster.name)
    undone: list[str] = []
    failed: list[str] = []
    live: list[str] = []
    for entry in ledger.unsettled():
        if entry.owner_alive():
            live.append(entry.fault_id)
            continue
        fault = Fault.registry.get(entry.kind)
        if fault is None:
            failed.append(f"{entry.fault_id}: unknown fault kind {entry.kind!r}")
            continue
        say(f"sweeper: undoing {entry.fault_id} left by process {entry.pid} ({entry.undo})")
        try:
            fault.revert(cluster, kube, entry.undo)
        except Exception as exc:
            failed.append(f"{entry.fault_id}: {exc}")
            continue
        ledger.settle(entry.fault_id)
        undone.append(entry.fault_id)
    return SweepResult(tuple(undone), tuple(failed), tuple(live))
