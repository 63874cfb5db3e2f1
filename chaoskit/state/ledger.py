"""The fault ledger: a write-ahead record of every fault, so none is ever left behind.

Before a fault acts, it appends an ``inject`` line holding everything needed to
undo it (which node to start, which rule to delete) and the process that
injected it. After it is undone, it appends a ``settle`` line. A process
that dies between the two (SIGKILL, a power cut) leaves an unsettled entry;
:func:`chaoskit.faults.sweeper.sweep` finds it at the next start, or when a user
runs ``chaoskit cleanup``, and undoes it from the recorded data alone.

The file is JSON lines, appended with ``O_APPEND`` and fsynced, one file per
cluster under ``$CHAOSKIT_CACHE/ledger/`` (see :func:`ledger_file_name`: a kind
name as it is, any other context name as a slug plus a hash). Entries of
processes that are still alive are never swept: they belong to a run in
progress.

A process is known by its boot id, pid and start time (:func:`process_alive`).
A pid alone is not enough: pids are reused, and containers (CI jobs) share the
host's boot id while each numbers its processes from 1, so the pid of a run
killed in one container is soon another, unrelated process. A process with the
recorded pid but another start time is that unrelated process: the owner is
dead. Lines written before the start time was recorded are judged by boot id
and pid alone, as they were then.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import time
from collections.abc import Collection
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from chaoskit import cache
from chaoskit.state.owners import command_line, current_boot_id, process_alive, process_started_at


@dataclass(frozen=True)
class LedgerEntry:
    """One injected fault, as recorded before it acted."""

    fault_id: str
    """Unique id; also the mark on the cluster objects and rules it touches."""
    kind: str
    """The fault kind, which names its undo function."""
    cluster: str
    """The cluster's name."""
    undo: dict[str, Any]
    """What the undo function needs, JSON-serialisable."""
    pid: int = field(default_factory=os.getpid)
    """The process that injected it."""
    boot_id: str = field(default_factory=current_boot_id)
    """The machine boot it happened in (a pid from an earlier boot is dead)."""
    at: float = field(default_factory=time.time)
    """When it was recorded (Unix time)."""
    started_at: float | None = field(default_factory=lambda: process_started_at(os.getpid()))
    """When process ``pid`` started (Unix time; the default is this process's, like ``pid``'s);
    None in lines written before it was recorded."""

    host: str = field(default_factory=socket.gethostname)
    """The machine the injecting process ran on."""
    command: str = field(default_factory=lambda: command_line())
    """Its command line, shortened (``pytest experiments/``, ``chaoskit run web.chaos.yaml``)."""
    pods: tuple[str, ...] = ()
    """``namespace/name`` of the pods it was injected on (none for a node-wide fault, or in a line written before
    they were recorded): what ``-n``/``-l`` of ``status``, ``cleanup`` and ``abort`` match."""

    def owner_alive(self) -> bool:
        """Whether the process that injected it still runs (then it is not residue)."""
        return process_alive(self.pid, self.boot_id, self.started_at)


_ENTRY_FIELDS = frozenset(f.name for f in fields(LedgerEntry))


