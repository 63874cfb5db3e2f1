"""Undo what a killed run left behind.

Reads the cluster's ledger, then the faults the cluster itself records
(:mod:`.objects`) for owners whose Lease expired and that the ledger does not
know (another machine's runs), and undoes every entry whose injecting process is
dead, with the fault kind's own ``revert`` and the data recorded before the
fault acted, then proves the undo the same way a fault's own exit does
(:func:`~chaoskit.faults.base.undo_and_prove`). Runs at the start of every
pytest session that uses the cluster and from ``chaoskit cleanup``.

An entry whose undo cannot be proven stays unsettled, so the next sweep tries
again, and the failure names what is left and where. Failed entries are tried
once more after the others: undoing one fault can be what another needed (a
partition's rules on a node that a later entry of the same run had paused). An entry whose targets no
longer exist at all (a node deleted with its cluster) is settled as *moot*,
with a line saying so, so that one stale entry never blocks every later session.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from chaoskit.adapters.kube import Kube
from chaoskit.adapters.shell import say
from chaoskit.cluster.base import Cluster
from chaoskit.errors import FaultUndoFailed
from chaoskit.faults import objects, signals
from chaoskit.faults.base import Fault, undo_and_prove
from chaoskit.faults.catalog import FAULT_CLASSES
from chaoskit.faults.scope import Resolved
from chaoskit.faults.validate import Refused, check_undo
from chaoskit.state import leases
from chaoskit.state.ledger import Ledger, LedgerEntry


@dataclass(frozen=True)
class SweepResult:
    """What a sweep did."""

    undone: tuple[str, ...]
    """Fault ids undone, each with the proof (``id: proof``)."""
    failed: tuple[str, ...]
    """Fault ids whose undo failed or could not be proven, with what is left and where."""
    skipped_live: tuple[str, ...]
    """Fault ids of runs still in progress, left alone."""
    moot: tuple[str, ...] = ()
    """Fault ids settled because their targets no longer exist, with the reason."""
    outside: int = 0
    """Faults of dead runs left alone because they are outside the sweep's scope (``-n``/``-l``)."""


def sweep(
    cluster: Cluster,
    kube: Kube,
    kinds: Mapping[str, type[Fault]] = FAULT_CLASSES,
    scope: Resolved | None = None,
) -> SweepResult:
    """Undo, and prove undone, every fault a dead process left in ``cluster`` (``kinds``: each recorded kind's
    fault class, the catalog's by default; ``scope``: only the faults it covers, see :mod:`.scope`)."""
    ledger = Ledger(cluster.name)
    undone: list[str] = []
    live: list[str] = []
    moot: list[str] = []
    failed: dict[str, str] = {}
    everything = ledger.unsettled()
    pending = [e for e in everything if scope is None or scope.holds(e)]
    outside = [e.fault_id for e in everything if e not in pending and not e.owner_alive()]
    for attempt in range(2):
        retry = []
        for entry in pending:
            if attempt == 0 and entry.owner_alive():
                live.append(entry.fault_id)
                continue
            how, text = undo_entry(cluster, kube, ledger, entry, kinds)
            if how == "moot":
                moot.append(f"{entry.fault_id}: {text}")
            elif how == "undone":
                undone.append(f"{entry.fault_id}: {text}")
                failed.pop(entry.fault_id, None)
            else:
                failed[entry.fault_id] = text
                retry.append(entry)
        if not retry or len(retry) == len(pending):
            break  # nothing failed, or nothing else changed that a second try could benefit from
        pending = retry
    known = {e.fault_id for e in ledger.unsettled()} | set(live)
    for found in objects.listed(kube):
        if found.fault_id in known:
            continue
        if found.owner_alive:
            live.append(found.fault_id)
            continue
        if scope is not None and not scope.holds(found):
            outside.append(found.fault_id)
            continue
        how, text = undo_object(cluster, kube, found, kinds)
        if how == "undone":
            undone.append(f"{found.fault_id}: {text}")
        elif how == "moot":
            moot.append(f"{found.fault_id}: {text}")
        else:
            failed[found.fault_id] = text
    if not outside:  # a dead owner's Lease stays while faults of its are left for a later sweep
        objects.sweep_leases(kube)
    return SweepResult(tuple(undone), tuple(failed.values()), tuple(live), tuple(moot), len(outside))


