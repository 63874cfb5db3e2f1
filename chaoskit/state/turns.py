"""Turns between chaoskit runs that share a cluster, from one machine or many: no two runs' faults act on the
same node at once, and no run's experiment is in progress while another run's node-wide fault acts.

The turns are held in the cluster itself, as ``coordination.k8s.io/v1`` Leases in ``chaoskit-system``
labelled :data:`LOCK_LABEL`: one per node (``chaoskit-lock-node-NODE``) and one for the experiments
(``chaoskit-lock-experiments``). A Lease's annotation :data:`HOLDERS` lists who holds it, each by the name of
its run's **owner Lease** (:mod:`chaoskit.faults.objects`), with the mode, the fault and the run's host, pid
and command. Every change is a compare-and-swap on the Lease's ``resourceVersion``: of two runners that write
at once, one wins and the other reads again. A holder whose owner Lease is gone or has expired (its run died
without letting go) no longer counts and is dropped on the next write, so a dead runner's turns end with its
owner Lease, about :data:`chaoskit.faults.objects.LEASE_SECONDS` plus the clock margin after its last renewal.

**Nodes.** Every fault, once planned, holds each node it acts on until its undo is proven. By default it holds
it alone; with ``Safety(share_nodes=True)`` (``--chaos-share-nodes``) the faults that stay inside their pods
share nodes with other runs' such faults, and a *node-wide* fault (node drain, failure or partition, zone
failure, CPU stress, disk fill: it touches every pod of its nodes) always holds its nodes alone. A fault takes
all its nodes or none (taken in name order, let go on the first refusal), so two faults never each hold half
of what the other needs.

**Experiments.** An experiment holds the experiments Lease *shared* while it runs. A node-wide fault holds it
*exclusive*: it waits until no other run's experiment is in progress, and while it waits it is *queued*, so no
other run's experiment starts in the meantime (writers are not starved). A node-wide fault inside an experiment
lets go of its own experiment's share while it waits, so two experiments that each want one do not wait for
each other for ever: the second waits until the first is undone and the first's experiment has ended. After
the fault its own experiment's share comes back in the same write that ends the exclusive hold, so no other
node-wide fault lands in its recovery.

Within one process (one owner), turns are counted, not taken twice. A run waiting says for whom, from the
Lease (what, host/pid, command), and gives up after ``wait_seconds`` with
:class:`~chaoskit.errors.FaultBlocked`. Only steps local to one machine (building an image, creating a kind
cluster, loading an image into its nodes) use file locks (:mod:`chaoskit.state.locks`).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from chaoskit.adapters.kube import NamespaceMissing
from chaoskit.adapters.nodes import INJECTOR_NAMESPACE
from chaoskit.adapters.shell import say
from chaoskit.errors import FaultBlocked

if TYPE_CHECKING:
    from chaoskit.adapters.kube import Kube

NAMESPACE = INJECTOR_NAMESPACE
LOCK_LABEL = "chaoskit.io/lock"
HOLDERS = "chaoskit.io/holders"
"""The Lease annotation that lists its holders (JSON: owner Lease name -> :class:`Holder` fields)."""
EXPERIMENTS = "chaoskit-lock-experiments"
WAIT_SECONDS = 900.0
"""How long a fault or an experiment waits for other runs before it gives up."""
POLL_SECONDS = 0.5
SAY_AFTER = 2.0
"""Seconds of waiting before a run first says for whom it waits."""
SAY_EVERY = 15.0
CAS_TRIES = 20
"""Compare-and-swap attempts on one Lease before an attempt counts as refused (other writers kept winning)."""

Mode = Literal["shared", "exclusive", "queued"]


@dataclass(frozen=True)
class Holder:
    """One run's hold on a lock Lease."""

    mode: Mode
    what: str
    """What holds it: the fault (``node-drain node-drain-1a2b``) or ``the experiment``."""
    who: str
    """host/pid of the run."""
    command: str
    since: float
    """When it took the hold (Unix time)."""

    def words(self) -> str:
        state = {"shared": "holds", "exclusive": "holds", "queued": "waits for"}[self.mode]
        return f"{self.what} of {self.who} ({self.command}) {state} it since {_clock(self.since)}"


