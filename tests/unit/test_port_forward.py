"""Where a port-forward carries each new connection: the pure logic of following a Service (the API faked).
The forward itself, bytes through the API server to the pods, is proven on the cluster in
tests/cluster/test_port_forward.py."""

from __future__ import annotations

from types import SimpleNamespace as NS
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from chaoskit.adapters.portforward import REFRESH_S, Backends
from chaoskit.errors import SpecError


def pod(name: str, ready: bool = True, deleting: bool = False, ports: dict[str, int] | None = None) -> Any:
    declared = [NS(name=k, container_port=v) for k, v in (ports or {}).items()]
    return NS(
        metadata=NS(name=name, deletion_timestamp="2026-12-07T00:00:00Z" if deleting else None),
        status=NS(conditions=[NS(type="Ready", status="True" if ready else "False")]),
        spec=NS(containers=[NS(ports=declared)]),
    )


class FakeKube:
    def __init__(self, pods: list[Any], target_port: object = 8080, service: bool = True) -> None:
        self.listed = 0
        self.current = pods
        ports = [NS(port=80, target_port=target_port)]
        spec = NS(selector={"app": "web", "tier": "front"}, ports=ports)
        self.core = NS(read_namespaced_service=self.read if service else self.missing)
        self.spec = spec

    def read(self, name: str, namespace: str) -> Any:
        return NS(spec=self.spec)

    def missing(self, name: str, namespace: str) -> Any:
        raise ApiException(status=404)

    def pods(self, namespace: str, selector: str) -> list[Any]:
        assert (namespace, selector) == ("shop", "app=web,tier=front")
        self.listed += 1
        return self.current


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_service_sends_each_new_connection_to_the_next_ready_pod_and_skips_the_rest() -> None:
    kube = FakeKube([pod("web-b"), pod("web-a"), pod("web-c", ready=False), pod("web-d", deleting=True)])
    backends = Backends(kube, "shop", "service/web", 80, clock=Clock())  # type: ignore[arg-type]
    assert [backends.next() for _ in range(4)] == [("web-a", 8080), ("web-b", 8080)] * 2
    assert kube.listed == 1  # one read for the five picks (the constructor's included): within a second


def test_the_pods_are_read_again_after_a_second_so_a_dead_pod_stops_getting_connections() -> None:
    clock = Clock()
    kube = FakeKube([pod("web-a"), pod("web-b")])
    backends = Backends(kube, "shop", "svc/web", 80, clock=clock)  # type: ignore[arg-type]
    kube.current = [pod("web-a", deleting=True), pod("web-b"), pod("web-e")]
    clock.now += REFRESH_S / 2
    assert backends.next() == ("web-a", 8080)  # the list read half a second ago: not read again yet
    clock.now += REFRESH_S
    picks = {backends.next() for _ in range(4)}
    assert picks == {("web-b", 8080), ("web-e", 8080)} and kube.listed == 2
    kube.current = []
    clock.now += REFRESH_S
    assert backends.next() is None  # no ready pod: the forward closes that connection


def test_a_named_target_port_is_each_pods_own_and_a_pod_without_it_gets_nothing() -> None:
    kube = FakeKube([pod("web-a", ports={"http": 8081}), pod("web-b"), pod("web-c", ports={"http": 9000})], "http")
    backends = Backends(kube, "shop", "service/web", 80, clock=Clock())  # type: ignore[arg-type]
    assert [backends.next() for _ in range(3)] == [("web-a", 8081), ("web-c", 9000), ("web-a", 8081)]


def test_a_pod_target_is_that_pod_and_port_without_reading_the_api() -> None:
    kube = FakeKube([])
    assert Backends(kube, "shop", "pod/web-a", 8000).next() == ("web-a", 8000)  # type: ignore[arg-type]
    assert kube.listed == 0


@pytest.mark.parametrize(
    ("target", "port", "kube", "message"),
    [
        ("deployment/web", 80, FakeKube([pod("web-a")]), r"'deployment/web': write pod/NAME or service/NAME"),
        ("service/web", 80, FakeKube([], service=False), r"service shop/web does not exist"),
        ("service/web", 81, FakeKube([pod("web-a")]), r"has no port 81 \(it has 80\)"),
        ("service/web", 80, FakeKube([pod("web-a", ready=False)]), r"service shop/web has no ready pod"),
    ],
)
def test_a_bad_target_is_one_clear_error_before_anything_listens(
    target: str, port: int, kube: FakeKube, message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        Backends(kube, "shop", target, port)  # type: ignore[arg-type]
