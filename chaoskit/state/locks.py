"""File locks between chaoskit runs on one machine, for the steps that are local to it: bringing a kind cluster
up, building an image, loading one into kind's nodes, choosing a NodePort (``pytest -n`` workers, a game day
beside a test run).

They are ``flock(2)`` on files under ``$CHAOSKIT_CACHE/locks/<cluster>/``: a run that dies, even by SIGKILL,
releases them with its last open file. Turns between runs on the *cluster* (faults on nodes, experiments
against node-wide faults), from one machine or many, are held in the cluster itself: see
:mod:`chaoskit.state.turns`.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from chaoskit import cache
from chaoskit.state.ledger import ledger_file_name
from chaoskit.state.owners import current_boot_id, process_alive, process_started_at


def lock_dir(cluster: str) -> Path:
    """Where the locks of ``cluster`` live (one directory per cluster, named as its ledger is)."""
    path = cache.root() / "locks" / ledger_file_name(cluster).removesuffix(".jsonl")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _open(path: Path) -> int:
    """A descriptor of lock file ``path`` (made if need be), not inherited by the commands a run starts."""
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)


@contextmanager
def machine_lock(cluster: str, name: str) -> Iterator[None]:
    """Hold ``name`` of ``cluster`` alone among this machine's runs for the block (bringing the cluster up,
    loading an image, choosing a NodePort): the others wait. Released by the kernel if the run dies."""
    fd = _open(lock_dir(cluster) / f"{name}.lock")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


RESERVE_SECONDS = 120.0
"""How long a NodePort handed to one run stays out of the others' choice (time enough to create its Service)."""


def reserve_port(cluster: str, free: Sequence[int]) -> int | None:
    """The first of ``free`` (ports no Service uses) that no other run on this machine was handed in the last
    :data:`RESERVE_SECONDS`, now reserved for this one; None when every one is."""
    with machine_lock(cluster, "node-ports"):
        path = lock_dir(cluster) / "node-ports.json"
        now = time.time()
        try:
            taken = {int(p): Reservation(*held) for p, held in json.loads(path.read_text()).items()}
        except (OSError, ValueError, TypeError):
            taken = {}
        taken = {p: r for p, r in taken.items() if r.until > now and r.owner_alive()}
        chosen = next((p for p in free if p not in taken or taken[p].pid == os.getpid()), None)
        if chosen is not None:
            taken[chosen] = Reservation(os.getpid(), now + RESERVE_SECONDS, process_started_at(os.getpid()))
        path.write_text(json.dumps({str(p): list(r) for p, r in taken.items()}))
        return chosen


class Reservation(NamedTuple):
    """A NodePort handed to process ``pid`` (started at ``started_at``) until ``until`` (Unix time)."""

    pid: int
    until: float
    started_at: float | None = None

    def owner_alive(self) -> bool:
        return process_alive(self.pid, current_boot_id(), self.started_at)
