"""This process's **owner Lease** in a cluster, and whether other runs' are alive.

Every chaoskit process that records a fault, makes a test namespace or takes a turn in a cluster
(:mod:`chaoskit.state.turns`) keeps, from then on, an owner Lease there (``coordination.k8s.io/v1``, namespace
``chaoskit-system``), renewed every :data:`RENEW_SECONDS` by a thread of its own and deleted when the process
exits. Whatever it leaves names that Lease: fault objects (:mod:`chaoskit.faults.objects`), test namespaces
(:mod:`chaoskit.namespaces`), holds on lock Leases. Once the Lease has gone unrenewed for its duration (plus
:data:`CLOCK_MARGIN`, judged by a runner), its owner counts as dead: the agents undo its faults, the sweepers
remove its namespaces, and other runs stop waiting for its turns.
"""

from __future__ import annotations

import atexit
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from chaoskit.adapters.kube import ApiError
from chaoskit.adapters.nodes import INJECTOR_NAMESPACE
from chaoskit.adapters.shell import say
from chaoskit.errors import ClusterError
from chaoskit.state.owners import command_line
from chaoskit.state.turns import Turns

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from chaoskit.adapters.kube import Kube

NAMESPACE = INJECTOR_NAMESPACE


class Reachable(Protocol):
    """A cluster as the owner Lease needs it: its name, and API clients to it."""

    @property
    def name(self) -> str: ...

    def kube(self) -> AbstractContextManager[Kube]: ...


OWNER_LEASE_LABEL = "chaoskit.io/owner-lease"
LEASE_SECONDS = 15
"""How long an owner Lease lasts unrenewed: the agents undo an owner's faults this long after its last renewal."""
RENEW_SECONDS = 5.0
CLOCK_MARGIN = 10.0
"""Seconds of clock difference between machines tolerated when a *runner* (not an agent, which uses its
own clock) judges another owner's Lease expired: runners whose clocks differ by more could take a live
owner for a dead one."""


