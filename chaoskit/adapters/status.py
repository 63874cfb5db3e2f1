"""What an object's status says, read from the API's objects and nothing else: a node Ready, a Lease renewed,
a pod Ready, a workload whole, a Service's ready endpoints. Pure functions over what :mod:`.kube` fetched;
they import no client.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal, get_args

from chaoskit.errors import SpecError

Obj = Any
"""An object of the official client's models, or the dict the API served."""


def node_ready(node: Obj, since: float | None = None) -> bool:
    """Whether a V1Node reports Ready=True (with a heartbeat after ``since``, a Unix time, if given).

    A node whose kubelet was just restarted still shows the Ready it posted
    before; only a heartbeat newer than the restart proves it is back.
    """
    for condition in node.status.conditions or []:
        if condition.type == "Ready":
            if condition.status != "True":
                return False
            beat = condition.last_heartbeat_time
            return since is None or (beat is not None and beat.timestamp() >= since)
    return False


def lease_renewed(lease: Obj, since: float) -> bool:
    """Whether a V1Lease was renewed at or after ``since`` (a Unix time).

    A node's kubelet renews its Lease in ``kube-node-lease`` every 10 s or so,
    while it posts its Ready condition only when something changed or every few
    minutes: a renewal newer than a restart is the quick proof that the kubelet
    runs again.
    """
    renewed = lease.spec.renew_time if lease.spec else None
    return renewed is not None and renewed.timestamp() >= since


def pod_ready(pod: Obj, since: float | None = None) -> bool:
    """Whether a V1Pod is Ready (and became so after ``since``, a Unix time, if given)."""
    if pod.metadata.deletion_timestamp is not None:
        return False
    for condition in pod.status.conditions or []:
        if condition.type == "Ready" and condition.status == "True":
            moved = condition.last_transition_time
            return since is None or (moved is not None and moved.timestamp() >= since)
    return False


def deployment_available(dep: Obj) -> bool:
    """Whether every desired replica of a V1Deployment is updated and ready."""
    want = dep.spec.replicas if dep.spec.replicas is not None else 1
    status = dep.status
    return bool(
        (status.observed_generation or 0) >= (dep.metadata.generation or 0)
        and (status.ready_replicas or 0) == want
        and (status.updated_replicas or 0) == want
        and (status.replicas or 0) == want
    )


WorkloadKind = Literal["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"]
"""The kinds of workload whose recovery can be watched."""
WORKLOAD_KINDS: tuple[WorkloadKind, ...] = get_args(WorkloadKind)


def check_workload_kind(kind: str) -> WorkloadKind:
    """``kind`` itself if it is a kind of workload the recovery watch follows; else a SpecError naming them."""
    if kind not in WORKLOAD_KINDS:
        raise SpecError(f"cannot watch a workload of kind {kind!r}: give kind= one of {', '.join(WORKLOAD_KINDS)}")
    return kind


def workload_counts(obj: dict[str, Any], kind: str) -> tuple[int, int, bool]:
    """(desired, ready, whole) of a workload, from its JSON as the API serves it (camelCase, as a watch sends it).

    Desired is ``spec.replicas`` (1 when unset, the API's default), or for a
    DaemonSet ``status.desiredNumberScheduled``. Whole means every desired
    replica ready and nothing left to roll out, by the kind's own status:

    * Deployment: ``readyReplicas`` and ``updatedReplicas`` both equal desired.
    * StatefulSet: ``readyReplicas`` equals desired; and, where the status
      carries them, ``currentRevision`` equals ``updateRevision`` and
      ``currentReplicas`` and ``updatedReplicas`` equal desired. Their absence
      proves nothing: some servers leave ``updatedReplicas`` out of a settled
      StatefulSet's status (kubernetes#76748).
    * DaemonSet: ``numberReady`` and ``updatedNumberScheduled`` both equal
      ``desiredNumberScheduled``.
    * ReplicaSet: ``readyReplicas`` equals desired.

    For every kind the status must have observed the object's current
    generation: counts written before a change of its spec do not describe it.
    A count the status leaves out is 0 (the API omits zero counts), except
    where said above.
    """
    kind = check_workload_kind(kind)
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    generation = meta.get("generation")
    observed = status.get("observedGeneration")
    current = generation is None or (observed is not None and observed >= generation)
    if kind == "DaemonSet":
        desired = int(status.get("desiredNumberScheduled") or 0)
        ready = int(status.get("numberReady") or 0)
        whole = ready == desired and int(status.get("updatedNumberScheduled") or 0) == desired
        return desired, ready, current and whole
    replicas = spec.get("replicas")
    desired = 1 if replicas is None else int(replicas)
    ready = int(status.get("readyReplicas") or 0)
    whole = ready == desired
    if kind == "Deployment":
        whole = whole and int(status.get("updatedReplicas") or 0) == desired
    elif kind == "StatefulSet":
        revisions = status.get("currentRevision"), status.get("updateRevision")
        if None not in revisions:
            whole = whole and revisions[0] == revisions[1]
        whole = whole and all(int(status[k]) == desired for k in ("currentReplicas", "updatedReplicas") if k in status)
    return desired, ready, current and whole


def workload_whole(obj: dict[str, Any], kind: str) -> bool:
    """Whether a workload (its JSON as the API serves it) is whole: see :func:`workload_counts`."""
    return workload_counts(obj, kind)[2]


SERVICE_NAME_LABEL = "kubernetes.io/service-name"
"""The label that ties an EndpointSlice to its Service."""


def ready_endpoints(slices: Iterable[dict[str, Any]]) -> int:
    """How many distinct endpoints are ready over a Service's EndpointSlices (their JSON, v1 or v1beta1).

    An endpoint counts unless ``conditions.ready`` is false: the API says a
    missing ready condition is to be read as ready. The same endpoint may show
    in two slices for a moment while the controller moves it (the API allows
    it), and once per address family in a dual-stack Service; it counts once,
    known by the object it targets, or by its addresses when it targets none.
    """
    ready: set[tuple[str, ...]] = set()
    for endpoint_slice in slices:
        for endpoint in endpoint_slice.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            target = endpoint.get("targetRef") or {}
            if target.get("name"):
                ready.add(("ref", str(target.get("kind")), str(target.get("namespace")), str(target["name"])))
            else:
                family = str(endpoint_slice.get("addressType"))
                ready.add(("addresses", family, *sorted(str(a) for a in endpoint.get("addresses") or [])))
    return len(ready)


def ready_addresses(endpoints: dict[str, Any]) -> int:
    """The ready addresses of a core v1 Endpoints object (its JSON)."""
    return sum(len(subset.get("addresses") or []) for subset in endpoints.get("subsets") or [])
