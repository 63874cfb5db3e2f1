"""Each kind of workload is whole by its own status, the Service's ready endpoints are counted over its
EndpointSlices, and a kind the watch cannot follow is refused naming those it can (pure logic, on the
objects' JSON as the API serves it)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from chaoskit.adapters.apiclient import raw_list_call
from chaoskit.adapters.status import (
    WORKLOAD_KINDS,
    check_workload_kind,
    ready_addresses,
    ready_endpoints,
    workload_counts,
    workload_whole,
)
from chaoskit.chaos import Chaos
from chaoskit.errors import SpecError
from chaoskit.experiment import Experiment, ExperimentSpec, Workload
from chaoskit.load import LoadSpec
from chaoskit.observe import Event, RecoveryWatch


def workload(spec: dict[str, Any] | None = None, generation: int = 4, **status: Any) -> dict[str, Any]:
    """A workload's JSON: ``status`` as given, observed at its generation unless the status says otherwise."""
    return {
        "metadata": {"name": "db", "namespace": "shop", "generation": generation},
        "spec": {"replicas": 3} if spec is None else spec,
        "status": {"observedGeneration": generation, **status},
    }


STATEFULSET_WHOLE: dict[str, Any] = {
    "replicas": 3,
    "readyReplicas": 3,
    "currentReplicas": 3,
    "updatedReplicas": 3,
    "currentRevision": "db-6f9c",
    "updateRevision": "db-6f9c",
}


# --- Deployment: ready and updated -------------------------------------------------------------------------


def test_a_deployment_is_whole_with_every_replica_ready_and_updated() -> None:
    assert workload_counts(workload(readyReplicas=3, updatedReplicas=3), "Deployment") == (3, 3, True)
    assert workload_counts(workload(readyReplicas=2, updatedReplicas=3), "Deployment") == (3, 2, False)


def test_a_deployment_rolling_out_is_not_whole_while_every_pod_is_ready() -> None:
    # Surge: 4 ready, 2 of them of the new template.
    assert workload_counts(workload(readyReplicas=4, updatedReplicas=2), "Deployment") == (3, 4, False)
    assert not workload_whole(workload(readyReplicas=3, updatedReplicas=2), "Deployment")


def test_a_status_that_has_not_seen_the_latest_spec_is_not_whole() -> None:
    stale = workload(readyReplicas=3, updatedReplicas=3)
    stale["status"]["observedGeneration"] = 3  # the spec changed (generation 4); the counts are of before
    assert not workload_whole(stale, "Deployment")
    unobserved = workload(readyReplicas=3, updatedReplicas=3)
    del unobserved["status"]["observedGeneration"]
    assert not workload_whole(unobserved, "Deployment")


def test_counts_the_api_leaves_out_are_zero_and_replicas_default_to_one() -> None:
    assert workload_counts(workload({"replicas": 0}), "Deployment") == (0, 0, True)  # scaled to zero
    assert workload_counts(workload({}, readyReplicas=1, updatedReplicas=1), "Deployment") == (1, 1, True)
    assert workload_counts(workload(), "Deployment") == (3, 0, False)
    assert workload_counts({"spec": {"replicas": 2}}, "ReplicaSet") == (2, 0, False)  # no status yet


# --- StatefulSet: ready, and the current revision ------------------------------------------------------------


def test_a_statefulset_is_whole_with_every_replica_ready_at_the_current_revision() -> None:
    assert workload_counts(workload(**STATEFULSET_WHOLE), "StatefulSet") == (3, 3, True)


def test_a_statefulset_mid_rollout_is_not_whole_though_every_pod_is_ready() -> None:
    rolling = {**STATEFULSET_WHOLE, "updateRevision": "db-7d1a", "currentReplicas": 2, "updatedReplicas": 1}
    assert workload_counts(workload(**rolling), "StatefulSet") == (3, 3, False)
    # The revisions alone say so, whatever the counts say.
    assert not workload_whole(workload(**{**STATEFULSET_WHOLE, "updateRevision": "db-7d1a"}), "StatefulSet")


@pytest.mark.parametrize(
    ("change", "whole"),
    [
        ({"readyReplicas": 2}, False),  # a pod killed
        ({"currentReplicas": 2}, False),  # its replacement not created yet
        ({"updatedReplicas": 2}, False),
        ({"readyReplicas": 4}, False),  # more ready than desired: not settled either
    ],
)
def test_a_statefulset_short_of_any_count_is_not_whole(change: dict[str, Any], whole: bool) -> None:
    assert workload_whole(workload(**{**STATEFULSET_WHOLE, **change}), "StatefulSet") is whole