def undo_object(
    cluster: Cluster, kube: Kube, found: objects.FaultObject, kinds: Mapping[str, type[Fault]] = FAULT_CLASSES
) -> tuple[str, str]:
    """Undo, prove and remove a fault the cluster records for a dead owner that this machine's ledger does not
    know (another machine's run, or a ledger file that is gone); returns as :func:`undo_entry` does."""
    if found.refused:
        return "failed", (
            f"{found.fault_id}: its record in the cluster is refused, nothing of it run: {found.refused} (find who "
            f"wrote it, then: kubectl -n {leases.NAMESPACE} delete faults.chaoskit.io "
            f"{objects.object_name(found.fault_id)})"
        )
    who = found.owner
    agents = f"; the agents had undone it on {', '.join(found.undone_on)}" if found.undone_on else ""
    announce = (
        f"undoing {found.fault_id} from its record in the cluster, left by {who.get('host', '?')} "
        f"pid {who.get('pid', '?')} ({who.get('command', '?')}){agents}"
    )
    return _undo_recorded(cluster, kube, found.fault_id, kinds.get(found.kind), found.kind, found.undo, announce, None)


def undo_entry(
    cluster: Cluster,
    kube: Kube,
    ledger: Ledger,
    entry: LedgerEntry,
    kinds: Mapping[str, type[Fault]] = FAULT_CLASSES,
) -> tuple[str, str]:
    """Undo and settle one ledger entry, signals deferred: (``undone``, the proof), (``moot``, the reason)
    or (``failed``, why). The sweep uses it for dead runs' entries, the ``chaos`` fixture for a test's own."""
    announce = f"undoing {entry.fault_id}, recorded by process {entry.pid} ({entry.undo})"
    return _undo_recorded(
        cluster,
        kube,
        entry.fault_id,
        kinds.get(entry.kind),
        entry.kind,
        entry.undo,
        announce,
        lambda how: ledger.settle(entry.fault_id, how),
    )


def _undo_recorded(
    cluster: Cluster,
    kube: Kube,
    fault_id: str,
    fault: type[Fault] | None,
    kind: str,
    undo: dict[str, Any],
    announce: str,
    settle_ledger: Callable[[str], None] | None,
) -> tuple[str, str]:
    """Undo a recorded fault (ledger entry or cluster record) from its data, prove it, and settle it: in the
    ledger by ``settle_ledger(how)``, then in the cluster. A moot fault (its targets gone) is settled as such."""
    if fault is None:
        return "failed", f"{fault_id}: unknown fault kind {kind!r:.40}"
    try:
        check_undo(undo)
    except Refused as exc:  # a planted or damaged record: none of its data reaches a node
        return "failed", f"{fault_id}: refused, nothing of it run: {exc}"
    try:
        reason = fault.moot(cluster, kube, undo)
    except Exception as exc:
        return "failed", f"{fault_id}: cannot tell whether its targets still exist: {exc}"
    if reason is not None:
        say(f"{fault_id} settled as moot: {reason}")
        if settle_ledger is not None:
            settle_ledger("moot")
        objects.settle_or_warn(kube, fault_id)
        return "moot", reason
    say(announce)
    with signals.deferred(f"undoing {fault_id}"):
        try:
            proof = undo_and_prove(fault, cluster, kube, fault_id, undo)
        except FaultUndoFailed as exc:
            return "failed", str(exc)
        if settle_ledger is not None:
            settle_ledger("undone")
        objects.settle_or_warn(kube, fault_id)
    return "undone", proof
