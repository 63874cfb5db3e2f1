"""HTTP faults on the real cluster: a share of requests aborted or delayed, seen from the host (through the
NodePort) on a connection opened before the fault; the proxies and their rules gone after, as counted by the
independent scan."""

from __future__ import annotations

import http.client
import time

import pytest
from residue import scan
from workloads import Web

from chaoskit.chaos import Chaos
from chaoskit.errors import FaultNotEffective, SpecError

pytestmark = pytest.mark.shared_web  # each test injects a fault and undoes it


def requests(connection: http.client.HTTPConnection, count: int) -> list[tuple[int, float]]:
    """``count`` GETs on one kept-alive connection: (status, seconds) each."""
    found = []
    for _ in range(count):
        start = time.monotonic()
        connection.request("GET", "/")
        response = connection.getresponse()
        response.read()
        found.append((response.status, time.monotonic() - start))
    return found


def through_the_fault(connection: http.client.HTTPConnection, port: int, count: int) -> list[tuple[int, float]]:
    """:func:`requests`, reconnecting once if the fault's reset at injection closed the connection, as
    clients do."""
    try:
        return requests(connection, count)
    except (http.client.HTTPException, ConnectionError):
        connection.close()
    fresh = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        return requests(fresh, count)
    finally:
        fresh.close()


@pytest.mark.cluster_alone  # its scan of the whole cluster must see no other test's fault
def test_a_share_of_requests_is_aborted_even_on_connections_opened_before(
    request, cluster, chaos: Chaos, web: Web
) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", web.node_port, timeout=10)
    request.addfinalizer(connection.close)  # also when the test fails: no socket left for a later test's GC
    assert {s for s, _ in requests(connection, 5)} == {200}
    with chaos.http(web.namespace, "app=web", 8080, abort_percent=50, max_share=1.0) as record:
        assert record.effect.count("got the injected 503") == 3, record.effect  # proven at each of the 3 pods
        during = [s for s, _ in through_the_fault(connection, web.node_port, 200)]
        held = scan(cluster.name, str(cluster.kubeconfig))
        assert len(held.of(record.fault_id)) == 3 and len(held.helpers_of(record.fault_id)) == 3, held
    after = scan(cluster.name, str(cluster.kubeconfig))
    assert after.of(record.fault_id) == [] and after.helpers_of(record.fault_id) == [] and after.empty(), after
    connection.close()
    fresh = http.client.HTTPConnection("127.0.0.1", web.node_port, timeout=10)
    request.addfinalizer(fresh.close)
    assert {s for s, _ in requests(fresh, 20)} == {200}
    aborted = during.count(503)
    assert set(during) <= {200, 503} and 60 <= aborted <= 140, during
    print(
        f"http abort 50 %: {record.effect}; from the host: {aborted} of 200 aborted; effect after "
        f"{record.inject_to_effect:.2f} s; undo: {record.undo_proof}"
    )


@pytest.mark.cluster_alone  # its scan of the whole cluster must see no other test's fault
def test_a_share_of_requests_is_delayed_and_the_rest_is_not(request, cluster, chaos: Chaos, web: Web) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", web.node_port, timeout=10)
    request.addfinalizer(connection.close)
    before = max(s for _, s in requests(connection, 10))
    with chaos.http(web.namespace, "app=web", 8080, delay_ms=300, delay_percent=50, max_share=1.0) as record:
        assert record.effect.count("came 300 ms late") == 3, record.effect
        during = through_the_fault(connection, web.node_port, 60)
    connection.close()
    assert scan(cluster.name, str(cluster.kubeconfig)).empty()
    late = sum(1 for _, seconds in during if seconds >= 0.24)
    assert {s for s, _ in during} == {200}, during
    assert 15 <= late <= 45, sorted(round(s, 3) for _, s in during)
    print(
        f"http delay 300 ms for 50 %: {record.effect}; from the host: {late} of 60 late (slowest before {before:.3f} s)"
    )


@pytest.mark.cluster_alone  # its scan of the whole cluster must see no other test's fault
def test_a_port_without_http_and_bad_specs_are_refused_before_anything_is_injected(
    cluster, chaos: Chaos, web: Web
) -> None:
    for options, message in (
        ({"port": 8080}, "nothing to inject"),
        ({"port": 8080, "abort_percent": 120}, "abort_percent must be in 0-100"),
        ({"port": 8080, "abort_percent": 10, "status": 200}, "an HTTP error status"),
        ({"port": 8080, "delay_ms": 10}, "cannot be told"),
        ({"port": 8080, "abort_percent": 100, "delay_ms": 100}, "delays no request"),
        ({"port": 0, "abort_percent": 10}, "port"),
    ):
        with pytest.raises(SpecError, match=message):
            with chaos.http(web.namespace, "app=web", **options):
                pass
    with pytest.raises(SpecError, match="does not answer HTTP on port 9"):
        with chaos.http(web.namespace, "app=web", 9, abort_percent=10, count=1):
            pass
    assert scan(cluster.name, str(cluster.kubeconfig)).empty()


@pytest.mark.cluster_alone  # its scan of the whole cluster must see no other test's fault
def test_a_second_http_fault_on_the_same_pods_is_refused(cluster, chaos: Chaos, web: Web) -> None:
    with chaos.http(web.namespace, "app=web", 8080, abort_percent=20, max_share=1.0) as first:
        with pytest.raises(FaultNotEffective, match="another HTTP fault already holds this pod"):
            with chaos.http(web.namespace, "app=web", 8080, abort_percent=20, max_share=1.0):
                pass
        held = scan(cluster.name, str(cluster.kubeconfig))
        assert len(held.helpers_of(first.fault_id)) == 3 and len(held.helpers) == 3, held  # the second's: undone
    assert scan(cluster.name, str(cluster.kubeconfig)).empty()