def test_a_statefulset_status_without_revisions_or_counts_is_judged_on_what_it_has() -> None:
    # Some servers leave updatedReplicas out of a settled StatefulSet (kubernetes#76748): not a rollout.
    settled = {k: v for k, v in STATEFULSET_WHOLE.items() if k != "updatedReplicas"}
    assert workload_whole(workload(**settled), "StatefulSet")
    assert workload_whole(workload(replicas=3, readyReplicas=3), "StatefulSet")
    assert not workload_whole(workload(replicas=3, readyReplicas=2), "StatefulSet")


# --- DaemonSet and ReplicaSet ---------------------------------------------------------------------------------


def test_a_daemonset_wants_what_its_status_schedules() -> None:
    ds = {"desiredNumberScheduled": 2, "numberReady": 2, "updatedNumberScheduled": 2}
    assert workload_counts(workload({}, **ds), "DaemonSet") == (2, 2, True)
    assert workload_counts(workload({}, **{**ds, "numberReady": 1}), "DaemonSet") == (2, 1, False)
    assert workload_counts(workload({}, **{**ds, "updatedNumberScheduled": 1}), "DaemonSet") == (2, 2, False)
    # A zero the API leaves out is zero: none updated of 2 is a rollout under way.
    assert not workload_whole(workload({}, desiredNumberScheduled=2, numberReady=2), "DaemonSet")


def test_a_replicaset_is_whole_with_every_replica_ready() -> None:
    assert workload_counts(workload(readyReplicas=3), "ReplicaSet") == (3, 3, True)
    assert workload_counts(workload(readyReplicas=1), "ReplicaSet") == (3, 1, False)


# --- Service endpoints over its EndpointSlices ----------------------------------------------------------------


def endpoint(pod: str, ip: str, ready: bool | None = True, **more: Any) -> dict[str, Any]:
    conditions = {} if ready is None else {"ready": ready}
    return {
        "addresses": [ip],
        "conditions": conditions,
        "targetRef": {"kind": "Pod", "namespace": "shop", "name": pod},
        **more,
    }


def endpoint_slice(*endpoints: dict[str, Any], family: str = "IPv4") -> dict[str, Any]:
    return {"addressType": family, "endpoints": list(endpoints) or None}


def test_ready_endpoints_count_over_every_slice() -> None:
    slices = [
        endpoint_slice(endpoint("web-0", "10.0.0.1"), endpoint("web-1", "10.0.0.2", ready=False)),
        endpoint_slice(endpoint("web-2", "10.0.1.1"), endpoint("web-3", "10.0.1.2", terminating=True)),
    ]
    assert ready_endpoints(slices) == 3


def test_an_endpoint_without_a_ready_condition_counts_as_ready() -> None:
    no_ready = endpoint("web-0", "10.0.0.1", ready=None)
    no_conditions = {"addresses": ["10.0.0.2"], "targetRef": {"kind": "Pod", "namespace": "shop", "name": "web-1"}}
    assert ready_endpoints([endpoint_slice(no_ready, no_conditions)]) == 2


def test_an_endpoint_in_two_slices_or_two_families_counts_once() -> None:
    moving = endpoint("web-0", "10.0.0.1")
    assert ready_endpoints([endpoint_slice(moving), endpoint_slice(moving, endpoint("web-1", "10.0.0.2"))]) == 2
    dual = [endpoint_slice(endpoint("web-0", "10.0.0.1")), endpoint_slice(endpoint("web-0", "fd00::1"), family="IPv6")]
    assert ready_endpoints(dual) == 1
    # Endpoints that target no object are known by their addresses.
    bare = [{"addresses": ["192.0.2.1"]}, {"addresses": ["192.0.2.2"]}, {"addresses": ["192.0.2.1"]}]
    assert ready_endpoints([endpoint_slice(*bare)]) == 2


def test_no_slices_or_empty_ones_have_no_ready_endpoints() -> None:
    assert ready_endpoints([]) == 0
    assert ready_endpoints([endpoint_slice()]) == 0


