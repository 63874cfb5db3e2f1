"""Faults and owners recorded in the cluster itself, so residue is undone when nothing on the runner survives.

The host ledger (:mod:`.ledger`) lives on the runner: a runner that dies with
its machine takes the record of its faults with it, and a pid says nothing to
a second machine. So every chaoskit process that records a fault or makes a
test namespace in a cluster also keeps, from then on, an **owner Lease** there (``coordination.k8s.io/v1``, namespace
``chaoskit-system``), renewed every :data:`RENEW_SECONDS` by a thread of its
own and deleted when the process exits. Everything it leaves names that Lease:

* every fault with something to undo is, before it acts, a **fault object**:
  a ConfigMap labelled :data:`FAULT_LABEL` holding the fault's kind and undo
  data (what its class's ``revert`` needs, as in the ledger), the owner's
  host, pid and command, and per node a bash script that undoes it there
  (``undo.NODE``, from the class's :meth:`~chaoskit.faults.base.Fault.agent_undo`);
* every test namespace carries the Lease's name (see :mod:`chaoskit.namespaces`).

The injector agent on each node (:mod:`chaoskit.agent.injector`) runs its
node's undo script once the owner's Lease has gone unrenewed for its duration,
and marks the object ``undone.NODE``. ``chaoskit cleanup``, from any machine,
undoes and proves what the objects of expired owners record, and removes the
objects. A fault's own exit removes its object once its undo is proven.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chaoskit.adapters.kube import ApiError
from chaoskit.adapters.nodes import INJECTOR_NAME
from chaoskit.adapters.shell import say, warn
from chaoskit.agent import actions
from chaoskit.agent.actions import Refused
from chaoskit.agent.injector import GROUP, PLURAL, VERSION
from chaoskit.agent.records import DIGEST, MAX_UNDO_TEXT, crd
from chaoskit.errors import ClusterError
from chaoskit.faults.validate import check_undo
from chaoskit.state.leases import NAMESPACE, lease_expired, owner, owner_leases

if TYPE_CHECKING:
    from chaoskit.adapters.kube import Kube
    from chaoskit.cluster.base import Cluster

FAULT_LABEL = "chaoskit.io/fault"
OWNER_LABEL = "chaoskit.io/owner"
"""On fault objects and test namespaces: the name of the owner's Lease."""


def object_name(fault_id: str) -> str:
    return f"chaoskit-fault-{fault_id}"


def namespaces_of(undo: dict[str, Any]) -> tuple[str, ...]:
    """The Kubernetes namespaces of a fault's targets, from its undo data (pods named ``namespace/name``)."""
    found = set()
    for item in undo.get("namespaces") or []:
        if len(item) > 3 and "/" in str(item[3]):
            found.add(str(item[3]).split("/", 1)[0])
    for item in undo.get("containers") or []:
        for key in ("target", "pod"):
            if "/" in str(item.get(key, "")):
                found.add(str(item[key]).split("/", 1)[0])
    return tuple(sorted(found))


_crd_seen: set[str] = set()


def ensure_crd(kube: Kube) -> None:
    """Create the Fault CRD when the cluster lacks it (kind: the runner is its admin); elsewhere a cluster
    admin installs it with the agent, and a runner without the right is told so."""
    key = f"{kube.kubeconfig}/{kube.context}"
    if key in _crd_seen:
        return
    name = f"{PLURAL}.{GROUP}"
    wanted = crd()
    current = kube.get("CustomResourceDefinition", name, api_version="apiextensions.k8s.io/v1")
    digest = wanted["metadata"]["annotations"][DIGEST]
    if current is None or (current["metadata"].get("annotations") or {}).get(DIGEST) != digest:
        try:
            kube.apply([wanted])
        except Exception as exc:
            raise ClusterError(
                f"the cluster has no {name} CustomResourceDefinition, and it could not be created ({exc}); "
                "a cluster admin installs it with 'chaoskit agent install'"
            ) from None
        kube.wait_established(name)
    _crd_seen.add(key)


def record(
    cluster: Cluster,
    kube: Kube,
    fault_id: str,
    kind: str,
    undo: dict[str, Any],
    steps: dict[str, list[dict[str, Any]]],
    *,
    namespaces: tuple[str, ...] = (),
    pods: tuple[str, ...] = (),
    allow_control_plane: bool = False,
) -> None:
    """Write the fault's record before the fault acts (write-ahead, like the ledger): its undo data for the
    runners' sweep, and per node the typed steps an agent runs to undo it there."""
    lease = owner(cluster).ensure(kube)
    ensure_crd(kube)
    for items in steps.values():
        actions.check_steps(items)  # a step this side built wrong is a bug: never written
    body: Any = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Fault",
        "metadata": {"name": object_name(fault_id), "labels": {FAULT_LABEL: fault_id, OWNER_LABEL: lease}},
        "spec": {
            "faultId": fault_id,
            "kind": kind,
            "ownerLease": lease,
            "owner": _who(),
            "undo": json.dumps(undo),
            "namespaces": sorted(set(namespaces) | {p.split("/", 1)[0] for p in pods}),
            "pods": list(pods),
            "allowControlPlane": allow_control_plane,
            "nodes": {node: {"undo": items} for node, items in steps.items()},
        },
    }
    try:
        kube.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, body)
    except ApiError as exc:
        raise ClusterError(f"cannot record fault {fault_id} in the cluster: {exc.reason}") from None


