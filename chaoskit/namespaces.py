"""Test namespaces and their owners: made by the pytest fixture and by scripts, swept when the owner died.

A test namespace carries the label :data:`NAMESPACE_LABEL` and its owner: the
name of the owner's Lease in the cluster (:mod:`chaoskit.faults.objects`), and
for reading at a glance its pid (a label), the machine's boot id and the
process's start time (annotations). The sweep at the start of every pytest
session and ``chaoskit cleanup`` delete those whose owner is dead: by its
Lease, expired or gone, which any machine can judge (two runners sharing a
cluster never delete each other's namespaces); for namespaces made before
owners had Leases, by :func:`~chaoskit.state.owners.process_alive`, the
ledger's check. Namespaces of runs still going are left alone.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from chaoskit.adapters.kube import POD_SECURITY_ENFORCE, Kube
from chaoskit.errors import UsageError
from chaoskit.faults.objects import OWNER_LABEL
from chaoskit.state import leases
from chaoskit.state.leases import live_owners
from chaoskit.state.owners import current_boot_id, process_alive, process_started_at

if TYPE_CHECKING:
    from chaoskit.cluster import Cluster

NAMESPACE_LABEL = "chaoskit.io/test-namespace"
OWNER_PID = "chaoskit.io/owner-pid"
OWNER_BOOT = "chaoskit.io/owner-boot-id"
OWNER_STARTED = "chaoskit.io/owner-started-at"


POD_SECURITY_LEVELS = ("privileged", "baseline", "restricted", "none")
"""The Pod Security levels a test namespace can enforce; ``none`` leaves it unlabelled (the cluster's default)."""
DEFAULT_POD_SECURITY = "baseline"
"""What a pytest session's test namespaces enforce unless told otherwise (``--chaos-pod-security``):
Kubernetes' baseline (no privileged containers, host namespaces, hostPath volumes or added capabilities beyond
the default set), the level most clusters' workload namespaces run at; a system under test that needs more
asks for it. Namespaces made outside pytest (a game day's ``namespace: auto``, a script's) are left to the
cluster's default unless their caller says."""


def check_pod_security(level: str) -> str:
    if level not in POD_SECURITY_LEVELS:
        raise UsageError(f"Pod Security level {level!r} is not one of {', '.join(POD_SECURITY_LEVELS)}")
    return level


def owned_namespace(name: str, owner_lease: str | None = None, pod_security: str = "none") -> dict[str, Any]:
    """The body of a test namespace owned by this process (and by its owner Lease, when given), enforcing
    the Pod Security level ``pod_security`` (1.23+; 1.20 ignores the label; ``none``: no label)."""
    annotations = {OWNER_BOOT: current_boot_id()}
    started_at = process_started_at(os.getpid())
    if started_at is not None:
        annotations[OWNER_STARTED] = repr(started_at)
    labels = {NAMESPACE_LABEL: "true", OWNER_PID: str(os.getpid())}
    if check_pod_security(pod_security) != "none":
        labels[POD_SECURITY_ENFORCE] = pod_security
    if owner_lease:
        labels[OWNER_LABEL] = owner_lease
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
    }


@contextmanager
def own_namespace(cluster: Cluster, kube: Kube, base: str = "test", pod_security: str = "none") -> Iterator[str]:
    """A test namespace of this process's own, named ``ck-<base>-<random>``, enforcing the Pod Security level
    ``pod_security``, deleted at the end (and swept by a later session if the process dies first). The
    ``namespace`` fixture is one per test; a module- or session-scoped fixture that deploys a system once for
    many tests makes its own with this."""
    stem = re.sub(r"[^a-z0-9-]+", "-", base.lower()).strip("-")[:40].strip("-") or "test"
    name = f"ck-{stem}-{uuid.uuid4().hex[:5]}"
    body: Any = owned_namespace(name, leases.owner(cluster).ensure(kube), pod_security)
    kube.core.create_namespace(body)
    try:
        kube.wait_for_default_service_account(name)
        yield name
    finally:
        kube.core.delete_namespace(name, propagation_policy="Background", grace_period_seconds=0)


def sweep_namespaces(kube: Kube, only: Callable[[str], bool] | None = None) -> list[str]:
    """Delete test namespaces whose owner died (those ``only`` accepts by name, when given); return their names.
    Live owners' are left alone."""
    labelled: list[Any] = kube.core.list_namespace(label_selector=NAMESPACE_LABEL).items
    leftovers = [ns for ns in labelled if only is None or only(ns.metadata.name)]
    live = live_owners(kube) if any(OWNER_LABEL in (ns.metadata.labels or {}) for ns in leftovers) else set()
    deleted = []
    for ns in leftovers:
        if owner_alive(ns, live):
            continue
        if ns.status.phase != "Terminating":
            kube.core.delete_namespace(ns.metadata.name, propagation_policy="Background")
            deleted.append(ns.metadata.name)
    return deleted


def owner_alive(ns: Any, live: set[str] | None) -> bool:
    """Whether a test namespace's owner still runs: by its owner Lease (among ``live``, the Leases still
    renewed; None when they could not be read, and then no owner is taken for dead), or for a namespace
    made before owners had Leases, by its pid, boot id and start time."""
    labels = ns.metadata.labels or {}
    if OWNER_LABEL in labels:
        return live is None or labels[OWNER_LABEL] in live
    pid = labels.get(OWNER_PID, "")
    annotations = ns.metadata.annotations or {}
    boot = annotations.get(OWNER_BOOT, "")
    return pid.isdigit() and process_alive(int(pid), boot, _started_at(annotations.get(OWNER_STARTED)))


def _started_at(text: str | None) -> float | None:
    """The owner's start time from a namespace annotation; None when absent (older sessions) or unreadable."""
    try:
        return float(text) if text else None
    except ValueError:
        return None
