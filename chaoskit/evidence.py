"""What a failed night explains itself with: the cluster's own Events, and the last log lines of the pods.

Nobody watches a nightly run at 3 am. After every experiment the journal
keeps the Kubernetes Events of its namespaces and of the cluster's nodes
during the run (Killing, Scheduled, Started, NodeNotReady, TaintManagerEviction,
FailedScheduling...), each on the same clock as the load, so the HTML
timeline marks them beside the requests and the ready count; and for an
experiment that failed (or regressed), the last lines of the logs of the pods
involved: the workload's pods now (the replacements), the faults' targets
where their logs can still be read (a killed container's previous one), each
bounded in size.

Both are read through the API after the run, so they cost the run nothing;
an API that cannot be read leaves a note in their place, never an error of
the experiment.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from chaoskit.adapters.kube import Kube
from chaoskit.faults.base import FaultRecord

MAX_EVENTS = 300
"""The most Events kept per experiment (the newest win); a note says how many were left out."""
LOG_LINES = 20
LOG_BYTES = 4096
"""The most of each pod's log kept (its last bytes)."""
MAX_PODS = 12


@dataclass(frozen=True)
class ClusterEvent:
    """One Kubernetes Event, on the experiment's clock (Unix time)."""

    at: float
    kind: str
    """The involved object's kind (Pod, Node, ReplicaSet...)."""
    name: str
    namespace: str
    reason: str
    message: str
    type: str = "Normal"
    count: int = 1

    def label(self) -> str:
        where = f"{self.kind}/{self.name}"
        repeat = f" (x{self.count})" if self.count > 1 else ""
        return f"{self.reason} {where}: {self.message}{repeat}"


def _when(event: Any) -> float | None:
    for stamp in (
        getattr(event, "last_timestamp", None),
        getattr(event, "event_time", None),
        getattr(event, "first_timestamp", None),
        getattr(event.metadata, "creation_timestamp", None),
    ):
        if isinstance(stamp, datetime.datetime):
            if stamp.tzinfo is None:
                stamp = stamp.replace(tzinfo=datetime.UTC)
            return stamp.timestamp()
    return None


def cluster_events(
    kube: Kube, namespaces: Iterable[str], start: float, end: float, slack: float = 2.0
) -> tuple[list[ClusterEvent], str | None]:
    """The Events of ``namespaces`` and of every Node between ``start`` and ``end`` (widened by ``slack``: the
    API stamps them to the second), oldest first; and a note when some could not be read or were left out."""
    found: list[ClusterEvent] = []
    notes = []
    for namespace in sorted(set(namespaces)):
        try:
            items = kube.core.list_namespaced_event(namespace, _request_timeout=20).items
        except Exception as exc:  # evidence: what cannot be read is said, never fatal to the experiment
            notes.append(f"the Events of {namespace} could not be read: {exc}")
            continue
        found += [e for e in (_event(item) for item in items) if e is not None and e.kind != "Node"]
    try:
        items = kube.core.list_event_for_all_namespaces(
            field_selector="involvedObject.kind=Node", _request_timeout=20
        ).items
        found += [e for e in (_event(item) for item in items) if e is not None]
    except Exception as exc:
        notes.append(f"the nodes' Events could not be read: {exc}")
    inside = sorted((e for e in found if start - slack <= e.at <= end + slack), key=lambda e: e.at)
    if len(inside) > MAX_EVENTS:
        notes.append(f"{len(inside) - MAX_EVENTS} older Events left out (at most {MAX_EVENTS} kept)")
        inside = inside[-MAX_EVENTS:]
    return inside, "; ".join(notes) or None


def _event(item: Any) -> ClusterEvent | None:
    at = _when(item)
    involved = item.involved_object
    if at is None or involved is None:
        return None
    return ClusterEvent(
        at=at,
        kind=str(involved.kind or ""),
        name=str(involved.name or ""),
        namespace=str(involved.namespace or ""),
        reason=str(item.reason or ""),
        message=str(item.message or "").strip()[:300],
        type=str(item.type or "Normal"),
        count=int(item.count or 1),
    )


def pod_logs(kube: Kube, pods: Iterable[tuple[str, str]]) -> dict[str, str]:
    """``namespace/pod`` -> its last log lines (and its previous container's, after a restart), for at most
    MAX_PODS pods; a pod whose log cannot be read (deleted, say) gets a note instead."""
    logs: dict[str, str] = {}
    for namespace, name in list(dict.fromkeys(pods))[:MAX_PODS]:
        key = f"{namespace}/{name}"
        parts = []
        for previous in (True, False):
            try:
                text = kube.core.read_namespaced_pod_log(
                    name, namespace, tail_lines=LOG_LINES, previous=previous, _request_timeout=15
                )
            except Exception as exc:
                if not previous:
                    reason = getattr(exc, "reason", None) or type(exc).__name__
                    parts.append(f"(its log could not be read: {reason})")
                continue
            if text:
                text = text[-LOG_BYTES:]
                parts.append(f"--- previous container ---\n{text}" if previous else text)
        logs[key] = "\n".join(parts).rstrip()
    return logs


def involved_pods(kube: Kube, faults: Sequence[FaultRecord], namespaces: set[str]) -> list[tuple[str, str]]:
    """(namespace, pod): the faults' pod targets first (``pod``, ``pod/container@node``, a partition's
    ``<-> peer``), then the pods of
    the namespaces now, newest first (the replacements)."""
    found: list[tuple[str, str]] = []
    for f in faults:
        namespace = f.spec.get("namespace")
        if not namespace:
            continue
        for target in f.targets:
            if target.startswith("<-> "):  # a partition's peer, in its peer namespace
                found.append((str(f.spec.get("peer_namespace") or namespace), target.removeprefix("<-> ")))
            else:
                found.append((str(namespace), target.split("/")[0].split("@")[0]))
    for namespace in sorted(namespaces):
        try:
            pods: list[Any] = kube.core.list_namespaced_pod(namespace, _request_timeout=20).items
        except Exception:  # evidence only: the logs then name fewer pods
            continue
        pods.sort(key=lambda p: p.metadata.creation_timestamp, reverse=True)
        found += [(namespace, str(p.metadata.name)) for p in pods]
    return list(dict.fromkeys(found))
