"""HTTP faults on the real cluster (WIP branch): a share of requests aborted, seen from the host on a connection
that was open before the fault; the proxy and its rule gone after."""

from __future__ import annotations

import http.client

from residue import scan
from workloads import Web

from chaoskit.chaos import Chaos


def statuses(connection: http.client.HTTPConnection, count: int) -> list[int]:
    found = []
    for _ in range(count):
        connection.request("GET", "/")
        response = connection.getresponse()
        response.read()
        found.append(response.status)
    return found


def test_a_share_of_requests_is_aborted_even_on_connections_opened_before(cluster, chaos: Chaos, web: Web) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", web.node_port, timeout=10)
    assert set(statuses(connection, 5)) == {200}
    with chaos.http(web.namespace, "app=web", 8080, abort_percent=50, max_share=1.0) as record:
        assert "got 503" in record.effect, record.effect
        try:
            during = statuses(connection, 200)
        except (http.client.HTTPException, ConnectionError):  # the reset at injection: reconnect, as clients do
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", web.node_port, timeout=10)
            during = statuses(connection, 200)
        held = scan(cluster.name, str(cluster.kubeconfig))
        assert len(held.of(record.fault_id)) == 3 and len(held.helpers_of(record.fault_id)) == 3, held
    after_scan = scan(cluster.name, str(cluster.kubeconfig))
    assert after_scan.of(record.fault_id) == [] and after_scan.helpers_of(record.fault_id) == []
    connection.close()
    fresh = http.client.HTTPConnection("127.0.0.1", web.node_port, timeout=10)
    assert set(statuses(fresh, 20)) == {200}
    aborted = during.count(503)
    assert 60 <= aborted <= 140, during
    print(
        f"http abort 50 %: {record.effect}; from the host: {aborted} of 200 aborted; effect after "
        f"{record.inject_to_effect:.2f} s; undo: {record.undo_proof}"
    )