def _clock(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%H:%M:%S UTC")


def node_lease(node: str) -> str:
    """The name of node ``node``'s lock Lease (a digest stands in for the end of a name too long for one)."""
    name = f"chaoskit-lock-node-{node}"
    if len(name) > 253:
        name = f"{name[:230]}-{hashlib.sha256(node.encode()).hexdigest()[:16]}"
    return name


def holders_of(lease: dict[str, Any] | None) -> dict[str, Holder]:
    """The holders a lock Lease lists (owner -> hold); entries that do not parse are left out."""
    if lease is None:
        return {}
    text = ((lease.get("metadata") or {}).get("annotations") or {}).get(HOLDERS) or "{}"
    try:
        raw = json.loads(text)
    except ValueError:
        return {}
    found: dict[str, Holder] = {}
    for owner, fields in raw.items() if isinstance(raw, dict) else ():
        try:
            holder = Holder(**fields)
        except TypeError:
            continue
        if holder.mode in ("shared", "exclusive", "queued"):
            found[str(owner)] = holder
    return found


def lease_body(name: str, holders: dict[str, Holder], resource_version: str | None) -> dict[str, Any]:
    """The lock Lease ``name`` listing ``holders``, to write at ``resource_version`` (None: create it)."""
    exclusive = [h.who for h in holders.values() if h.mode == "exclusive"]
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": NAMESPACE,
        "labels": {LOCK_LABEL: "true", "app.kubernetes.io/managed-by": "chaoskit"},
        "annotations": {HOLDERS: json.dumps({o: asdict(h) for o, h in sorted(holders.items())})},
    }
    if resource_version:
        metadata["resourceVersion"] = resource_version
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        # For kubectl's eye: who holds it alone, or how many share it. The holders annotation is the record.
        "spec": {"holderIdentity": exclusive[0] if exclusive else f"{len(holders)} holder(s)", "renewTime": now},
    }


Change = Callable[[dict[str, Holder]], "dict[str, Holder] | None"]
"""Given the live holders of a Lease (this owner's included), the holders it should list; None: leave it."""


@dataclass
class _Count:
    mode: Mode
    count: int


