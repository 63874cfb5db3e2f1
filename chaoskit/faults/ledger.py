"""The fault ledger: a write-ahead record of every fault, so none is ever left behind.

Before a fault acts, it appends an ``inject`` line holding everything needed to
undo it (which node to start, which rule to delete) and the id of the process
that injected it. After it is undone, it appends a ``settle`` line. A process
that dies between the two (SIGKILL, a power cut) leaves an unsettled entry;
:func:`chaoskit.faults.sweeper.sweep` finds it at the next start, or when a user
runs ``chaoskit cleanup``, and undoes it from the recorded data alone.

The file is JSON lines, appended with ``O_APPEND`` and fsynced, one file per
cluster under ``$CHAOSKIT_CACHE/ledger/``. Entries of processes that are still
alive are never swept: they belong to a run in progress.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chaoskit.provision import cache


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
    boot_id: str = field(default_factory=lambda: _boot_id())
    """The machine boot it happened in (a pid from an earlier boot is dead)."""
    at: float = field(default_factory=time.time)
    """When it was recorded (Unix time)."""

    def owner_alive(self) -> bool:
        """Whether the process that injected it still runs (then it is not residue)."""
        return process_alive(self.pid, self.boot_id)


class Ledger:
    """The ledger file of one cluster."""

    def __init__(self, cluster: str, directory: Path | None = None) -> None:
        self.cluster = cluster
        base = directory or cache.root() / "ledger"
        base.mkdir(parents=True, exist_ok=True)
        self.path = base / f"{cluster}.jsonl"

    def record(self, entry: LedgerEntry) -> None:
        """Write-ahead: call before the fault acts."""
        self._append({"op": "inject", **asdict(entry)})

    def settle(self, fault_id: str) -> None:
        """Mark a fault undone."""
        self._append({"op": "settle", "fault_id": fault_id, "at": time.time()})

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
                data.pop("op")
                open_entries[data["fault_id"]] = LedgerEntry(**data)
            elif data.get("op") == "settle":
                open_entries.pop(data["fault_id"], None)
        return list(open_entries.values())

    def _append(self, data: dict[str, Any]) -> None:
        line = (json.dumps(data, sort_keys=True) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)


def process_alive(pid: int, boot_id: str) -> bool:
    """Whether process ``pid`` of machine boot ``boot_id`` still runs."""
    if boot_id != _boot_id():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _not_zombie(pid)


def current_boot_id() -> str:
    """This machine boot's id (a pid is only meaningful within one boot)."""
    return _boot_id()


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def _not_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