def settle(kube: Kube, fault_id: str) -> None:
    """Remove a fault's record once its undo is proven (gone already is fine)."""
    try:
        kube.custom.delete_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, object_name(fault_id), _request_timeout=10
        )
    except ApiError as exc:
        if exc.status != 404:
            raise ClusterError(f"cannot remove the cluster record of fault {fault_id}: {exc.reason}") from None


def settle_or_warn(kube: Kube, fault_id: str) -> None:
    """:func:`settle`, for a fault whose undo is proven already: a failure is a warning line, and the record
    stays for ``chaoskit cleanup`` (which proves the undo again and removes it)."""
    try:
        settle(kube, fault_id)
    except ClusterError as exc:
        warn(f"warning: {exc}; 'chaoskit cleanup' removes it")


def _patch_spec(kube: Kube, fault_id: str, spec: dict[str, Any]) -> None:
    try:
        kube.custom.patch_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, object_name(fault_id), {"spec": spec}
        )
    except ApiError as exc:
        raise ClusterError(f"cannot ask the agents about fault {fault_id}: {exc.reason}") from None


def ask_inject(kube: Kube, fault_id: str, node: str, steps: list[dict[str, Any]]) -> None:
    """Ask the agent on ``node`` to inject by ``steps`` (once; answered in its status)."""
    actions.check_steps(steps, actions.INJECT_OPS)
    _patch_spec(kube, fault_id, {"nodes": {node: {"inject": steps}}})


def ask_undo(kube: Kube, fault_id: str) -> None:
    """Ask every agent of the record to run its undo steps now."""
    _patch_spec(kube, fault_id, {"undoRequested": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})


def read(kube: Kube, fault_id: str) -> dict[str, Any] | None:
    """The record as the API has it; None when it is gone."""
    try:
        obj: Any = kube.custom.get_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, object_name(fault_id), _request_timeout=10
        )
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise ClusterError(f"cannot read the record of fault {fault_id}: {exc.reason}") from None
    return dict(obj)


