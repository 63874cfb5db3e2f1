"""What is broken right now, and the big red button: ``chaoskit status`` and ``chaoskit abort``.

Both read the cluster's fault ledger (:mod:`chaoskit.state.ledger`), which
every run of every kind (pytest, ``chaoskit run``, a script) writes before a
fault acts, so they see every fault of this machine's runs, live or dead; and
the faults the cluster itself records (:mod:`chaoskit.faults.objects`), which
adds those of other machines' runs.

``abort`` records an abort line in the ledger, then undoes and proves the undo
of every fault still in place, whoever injected it. A live run sees the line
within a fraction of a second: its experiment refuses new faults, undoes its
own (again, idempotently) and fails with "aborted externally by chaoskit
abort". A fault that was being injected at that moment is undone by its own
run as soon as its injection returns; ``abort`` reads the ledger again for
``settle_seconds`` and undoes anything that appeared meanwhile. Faults other
machines' runs recorded in the cluster are undone too; those runs do not read
this machine's ledger, so they learn of it when their own undo finds nothing
left to undo.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from chaoskit.adapters.kube import Kube
from chaoskit.cluster.base import Cluster
from chaoskit.errors import ClusterError
from chaoskit.faults import objects
from chaoskit.faults.scope import Scope
from chaoskit.faults.signals import deferred
from chaoskit.faults.sweeper import undo_entry, undo_object
from chaoskit.namespaces import NAMESPACE_LABEL, OWNER_PID, owner_alive
from chaoskit.state import leases
from chaoskit.state.ledger import Ledger, LedgerEntry


@dataclass(frozen=True)
class ActiveFault:
    entry: LedgerEntry
    alive: bool
    """Whether the process that injected it still runs (its run is going on)."""

    def line(self, now: float) -> str:
        e = self.entry
        since = time.strftime("%H:%M:%S", time.localtime(e.at))
        owner = f"pid {e.pid} on {e.host or 'this machine'}, {'running' if self.alive else 'DEAD (residue)'}"
        return f"{e.fault_id}  {e.kind}  since {since} ({now - e.at:.0f} s)  by {owner}: {e.command or '?'}"


@dataclass(frozen=True)
class TestNamespace:
    name: str
    owner_pid: str
    alive: bool
    phase: str
    age_seconds: float


@dataclass(frozen=True)
class Status:
    cluster: str
    faults: list[ActiveFault]
    namespaces: list[TestNamespace]
    elsewhere: list[objects.FaultObject] = field(default_factory=list)
    """Faults the cluster records that this machine's ledger does not know (other machines' runs)."""
    records_unreadable: str | None = None
    """Why the cluster's fault records could not be read, if they could not."""
    scope: str = ""
    """The ``-n``/``-l`` scope in words (empty: the whole cluster)."""
    outside: int = 0
    """Faults in place left out because they are outside the scope."""

    @property
    def residue(self) -> bool:
        """Whether anything here belongs to a run that is gone: its faults, or its test namespaces (but for those
        already being deleted: a run that just ended leaves its namespaces Terminating for a while)."""
        return (
            any(not f.alive for f in self.faults)
            or any(not f.owner_alive for f in self.elsewhere)
            or any(not ns.alive and ns.phase != "Terminating" for ns in self.namespaces)
        )

    def as_json(self, now: float | None = None) -> dict[str, Any]:
        """The same, for scripts (``chaoskit status -o json``)."""
        now = time.time() if now is None else now
        return {
            "cluster": self.cluster,
            "scope": self.scope or None,
            "outsideScope": self.outside,
            "residue": self.residue,
            "faults": [
                {
                    "faultId": f.entry.fault_id,
                    "kind": f.entry.kind,
                    "since": f.entry.at,
                    "ageSeconds": round(now - f.entry.at, 1),
                    "owner": {"pid": f.entry.pid, "host": f.entry.host, "command": f.entry.command},
                    "ownerAlive": f.alive,
                }
                for f in self.faults
            ],
            "elsewhere": [found.as_json() for found in self.elsewhere],
            "recordsUnreadable": self.records_unreadable,
            "namespaces": [
                {
                    "name": ns.name,
                    "phase": ns.phase,
                    "ownerPid": ns.owner_pid,
                    "ownerAlive": ns.alive,
                    "ageSeconds": round(ns.age_seconds, 1),
                }
                for ns in self.namespaces
            ],
        }

    def lines(self, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        within = f" within {self.scope}" if self.scope else ""
        out = [f"cluster {self.cluster}: {len(self.faults)} fault(s) in place{within}"]
        if self.outside:
            out.append(f"  ({self.outside} more outside it, node-wide faults among them: no -n or -l selects those)")
        out += [f"  {f.line(now)}" for f in self.faults]
        if self.records_unreadable:
            out.append(f"the faults recorded in the cluster could not be read: {self.records_unreadable}")
        if self.elsewhere:
            out.append(f"recorded in the cluster by other runs: {len(self.elsewhere)}")
        for found in self.elsewhere:
            who = found.owner
            state = "running" if found.owner_alive else "OWNER GONE (residue)"
            agents = f"; undone by the agent on {', '.join(found.undone_on)}" if found.undone_on else ""
            out.append(
                f"  {found.fault_id}  {found.kind}  by pid {who.get('pid', '?')} on {who.get('host', '?')}, "
                f"{state}: {who.get('command', '?')}{agents}"
            )
        out.append(f"test namespaces: {len(self.namespaces)}")
        for ns in self.namespaces:
            owner = f"owner pid {ns.owner_pid or '?'} {'running' if ns.alive else 'dead'}"
            out.append(f"  {ns.name}  {ns.phase}  {owner}  age {ns.age_seconds:.0f} s")
        if any(not f.alive for f in self.faults) or any(not f.owner_alive for f in self.elsewhere):
            out.append(f"faults of dead runs are residue: 'chaoskit cleanup --name {self.cluster}' undoes them")
        if self.faults or self.elsewhere:
            out.append(f"'chaoskit abort --name {self.cluster}' undoes every fault now, live runs' included")
        return out


def status(cluster: Cluster, kube: Kube, scope: Scope | None = None) -> Status:
    """The faults in place (from the ledger) and the test namespaces of the cluster; within ``scope`` (``-n``,
    ``-l``: see :mod:`chaoskit.faults.scope`) when one is given."""
    within = (scope or Scope()).resolve(kube)
    entries = Ledger(cluster.name).unsettled()
    faults = [ActiveFault(e, e.owner_alive()) for e in entries if within.holds(e)]
    known = {e.fault_id for e in entries}
    try:
        recorded = [found for found in objects.listed(kube) if found.fault_id not in known]
        unreadable = None
    except ClusterError as exc:  # no rights in chaoskit-system, say: the ledger's part still stands
        recorded, unreadable = [], str(exc)
    elsewhere = [f for f in recorded if within.holds(f)]
    outside = len(entries) - len(faults) + len(recorded) - len(elsewhere)
    namespaces = []
    now = time.time()
    labelled: list[Any] = kube.core.list_namespace(label_selector=NAMESPACE_LABEL).items
    listed = [ns for ns in labelled if within.covers_namespace(ns.metadata.name)]
    live = leases.live_owners(kube)  # None: unreadable, and then no owner is called dead
    for ns in listed:
        pid = (ns.metadata.labels or {}).get(OWNER_PID, "")
        created = ns.metadata.creation_timestamp
        phase = (ns.status.phase if ns.status else None) or "?"
        age = now - created.timestamp() if created else 0.0
        namespaces.append(TestNamespace(ns.metadata.name, pid, owner_alive(ns, live), phase, age))
    return Status(
        cluster.name,
        faults,
        sorted(namespaces, key=lambda n: n.name),
        elsewhere,
        unreadable,
        scope=within.scope.describe(),
        outside=outside,
    )


@dataclass
class AbortResult:
    undone: list[str] = field(default_factory=list)
    moot: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    """From the abort line until the last fault was undone and proven."""
    outside: int = 0
    """Faults in place left alone because they are outside the abort's scope (``-n``/``-l``)."""

    def file(self, fault_id: str, how: str, text: str) -> None:
        """Note one fault's outcome (``undone``, ``moot`` or ``failed``, as the sweeper's undo returns it)."""
        {"undone": self.undone, "moot": self.moot}.get(how, self.failed).append(f"{fault_id}: {text}")


def abort(cluster: Cluster, kube: Kube, settle_seconds: float = 2.0, scope: Scope | None = None) -> AbortResult:
    """Undo every fault of the cluster in place now, live runs' included, after telling them to stop; within
    ``scope`` (``-n``, ``-l``) when one is given: a run is told to stop when one of its faults is in it."""
    within = (scope or Scope()).resolve(kube)
    ledger = Ledger(cluster.name)
    by = f"chaoskit abort (pid {os.getpid()} on {socket.gethostname()})"
    started = time.monotonic()

    def covered(entries: list[LedgerEntry]) -> list[LedgerEntry]:
        return [e for e in entries if within.holds(e)]

    ledger.abort([e.fault_id for e in covered(ledger.unsettled())], by, scoped=not within.scope.whole)
    result = AbortResult()
    seen: set[str] = set()
    until = time.monotonic() + settle_seconds
    while True:
        pending = [e for e in covered(ledger.unsettled()) if e.fault_id not in seen]
        for entry in pending:
            seen.add(entry.fault_id)
            with deferred(f"aborting {entry.fault_id}"):
                result.file(entry.fault_id, *undo_entry(cluster, kube, ledger, entry))
        mine = {e.fault_id for e in ledger.unsettled()}
        others = [
            f for f in objects.listed(kube) if f.fault_id not in seen and f.fault_id not in mine and within.holds(f)
        ]
        for found in others:  # other machines' runs: only the cluster records them
            seen.add(found.fault_id)
            with deferred(f"aborting {found.fault_id}"):
                result.file(found.fault_id, *undo_object(cluster, kube, found))
        if pending or others:
            result.seconds = time.monotonic() - started
        if time.monotonic() >= until:
            left = [e for e in ledger.unsettled() if e.fault_id not in seen]
            result.outside = len(left) + sum(
                1 for f in objects.listed(kube) if f.fault_id not in seen and f.fault_id not in mine
            )
            return result
        time.sleep(0.2)
