"""Locks between chaoskit runs that share a cluster from one machine (``pytest -n`` workers, a game day
beside a test run): no two runs' faults act on the same node at once, and no two bring the cluster up, load
an image or take a NodePort at once.

Every fault, once planned, holds a lock on each node it acts on until its undo is proven. By default the lock
is exclusive: a fault of another run on the same node waits for it. With ``Safety(share_nodes=True)``
(``--chaos-share-nodes``) the faults that stay inside their pods (a pod kill, a partition, an HTTP fault...)
share nodes with other runs' such faults; a *node-wide* fault (node drain, failure or partition, zone failure,
CPU stress, disk fill: it touches every pod of its nodes) always holds its nodes alone.

The locks are ``flock(2)`` on one file per node under ``$CHAOSKIT_CACHE/locks/<cluster>/``: a run that dies,
even by SIGKILL, releases them with its last open file, so no lock outlives its run (its faults are the
sweeper's, through the ledger). Faults of one process do not lock each other out: within a process a node's
lock is counted, not taken twice. A fault waiting for nodes says so, naming the other runs' faults from the
ledger, and gives up after ``wait_seconds`` with :class:`~chaoskit.errors.FaultBlocked`; it takes all its
nodes at once or none, so two faults never each hold half of what the other needs.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from chaoskit import cache
from chaoskit.adapters.shell import say
from chaoskit.errors import FaultBlocked
from chaoskit.state.ledger import Ledger, ledger_file_name
from chaoskit.state.owners import current_boot_id, process_alive, process_started_at

WAIT_SECONDS = 900.0
"""How long a fault waits for another run's faults to leave its nodes before it gives up."""
POLL_SECONDS = 0.25
SAY_EVERY = 15.0


@dataclass
class _Held:
    fd: int
    exclusive: bool
    count: int


_HELD: dict[Path, _Held] = {}
_GUARD = threading.Lock()


def lock_dir(cluster: str) -> Path:
    """Where the locks of ``cluster`` live (one directory per cluster, named as its ledger is)."""
    path = cache.root() / "locks" / ledger_file_name(cluster).removesuffix(".jsonl")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _path(cluster: str, node: str) -> Path:
    return lock_dir(cluster) / f"node-{node}.lock"


def _open(path: Path) -> int:
    """A descriptor of lock file ``path`` (made if need be), not inherited by the commands a run starts."""
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)


def _try_flock(fd: int, mode: int) -> bool:
    """flock ``fd`` in ``mode`` without waiting; False when another run holds it."""
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise
        return False
    return True


def _wait(
    attempt: Callable[[], bool], cluster: str, deadline: float, waiting: str, gave_up: Callable[[float], str]
) -> None:
    """Call ``attempt`` until it succeeds, saying ``waiting`` (and who holds what, from the ledger) after 2 s
    and every :data:`SAY_EVERY`; past ``deadline`` (monotonic), FaultBlocked saying ``gave_up(seconds)``."""
    start = time.monotonic()
    said = 0.0
    while not attempt():
        spent = time.monotonic() - start
        if time.monotonic() >= deadline:
            raise FaultBlocked(f"{gave_up(spent)} ({holders(cluster)}); nothing was injected")
        if spent >= 2.0 and (said == 0.0 or spent - said >= SAY_EVERY):
            said = spent
            say(f"{waiting}: {holders(cluster)} ({spent:.0f} s)")
        time.sleep(POLL_SECONDS)


def _try(path: Path, exclusive: bool) -> bool:
    """Take (or count once more) this process's lock on ``path`` without waiting; False if another run has it."""
    held = _HELD.get(path)
    if held is not None and (held.exclusive or not exclusive):
        held.count += 1
        return True
    fd = held.fd if held is not None else _open(path)
    if not _try_flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH):
        if held is None:
            os.close(fd)
        else:  # a failed upgrade may have dropped the shared lock (flock converts by unlocking first)
            fcntl.flock(fd, fcntl.LOCK_SH)
        return False
    if held is None:
        _HELD[path] = _Held(fd, exclusive, 1)
    else:
        held.exclusive, held.count = True, held.count + 1
    return True


def _release(path: Path) -> None:
    held = _HELD[path]
    held.count -= 1
    if held.count == 0:
        del _HELD[path]
        os.close(held.fd)  # closing the last descriptor releases the flock


def _take_all(paths: Sequence[Path], exclusive: bool) -> bool:
    with _GUARD:
        taken: list[Path] = []
        for path in paths:
            if not _try(path, exclusive):
                for done in reversed(taken):
                    _release(done)
                return False
            taken.append(path)
        return True


@contextmanager
def holding(
    cluster: str,
    nodes: Sequence[str],
    *,
    exclusive: bool = True,
    what: str = "a fault",
    wait_seconds: float = WAIT_SECONDS,
    waited: Callable[[float], None] | None = None,
) -> Iterator[None]:
    """Hold the locks of ``nodes`` of ``cluster`` for the block, waiting (up to ``wait_seconds``) while other
    runs' faults hold any of them; ``waited`` gets the seconds it waited. FaultBlocked when they never leave."""
    names = sorted(set(nodes))
    paths = [_path(cluster, n) for n in names]
    start = time.monotonic()
    _wait(
        lambda: _take_all(paths, exclusive),
        cluster,
        start + wait_seconds,
        f"{what} waits for node(s) {', '.join(names)}",
        lambda spent: (
            f"{what} waited {spent:.0f} s for node(s) {', '.join(names)}, held by another run's fault(s) all along"
        ),
    )
    if waited is not None:
        waited(time.monotonic() - start)
    try:
        yield
    finally:
        with _GUARD:
            for path in reversed(paths):
                _release(path)


