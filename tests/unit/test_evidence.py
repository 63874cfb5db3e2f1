"""The evidence a run keeps (pure logic, the API faked): which Events, on which clock, how many; and logs
bounded in size. The real cluster's Events and logs are tests/cluster/test_nightly.py's."""

from __future__ import annotations

import datetime
from types import SimpleNamespace as NS

from chaoskit import evidence

T0 = datetime.datetime(2026, 12, 1, 3, 0, 0, tzinfo=datetime.UTC)


def event(seconds: float, reason: str, kind: str = "Pod", name: str = "web-1", type_: str = "Normal"):
    return NS(
        last_timestamp=T0 + datetime.timedelta(seconds=seconds),
        event_time=None,
        first_timestamp=None,
        metadata=NS(creation_timestamp=None),
        involved_object=NS(kind=kind, name=name, namespace="shop"),
        reason=reason,
        message=f"{reason} happened",
        type=type_,
        count=1,
    )


class FakeCore:
    def __init__(self, namespaced, nodes, logs=None):
        self.namespaced, self.nodes, self.logs = namespaced, nodes, logs or {}

    def list_namespaced_event(self, namespace, **_):
        return NS(items=self.namespaced)

    def list_event_for_all_namespaces(self, field_selector, **_):
        assert field_selector == "involvedObject.kind=Node"
        return NS(items=self.nodes)

    def read_namespaced_pod_log(self, name, namespace, previous=False, **_):
        if (name, previous) not in self.logs:
            raise RuntimeError("not found")
        return self.logs[(name, previous)]


def test_the_runs_events_and_its_nodes_events_in_its_window_oldest_first():
    start = T0.timestamp()
    core = FakeCore(
        [event(5, "Killing"), event(-60, "Pulled"), event(6, "Scheduled", name="web-2")],
        [event(7, "NodeNotReady", kind="Node", name="worker", type_="Warning")],
    )
    found, note = evidence.cluster_events(NS(core=core), ["shop"], start, start + 20)
    assert [e.reason for e in found] == ["Killing", "Scheduled", "NodeNotReady"] and note is None
    assert found[0].at == start + 5 and found[2].label() == "NodeNotReady Node/worker: NodeNotReady happened"


def test_at_most_the_newest_events_are_kept_and_the_note_says_how_many_were_left_out():
    start = T0.timestamp()
    core = FakeCore([event(i * 0.01, f"E{i}") for i in range(evidence.MAX_EVENTS + 5)], [])
    found, note = evidence.cluster_events(NS(core=core), ["shop"], start, start + 20)
    assert len(found) == evidence.MAX_EVENTS and found[-1].reason == f"E{evidence.MAX_EVENTS + 4}"
    assert note == f"5 older Events left out (at most {evidence.MAX_EVENTS} kept)"


def test_logs_keep_the_last_bytes_and_say_when_a_pod_has_none():
    core = FakeCore([], [], {("web-2", False): "x" * 10_000 + "last line", ("web-3", True): "before the restart"})
    core.logs[("web-3", False)] = "after"
    logs = evidence.pod_logs(NS(core=core), [("shop", "web-1"), ("shop", "web-2"), ("shop", "web-3")])
    assert logs["shop/web-1"].startswith("(its log could not be read")
    assert len(logs["shop/web-2"]) == evidence.LOG_BYTES and logs["shop/web-2"].endswith("last line")
    assert logs["shop/web-3"] == "--- previous container ---\nbefore the restart\nafter"


def test_a_partitions_peers_are_involved_pods_in_their_own_namespace():
    from chaoskit.faults.base import FaultRecord

    cut = FaultRecord("p-1", "partition", "c", {"namespace": "shop", "peer_namespace": "db"})
    cut.targets = ["web-0", "<-> redis-1", "<-> redis-2"]
    kill = FaultRecord("k-1", "container-kill", "c", {"namespace": "shop"}, targets=["web-1/web@worker"])

    class NoPods:
        class core:
            @staticmethod
            def list_namespaced_pod(namespace, _request_timeout):
                raise OSError("not here")

    found = evidence.involved_pods(NoPods(), [cut, kill], {"shop"})  # type: ignore[arg-type]
    assert found == [("shop", "web-0"), ("db", "redis-1"), ("db", "redis-2"), ("shop", "web-1")]