class Turns:
    """One owner's turns in one cluster: what it holds, counted per Lease; every method takes the API client.

    ``owner`` is the name of this run's owner Lease, which must exist (and be renewed) while it holds turns;
    ``who`` and ``command`` describe the run to the others; ``live_owners`` names the owner Leases still
    renewed (None when they cannot be read, and then no holder is taken for dead).
    """

    def __init__(
        self,
        owner: str,
        who: str,
        command: str,
        live_owners: Callable[[Kube], set[str] | None],
        ensure_namespace: Callable[[Kube], None] | None = None,
    ) -> None:
        self.owner = owner
        self.who = who
        self.command = command
        self.live_owners = live_owners
        self.ensure_namespace = ensure_namespace
        """Makes ``chaoskit-system`` again when it is gone (``kubectl delete -k`` of the agent removes it)."""
        self._nodes: dict[str, _Count] = {}
        self._experiments = 0
        self._exclusive = False
        self._guard = threading.RLock()

    # --- one Lease ----------------------------------------------------------------------------------------

    def _hold(self, mode: Mode, what: str) -> Holder:
        return Holder(mode, what, self.who, self.command, time.time())

    def _others(self, holders: dict[str, Holder]) -> dict[str, Holder]:
        """The holders other than this run (what is left when it lets go)."""
        return {o: h for o, h in holders.items() if o != self.owner}

    def _change(self, kube: Kube, name: str, change: Change) -> tuple[bool, dict[str, Holder]]:
        """Apply ``change`` to Lease ``name``'s live holders, compare-and-swap; return (written or nothing to
        write, the other live holders as last read). (False, others) when ``change`` declined."""
        for _ in range(CAS_TRIES):
            lease = kube.lease(name, NAMESPACE)
            listed = holders_of(lease)
            live = self.live_owners(kube) if set(listed) - {self.owner} else set()
            current = {o: h for o, h in listed.items() if o == self.owner or live is None or o in live}
            others = self._others(current)
            wanted = change(dict(current))
            if wanted is None:
                return False, others
            if wanted == listed:
                return True, others
            if lease is None and not wanted:
                return True, others
            version = (lease or {}).get("metadata", {}).get("resourceVersion")
            try:
                if kube.put_lease(lease_body(name, wanted, version)):
                    return True, others
            except NamespaceMissing:
                if self.ensure_namespace is None:
                    raise
                say(f"{NAMESPACE} is gone (deleted with the agent?): creating it again for the lock Leases")
                self.ensure_namespace(kube)
        return False, others

    # --- nodes ------------------------------------------------------------------------------------------

    def _take_node(self, kube: Kube, node: str, exclusive: bool, what: str) -> tuple[bool, dict[str, Holder]]:
        counted = self._nodes.get(node)
        if counted is not None and (counted.mode == "exclusive" or not exclusive):
            counted.count += 1
            return True, {}
        mode: Mode = "exclusive" if exclusive else "shared"

        def take(holders: dict[str, Holder]) -> dict[str, Holder] | None:
            others = list(self._others(holders).values())
            if any(h.mode == "exclusive" for h in others) or (exclusive and others):
                return None
            return {**holders, self.owner: self._hold(mode, what)}

        taken, others = self._change(kube, node_lease(node), take)
        if taken:
            if counted is None:
                self._nodes[node] = _Count(mode, 1)
            else:  # an upgrade from shared
                counted.mode, counted.count = "exclusive", counted.count + 1
        return taken, others

    def _let_go_node(self, kube: Kube, node: str) -> None:
        counted = self._nodes[node]
        counted.count -= 1
        if counted.count:
            return
        del self._nodes[node]
        self._change(kube, node_lease(node), self._others)

    def _take_nodes(self, kube: Kube, nodes: Sequence[str], exclusive: bool, what: str) -> dict[str, Holder] | None:
        """All of ``nodes`` or none: None when taken, else the holders that refused."""
        with self._guard:
            taken: list[str] = []
            for node in nodes:
                ok, others = self._take_node(kube, node, exclusive, what)
                if not ok:
                    for done in reversed(taken):
                        self._let_go_node(kube, done)
                    return others
                taken.append(node)
            return None

    @contextmanager
    def holding(
        self,
        kube: Kube,
        nodes: Sequence[str],
        *,
        exclusive: bool = True,
        what: str = "a fault",
        wait_seconds: float = WAIT_SECONDS,
        waited: Callable[[float], None] | None = None,
    ) -> Iterator[None]:
        """Hold the lock Leases of ``nodes`` for the block, waiting (up to ``wait_seconds``) while other runs'
        faults hold any of them; ``waited`` gets the seconds it waited. FaultBlocked when they never leave."""
        names = sorted(set(nodes))
        start = time.monotonic()
        _wait(
            lambda: self._take_nodes(kube, names, exclusive, what),
            start + wait_seconds,
            f"{what} waits for node(s) {', '.join(names)}",
            lambda spent: f"{what} waited {spent:.0f} s for node(s) {', '.join(names)} and gave up",
        )
        if waited is not None:
            waited(time.monotonic() - start)
        try:
            yield
        finally:
            with self._guard:
                for node in reversed(names):
                    self._let_go_node(kube, node)

    def held_here(self) -> dict[str, str]:
        """The nodes this owner holds now (node -> mode), for tests and diagnostics."""
        with self._guard:
            return {node: c.mode for node, c in self._nodes.items()}

    # --- experiments and node-wide faults -------------------------------------------------------------

    def _join(self, kube: Kube, what: str) -> dict[str, Holder] | None:
        with self._guard:
            if self._experiments or self._exclusive:
                self._experiments += 1
                return None

            def join(holders: dict[str, Holder]) -> dict[str, Holder] | None:
                if any(h.mode != "shared" for h in self._others(holders).values()):
                    return None  # a node-wide fault acts or waits: this experiment starts after it
                return {**holders, self.owner: self._hold("shared", what)}

            ok, others = self._change(kube, EXPERIMENTS, join)
            if ok:
                self._experiments += 1
                return None
            return others

    def _leave(self, kube: Kube) -> None:
        with self._guard:
            self._experiments -= 1
            if self._experiments == 0 and not self._exclusive:
                self._change(kube, EXPERIMENTS, self._others)

    @contextmanager
    def experiment_running(
        self, kube: Kube, wait_seconds: float = WAIT_SECONDS, what: str = "the experiment"
    ) -> Iterator[None]:
        """Hold the cluster against other runs' node-wide faults while an experiment runs (or ``what`` else must
        see every node up); waits (saying for whom) while one of them acts or waits to."""
        _wait(
            lambda: self._join(kube, what),
            time.monotonic() + wait_seconds,
            f"{what} waits for another run's node-wide fault to end",
            lambda spent: f"{what} waited {spent:.0f} s for another run's node-wide fault and gave up",
        )
        try:
            yield
        finally:
            self._leave(kube)

    def _mine_after(self, holders: dict[str, Holder], what: str) -> dict[str, Holder]:
        """``holders`` with this owner's entry as its experiments leave it: a share if one runs, else none."""
        rest = self._others(holders)
        if self._experiments:
            mine = holders.get(self.owner)
            return {**rest, self.owner: mine if mine and mine.mode == "shared" else self._hold("shared", what)}
        return rest

    def _alone(self, kube: Kube, what: str) -> dict[str, Holder] | None:
        with self._guard:
            got = False

            def alone(holders: dict[str, Holder]) -> dict[str, Holder] | None:
                nonlocal got
                got = False
                rest = self._others(holders)
                mine = holders.get(self.owner)
                if any(h.mode in ("exclusive", "queued") for h in rest.values()):
                    # Another run's node-wide fault acts or waits first; this one waits without its own
                    # experiment's share, so that one is not held back by it.
                    return rest if mine is not None else None
                if rest:  # other runs' experiments: wait for them to end, and let no new one start
                    return {**rest, self.owner: mine if mine and mine.mode == "queued" else self._hold("queued", what)}
                got = True
                return {self.owner: self._hold("exclusive", what)}

            ok, others = self._change(kube, EXPERIMENTS, alone)
            if ok and got:
                self._exclusive = True
                return None
            return others

    @contextmanager
    def cluster_alone(
        self,
        kube: Kube,
        what: str,
        wait_seconds: float = WAIT_SECONDS,
        waited: Callable[[float], None] | None = None,
    ) -> Iterator[None]:
        """Hold the cluster alone for a node-wide fault: no other run's experiment in progress, none starting."""
        with self._guard:
            nested = self._exclusive
        if nested:  # a zone failure's members, or a node fault inside another: this owner has it already
            yield
            return
        start = time.monotonic()
        try:
            _wait(
                lambda: self._alone(kube, what),
                start + wait_seconds,
                f"{what} waits for other runs' experiments to end (it touches every pod of its nodes)",
                lambda spent: f"{what} waited {spent:.0f} s for other runs' experiments and gave up",
            )
        except BaseException:
            with self._guard:  # a wait that gave up: back to this owner's share (if no one else acts now)

                def back(holders: dict[str, Holder]) -> dict[str, Holder] | None:
                    others = list(self._others(holders).values())
                    if self._experiments and any(h.mode == "exclusive" for h in others):
                        return self._others(holders)
                    return self._mine_after(holders, "the experiment")

                self._change(kube, EXPERIMENTS, back)
            raise
        if waited is not None:
            waited(time.monotonic() - start)
        try:
            yield
        finally:
            with self._guard:
                self._exclusive = False
                # Back to this owner's share (or none) in one write: no other node-wide fault in between.
                self._change(kube, EXPERIMENTS, lambda hs: self._mine_after(hs, "the experiment"))


def _wait(
    attempt: Callable[[], dict[str, Holder] | None], deadline: float, waiting: str, gave_up: Callable[[float], str]
) -> None:
    """Call ``attempt`` until it returns None (taken), saying ``waiting`` and for whom after :data:`SAY_AFTER` and every
    :data:`SAY_EVERY`; past ``deadline`` (monotonic), FaultBlocked saying ``gave_up(seconds)`` and for whom."""
    start = time.monotonic()
    said = 0.0
    while (others := attempt()) is not None:
        spent = time.monotonic() - start
        if time.monotonic() >= deadline:
            raise FaultBlocked(f"{gave_up(spent)} ({whom(others)}); nothing was injected")
        if spent >= SAY_AFTER and (said == 0.0 or spent - said >= SAY_EVERY):
            said = spent
            say(f"{waiting}: {whom(others)} ({spent:.0f} s)")
        time.sleep(POLL_SECONDS)


def whom(others: dict[str, Holder]) -> str:
    """The other runs in the way, in words."""
    if not others:
        return "another run, which has just let go"
    return "; ".join(h.words() for _, h in sorted(others.items(), key=lambda item: item[1].since))