def node_statuses(obj: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """A record's status by node, as the agents wrote it."""
    nodes = ((obj or {}).get("status") or {}).get("nodes") or {}
    return {node: status for node, status in nodes.items() if isinstance(status, dict)}


def node_status(obj: dict[str, Any] | None, node: str) -> dict[str, Any]:
    return dict(node_statuses(obj).get(node) or {})


def node_marks(obj: dict[str, Any] | None, key: str) -> dict[str, dict[str, Any]]:
    """Each node's ``key`` mark (``undone``, ``injected``...) in a record's status, by node."""
    return {node: dict(status[key]) for node, status in node_statuses(obj).items() if key in status}


def await_mark(kube: Kube, fault_id: str, node: str, done: str, timeout: float) -> dict[str, Any]:
    """Wait, on the watch API, until the agent on ``node`` marks the fault ``done`` (``injected``, ``undone``);
    return its mark.

    A mark of failure or refusal (``injectFailed``, ``refused``) raises at once
    with the agent's reason; no mark within ``timeout`` (no agent on the node,
    or one that is stuck) raises too, with the agent's last failed try if there
    was one.
    """
    action = "inject" if done == "injected" else "undo"
    failed_key = f"{action}Failed"
    ends = (done, failed_key, "refused") if action == "inject" else (done, "refused")

    def marked(obj: dict[str, Any] | None) -> bool:
        return obj is None or any(key in node_status(obj, node) for key in ends)

    waited = kube.wait_custom(GROUP, VERSION, NAMESPACE, PLURAL, object_name(fault_id), marked, timeout)
    status = node_status(read(kube, fault_id), node)
    if done in status:
        mark: dict[str, Any] = status[done]
        return mark
    if "refused" in status:
        raise ClusterError(f"the injector on {node} refused {fault_id}: {status['refused'].get('reason')}")
    failed = status.get(failed_key)
    if waited and failed:  # only an inject ends the wait on a failure
        raise ClusterError(f"the injector on {node} could not {action} {fault_id}: {failed.get('output')}")
    extra = f"; its last try failed: {str(failed.get('output'))[-300:]}" if failed else ""
    raise ClusterError(
        f"the injector on {node} did not {action} {fault_id} within {timeout:g} s "
        f"(is {INJECTOR_NAME} running there?){extra}"
    )


@dataclass(frozen=True)
class FaultObject:
    """A fault as the cluster records it."""

    fault_id: str
    kind: str
    undo: dict[str, Any]
    owner_lease: str
    owner: dict[str, Any]
    """``host``, ``pid`` and ``command`` of the process that injected it."""
    nodes: tuple[str, ...]
    """The nodes with undo steps."""
    undone_on: tuple[str, ...]
    """The nodes whose agent has run its undo steps."""
    owner_alive: bool
    """Whether its owner's Lease is still renewed."""
    refused: str = ""
    """Why the record cannot be used (a field that does not validate, in it or as an agent judged it)."""
    agent_marks: dict[str, dict[str, Any]] | None = None
    """Each node's status, as its agent wrote it."""
    pods: tuple[str, ...] = ()
    """``namespace/name`` of the pods it holds (for the blast-radius cap of faults that follow)."""

    def as_json(self) -> dict[str, Any]:
        """What ``chaoskit status`` and ``chaoskit agent status`` say of it with ``-o json``."""
        return {
            "faultId": self.fault_id,
            "kind": self.kind,
            "owner": dict(self.owner),
            "ownerAlive": self.owner_alive,
            "undoneOn": list(self.undone_on),
        }


def listed(kube: Kube, known_leases: list[Any] | None = None) -> list[FaultObject]:
    """Every fault record in the cluster, with whether its owner is alive (judged from ``known_leases`` when
    the caller has just read them); none when the Fault CRD or ``chaoskit-system`` is absent. A record
    whose fields do not validate is listed with ``refused`` saying why; its undo data is then empty."""
    try:
        listing: Any = kube.custom.list_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, label_selector=FAULT_LABEL, _request_timeout=30
        )
        lease_items = owner_leases(kube) if known_leases is None else known_leases
        leases = {lease.metadata.name: lease for lease in lease_items}
    except ApiError as exc:
        if exc.status == 404:
            return []
        raise ClusterError(f"cannot read the faults recorded in the cluster: {exc.reason}") from None
    return [_fault_object(item, leases) for item in listing.get("items") or []]


def _fault_object(item: dict[str, Any], leases: dict[str, Any]) -> FaultObject:
    meta, spec = item.get("metadata") or {}, item.get("spec") or {}
    marks = node_statuses(item)
    lease_name = str(spec.get("ownerLease", ""))
    lease = leases.get(lease_name)
    nodes = tuple(sorted(str(n) for n in (spec.get("nodes") or {})))
    refused, undo = "", {}
    try:
        fault_id = actions._name(spec.get("faultId"), "spec.faultId")
        actions._name(lease_name, "spec.ownerLease")
        for node in nodes:
            actions.check_node(node, "spec.nodes")
        raw = spec.get("undo", "{}")
        if not isinstance(raw, str) or len(raw) > MAX_UNDO_TEXT:
            raise Refused("spec.undo is not JSON text")
        undo = json.loads(raw)
        check_undo(undo, "spec.undo")
    except (Refused, ValueError) as exc:
        refused, undo = str(exc), {}
        fault_id = str(meta.get("name", "?")).removeprefix("chaoskit-fault-")
    return FaultObject(
        fault_id=fault_id,
        kind=str(spec.get("kind", "?"))[:63],
        undo=undo,
        owner_lease=lease_name,
        owner=dict(spec["owner"]) if isinstance(spec.get("owner"), dict) else {},
        nodes=nodes,
        undone_on=tuple(n for n in nodes if "undone" in (marks.get(n) or {})),
        owner_alive=lease is not None and not lease_expired(lease),
        refused=refused,
        agent_marks=marks,
        pods=tuple(str(p) for p in spec.get("pods") or [] if isinstance(p, str))[:1000],
    )


def sweep_leases(kube: Kube) -> list[str]:
    """Delete owner Leases expired for good (nothing renews them); return their names."""
    removed: list[str] = []
    try:
        leases = owner_leases(kube)
    except ApiError:
        return removed
    referenced = {f.owner_lease for f in listed(kube, leases)}
    for lease in leases:
        if lease_expired(lease) and lease.metadata.name not in referenced:
            try:
                kube.coordination.delete_namespaced_lease(lease.metadata.name, NAMESPACE, _request_timeout=10)
                removed.append(lease.metadata.name)
            except ApiError:
                pass
    if removed:
        say(f"removed {len(removed)} expired owner lease(s)")
    return removed


def _who() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "command": _command()}


def _command() -> str:
    from chaoskit.state.owners import command_line

    return command_line()