def holders(cluster: str) -> str:
    """The other runs' faults in progress on ``cluster``, in words, from its ledger."""
    others = [e for e in Ledger(cluster).unsettled() if e.pid != os.getpid() and e.owner_alive()]
    if not others:
        return "another run's fault (one with nothing to undo, so not in the ledger)"
    return "; ".join(f"{e.kind} {e.fault_id} of pid {e.pid} ({e.command})" for e in others)


def held_here() -> dict[str, bool]:
    """The node locks this process holds now (file name -> exclusive), for tests and diagnostics."""
    with _GUARD:
        return {p.name: h.exclusive for p, h in _HELD.items()}


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


# --- experiments and node-wide faults -------------------------------------------------------------------
# An experiment holds the cluster's "experiments" lock shared while it runs. A node-wide fault holds it
# exclusive: it waits until no other run's experiment is in progress, and no other run's experiment starts
# (they queue at the "gate") until it is undone. A node-wide fault inside an experiment lets go of its own
# experiment's share while it waits, so two experiments that each want one do not wait for each other for
# ever: the second waits at the gate until the first is undone. After the fault this process's experiment
# takes its share back before the gate opens, so no other node-wide fault lands in its recovery.


@dataclass
class _Shared:
    fd: int
    count: int = 0
    exclusive: bool = False


_EXPERIMENTS: dict[str, _Shared] = {}


def _poll(fd: int, mode: int, deadline: float, waiting: str, cluster: str) -> None:
    """flock ``fd`` in ``mode``, waiting until ``deadline`` (monotonic); FaultBlocked then."""
    _wait(
        lambda: _try_flock(fd, mode),
        cluster,
        deadline,
        waiting,
        lambda spent: f"{waiting} for {spent:.0f} s and gave up",
    )


def _shared(cluster: str) -> _Shared:
    state = _EXPERIMENTS.get(cluster)
    if state is None:
        state = _EXPERIMENTS[cluster] = _Shared(_open(lock_dir(cluster) / "experiments.lock"))
    return state


def _gate(cluster: str) -> int:
    return _open(lock_dir(cluster) / "experiments-gate.lock")


@contextmanager
def experiment_running(
    cluster: str, wait_seconds: float = WAIT_SECONDS, what: str = "the experiment"
) -> Iterator[None]:
    """Hold the cluster against other runs' node-wide faults while an experiment runs (or ``what`` else must
    see every node up); waits (saying so) while one of them holds it or waits for it."""
    with _GUARD:
        state = _shared(cluster)
        if state.count == 0 and not state.exclusive:
            gate = _gate(cluster)
            try:
                deadline = time.monotonic() + wait_seconds
                waiting = f"{what} waits for another run's node-wide fault to end"
                _poll(gate, fcntl.LOCK_SH, deadline, waiting, cluster)
                _poll(state.fd, fcntl.LOCK_SH, deadline, waiting, cluster)
            finally:
                os.close(gate)
        state.count += 1
    try:
        yield
    finally:
        with _GUARD:
            state.count -= 1
            if state.count == 0 and not state.exclusive:
                fcntl.flock(state.fd, fcntl.LOCK_UN)


@contextmanager
def cluster_alone(
    cluster: str, what: str, wait_seconds: float = WAIT_SECONDS, waited: Callable[[float], None] | None = None
) -> Iterator[None]:
    """Hold the cluster alone for a node-wide fault: no other run's experiment in progress, none starting."""
    start = time.monotonic()
    deadline = start + wait_seconds
    with _GUARD:
        state = _shared(cluster)
        nested = state.exclusive
    if nested:  # a zone failure's members, or a node fault inside another: this process has it already
        yield
        return
    gate = _gate(cluster)
    try:
        if state.count:  # let go of this process's own experiment while it waits (see above)
            fcntl.flock(state.fd, fcntl.LOCK_UN)
        waiting = f"{what} waits for other runs' experiments to end (it touches every pod of its nodes)"
        _poll(gate, fcntl.LOCK_EX, deadline, waiting, cluster)
        _poll(state.fd, fcntl.LOCK_EX, deadline, waiting, cluster)
        state.exclusive = True
        if waited is not None:
            waited(time.monotonic() - start)
        try:
            yield
        finally:
            with _GUARD:
                state.exclusive = False
                # Back to this process's share (or none) while the gate is still shut to the others.
                fcntl.flock(state.fd, fcntl.LOCK_SH if state.count else fcntl.LOCK_UN)
    finally:
        if state.count and not state.exclusive:
            _try_flock(state.fd, fcntl.LOCK_SH)  # a wait that gave up: take this process's share back
        os.close(gate)  # releases the gate