def _micro_time(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_expired(lease: Any, now: float | None = None) -> bool:
    """Whether a (typed) owner Lease went unrenewed past its duration plus :data:`CLOCK_MARGIN`."""
    renewed = lease.spec.renew_time or lease.spec.acquire_time
    if renewed is None:
        return True
    duration = float(lease.spec.lease_duration_seconds or LEASE_SECONDS)
    return bool((now or time.time()) > renewed.timestamp() + duration + CLOCK_MARGIN)


def ensure_namespace(kube: Kube) -> None:
    """Create ``chaoskit-system`` if it is not there."""
    try:
        body: Any = {"metadata": {"name": NAMESPACE, "labels": {"app.kubernetes.io/managed-by": "chaoskit"}}}
        kube.core.create_namespace(body)
    except ApiError as exc:
        if exc.status != 409:
            raise ClusterError(f"cannot create namespace {NAMESPACE}: {exc.reason}") from None


class Owner:
    """This process's owner Lease in one cluster, renewed by a daemon thread until :meth:`close`."""

    def __init__(self, cluster: Reachable) -> None:
        self.cluster = cluster
        self.name = f"chaoskit-owner-{uuid.uuid4().hex[:10]}"
        self.holder = f"{socket.gethostname()}/{os.getpid()}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.renew_error: str | None = None
        """The last renewal's failure, while renewals fail (the agents undo this owner's faults when they
        go on failing for :data:`LEASE_SECONDS`)."""
        self.renewed_mono = time.monotonic()
        """When the Lease was last created or renewed (monotonic)."""
        self.gaps: list[tuple[float, float]] = []
        """(from, to), monotonic, of every span the Lease went unrenewed for longer than it lasts."""

    def ensure(self, kube: Kube) -> str:
        """Create the Lease (and ``chaoskit-system``) on first use and start renewing it; return its name."""
        with self._lock:
            if self._thread is not None:
                return self.name
            ensure_namespace(kube)
            self._create(kube)
            self._thread = threading.Thread(target=self._renew, name="chaoskit-owner-lease", daemon=True)
            self._thread.start()
            atexit.register(self.close)
            return self.name

    def _create(self, kube: Kube) -> None:
        body: Any = self.lease()  # the client takes a plain body as well as its model
        try:
            try:
                kube.coordination.create_namespaced_lease(NAMESPACE, body)
            except ApiError as exc:
                if exc.status != 404:
                    raise
                ensure_namespace(kube)  # the namespace went (kubectl delete -k of the agent): make it again
                kube.coordination.create_namespaced_lease(NAMESPACE, body)
        except ApiError as exc:
            raise ClusterError(f"cannot create owner lease {NAMESPACE}/{self.name}: {exc.reason}") from None
        self._renewed()

    def lease(self) -> dict[str, Any]:
        """The owner Lease as it is created: held by this process, renewed by its thread."""
        now = _micro_time(time.time())
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.name,
                "labels": {OWNER_LEASE_LABEL: "true"},
                "annotations": {"chaoskit.io/command": _command()},
            },
            "spec": {
                "holderIdentity": self.holder,
                "leaseDurationSeconds": LEASE_SECONDS,
                "acquireTime": now,
                "renewTime": now,
            },
        }

    def _renewed(self) -> None:
        now = time.monotonic()
        if now - self.renewed_mono > LEASE_SECONDS:
            self.gaps.append((self.renewed_mono, now))
        self.renewed_mono = now
        self.renew_error = None

    def _renew(self) -> None:
        with self.cluster.kube() as kube:
            while not self._stop.wait(RENEW_SECONDS):
                try:
                    kube.coordination.patch_namespaced_lease(
                        self.name, NAMESPACE, {"spec": {"renewTime": _micro_time(time.time())}}, _request_timeout=5
                    )
                    self._renewed()
                except ApiError as exc:
                    if exc.status == 404:  # deleted under us (a sweep, by hand): whatever names it must keep an owner
                        say(f"owner lease {self.name} was deleted; creating it again")
                        try:
                            self._create(kube)
                        except ClusterError as again:
                            self.renew_error = str(again)
                    else:
                        self.renew_error = f"{exc.status}: {exc.reason}"
                except Exception as exc:  # the API unreachable: go on trying; the agents judge the rest
                    self.renew_error = f"{type(exc).__name__}: {exc}"

    def lapsed_since(self, since_mono: float) -> float | None:
        """The longest span since ``since_mono`` in which the Lease went unrenewed for longer than it lasts
        (so the agents may have undone this owner's faults), in seconds; None when there was none, or when
        there is no Lease (nothing was recorded in the cluster)."""
        if self._thread is None:
            return None
        spans = [end - start for start, end in self.gaps if end > since_mono]
        ongoing = time.monotonic() - self.renewed_mono
        if ongoing > LEASE_SECONDS:
            spans.append(ongoing)
        return max(spans) if spans else None

    def close(self) -> None:
        """Stop renewing and delete the Lease: whatever still names it counts as left by a dead owner."""
        with self._lock:
            if self._thread is None:
                return
            self._stop.set()
            self._thread.join(timeout=10)
            self._thread = None
        try:
            with self.cluster.kube() as kube:
                kube.coordination.delete_namespaced_lease(self.name, NAMESPACE, _request_timeout=10)
        except Exception:  # the cluster is gone, or the lease: either way it expires by itself
            pass


_owners: dict[str, Owner] = {}
_owners_lock = threading.Lock()


def owner(cluster: Reachable) -> Owner:
    """This process's owner in ``cluster`` (one per cluster name, made on first use)."""
    with _owners_lock:
        if cluster.name not in _owners:
            _owners[cluster.name] = Owner(cluster)
        return _owners[cluster.name]


_turns: dict[str, Turns] = {}


def turns(cluster: Reachable, kube: Kube) -> Turns:
    """This process's turns in ``cluster`` (:mod:`chaoskit.state.turns`), held in the name of its owner Lease,
    which this creates (and starts renewing) if it is not there yet."""
    own = owner(cluster)
    name = own.ensure(kube)
    with _owners_lock:
        found = _turns.get(cluster.name)
        if found is None or found.owner != name:
            found = _turns[cluster.name] = Turns(name, own.holder, _command(), live_owners, ensure_namespace)
        return found


def owner_leases(kube: Kube) -> list[Any]:
    """Every owner Lease (an ApiError when they cannot be read)."""
    leases: list[Any] = kube.coordination.list_namespaced_lease(NAMESPACE, label_selector=OWNER_LEASE_LABEL).items
    return leases


def live_owners(kube: Kube) -> set[str] | None:
    """Names of the owner Leases still renewed; None when ``chaoskit-system`` cannot be read."""
    try:
        leases = owner_leases(kube)
    except ApiError:
        return None
    return {lease.metadata.name for lease in leases if not lease_expired(lease)}


@contextmanager
def experiment_turn(cluster: Reachable, what: str) -> Iterator[None]:
    """Hold ``cluster`` against other runs' node-wide faults for the block, as an experiment does, on an API
    client of its own (for ``what`` else must see every node up: loading an image into kind's nodes)."""
    with cluster.kube() as kube, turns(cluster, kube).experiment_running(kube, what=what):
        yield


def _command() -> str:
    return command_line()