def test_core_endpoints_count_their_ready_addresses_only() -> None:
    subsets = [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "notReadyAddresses": [{"ip": "10.0.0.3"}]}]
    assert ready_addresses({"subsets": subsets}) == 2
    assert ready_addresses({}) == 0


class LegacyApiClient:
    """An API client of the python-legacy generator (kubernetes < 37): ``call_api`` alone, no ``param_serialize``."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def call_api(self, *args: Any, **kwargs: Any) -> str:
        self.calls.append((args, kwargs))
        return "the unread response"


def test_v1beta1_slices_are_listed_through_a_legacy_client_too() -> None:
    # The modern client's path is exercised against a fake API server in test_recovery_maths.py.
    legacy = LegacyApiClient()
    list_call = raw_list_call(legacy, "discovery.k8s.io/v1beta1", "endpointslices")
    selector = "kubernetes.io/service-name=web"
    answer = list_call(
        "shop",
        label_selector=selector,
        watch=True,
        timeout_seconds=30,
        _request_timeout=(5.0, 35.0),
        _preload_content=False,
    )
    assert answer == "the unread response"
    ((args, kwargs),) = legacy.calls
    query = [("labelSelector", selector), ("watch", True), ("timeoutSeconds", 30)]
    path = "/apis/discovery.k8s.io/v1beta1/namespaces/{namespace}/endpointslices"
    assert args == (path, "GET", {"namespace": "shop"}, query, {"Accept": "application/json"})
    assert kwargs == {
        "auth_settings": ["BearerToken"],
        "_return_http_data_only": True,
        "_preload_content": False,
        "_request_timeout": (5.0, 35.0),
    }


# --- Kinds are validated; Deployment stays the default -------------------------------------------------------

KINDS_NAMED = r"give kind= one of Deployment, StatefulSet, DaemonSet, ReplicaSet"


def test_the_kinds() -> None:
    assert WORKLOAD_KINDS == ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet")
    assert all(check_workload_kind(kind) == kind for kind in WORKLOAD_KINDS)


@pytest.mark.parametrize("kind", ["Job", "statefulset", "", "Pod"])
def test_an_unknown_kind_is_refused_naming_the_kinds(kind: str) -> None:
    with pytest.raises(SpecError, match=rf"cannot watch a workload of kind '{kind}': {KINDS_NAMED}"):
        check_workload_kind(kind)
    with pytest.raises(SpecError, match=KINDS_NAMED):
        Workload("shop", "db", kind=kind)  # type: ignore[arg-type]
    with pytest.raises(SpecError, match=KINDS_NAMED):
        RecoveryWatch(None, "shop", "db", kind=kind)  # type: ignore[arg-type]
    with pytest.raises(SpecError, match=KINDS_NAMED):
        Chaos(None, None).recovery_watch("shop", "db", kind=kind)  # type: ignore[arg-type]
    with pytest.raises(SpecError, match=KINDS_NAMED):
        workload_counts(workload(), kind)


def test_a_workload_written_as_before_is_a_deployment() -> None:
    old = Workload("shop", "web", "web")
    assert (old.namespace, old.name, old.service, old.kind) == ("shop", "web", "web", "Deployment")
    assert old.deployment == "web"
    watch = RecoveryWatch(None, "shop", "web", "web")  # type: ignore[arg-type]
    assert (watch.kind, watch.workload_source, watch.deployment) == ("Deployment", "deployment", "web")
    db = Workload("shop", "db", service="db", kind="StatefulSet")
    assert (db.name, db.kind) == ("db", "StatefulSet")


def test_the_timeline_shows_the_watched_kind_s_ready_counts() -> None:
    spec = ExperimentSpec("db", LoadSpec(host="http://127.0.0.1:1", run_seconds=5), (), Workload("shop", "db"))
    run = Experiment(spec, Chaos(None, None))  # type: ignore[arg-type]
    events = [
        Event(1.0, "statefulset", 3, 3, True),
        Event(2.0, "statefulset", 2, 3, False),
        Event(2.1, "endpoints", 2, 3),
    ]
    run._load = SimpleNamespace(marks=[])  # type: ignore[assignment]
    run._watch = RecoveryWatch(None, "shop", "db", "db", "StatefulSet", events=events)  # type: ignore[arg-type]
    ready = [(e.label, e.ready) for e in run._events([], None) if e.kind == "ready"]
    assert ready == [("3/3 ready", 3), ("2/3 ready", 2)]