class Ledger:
    """The ledger file of one cluster."""

    def __init__(self, cluster: str, directory: Path | None = None) -> None:
        self.cluster = cluster
        base = directory or cache.root() / "ledger"
        base.mkdir(parents=True, exist_ok=True)
        self.path = base / ledger_file_name(cluster)
        _adopt_legacy_file(base, cluster, self.path)

    def record(self, entry: LedgerEntry) -> None:
        """Write-ahead: call before the fault acts."""
        self._append({"op": "inject", **asdict(entry)})

    def settle(self, fault_id: str, how: str = "undone") -> None:
        """Mark a fault undone (``how``: ``undone``, proven; ``moot``, its targets are gone)."""
        self._append({"op": "settle", "fault_id": fault_id, "at": time.time(), "how": how})

    def abort(self, fault_ids: list[str], by: str, scoped: bool = False) -> float:
        """Record that ``by`` (``chaoskit abort``, say) aborted every fault of the cluster (``scoped``: only
        ``fault_ids``, those within its ``-n``/``-l``): the runs see it and stop (:meth:`aborts`). Returns the time
        recorded."""
        at = time.time()
        self._append({"op": "abort", "fault_ids": fault_ids, "at": at, "by": by, "pid": os.getpid(), "scoped": scoped})
        return at

    def aborts(self, since: float, fault_ids: Collection[str] = ()) -> list[dict[str, Any]]:
        """The abort lines recorded at or after ``since`` (Unix time) that stop a run owning ``fault_ids``, oldest
        first: every whole-cluster abort, and a scoped one that names one of those faults."""
        if not self.path.exists():
            return []
        found = []
        for line in self.path.read_text().splitlines():
            if '"abort"' not in line:
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                continue
            if data.get("op") != "abort" or float(data.get("at", 0)) < since:
                continue
            if not data.get("scoped") or set(data.get("fault_ids") or ()) & set(fault_ids):
                found.append(data)
        return found

    def size(self) -> int:
        """The file's size in bytes (0 when there is none): a cheap test of whether anything was appended."""
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def unsettled(self) -> list[LedgerEntry]:
        """Entries injected and not yet undone, oldest first."""
        open_entries: dict[str, LedgerEntry] = {}
        if not self.path.exists():
            return []
        for line in self.path.read_text().splitlines():
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by a crash mid-write; its fault never acted
            if data.get("op") == "inject":
                # A field a newer chaoskit added is ignored: its entry must still be swept here.
                known = {key: value for key, value in data.items() if key in _ENTRY_FIELDS}
                known.setdefault("started_at", None)  # an older line: not this process's start time
                known["pods"] = tuple(known.get("pods") or ())
                open_entries[data["fault_id"]] = LedgerEntry(**known)
            elif data.get("op") == "settle":
                open_entries.pop(data["fault_id"], None)
        return list(open_entries.values())

    def clear(self) -> list[LedgerEntry]:
        """Delete the ledger file, when its cluster is gone (its faults went with it).

        Returns the entries that were still unsettled, for the caller to report.
        """
        dropped = self.unsettled()
        self.path.unlink(missing_ok=True)
        return dropped

    def _append(self, data: dict[str, Any]) -> None:
        line = (json.dumps(data, sort_keys=True) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)


_PLAIN_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,99}")


def ledger_file_name(cluster: str) -> str:
    """The ledger's file name for a cluster name, safe for any kubeconfig context name.

    A kind cluster's name (lower-case letters, digits, ``-``) is used as it is, so
    ``chaoskit`` keeps ``chaoskit.jsonl``. Any other name (an EKS ARN with ``:`` and
    ``/``, a GKE ``gke_project_zone_name``) becomes a readable slug plus a hash of the
    whole name, joined by a ``.`` that no kind name holds: two names never share a file.
    """
    if _PLAIN_NAME.fullmatch(cluster):
        return f"{cluster}.jsonl"
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", cluster).strip("_-")[:80] or "context"
    digest = hashlib.sha256(cluster.encode()).hexdigest()[:12]
    return f"{slug}.{digest}.jsonl"


def _adopt_legacy_file(base: Path, cluster: str, path: Path) -> None:
    """Move a ledger that chaoskit named ``<cluster>.jsonl`` before names were made safe to its new name.

    Only a name without ``/`` can have one (with a ``/``, writing it failed); its
    unsettled entries may be faults a killed run left, still to be undone.
    """
    legacy = base / f"{cluster}.jsonl"
    if legacy == path or "/" in cluster or "\0" in cluster or path.exists():
        return
    try:
        legacy.rename(path)
    except OSError:
        pass  # none (or another process moved it first), or a name no file could ever have had
