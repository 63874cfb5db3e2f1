"""Faults inside pods on the real cluster: container kill, partition, packet loss, bandwidth, latency."""

from __future__ import annotations

import http.client
import statistics
import time

import pytest
from residue import scan
from workloads import (
    WEB_LABELS,
    Web,
    download_from_host,
    get_from_host,
    pdb,
    pdb_api_version,
    probe,
    probe_eventually,
    wait_web,
)

from chaoskit.chaos import Chaos
from chaoskit.errors import FaultNotEffective, SafetyError, SpecError
from chaoskit.faults.netrules import netem_available, qdisc_handle

pytestmark = pytest.mark.shared_web  # each test injects a fault and undoes it

pytest_plugins = ["pytester"]


def web_pods(kube, namespace: str) -> dict:
    """The live web pods (one still terminating from an earlier test of the module is not one of them)."""
    return {p.metadata.name: p for p in kube.pods(namespace, "app=web") if p.metadata.deletion_timestamp is None}


@pytest.mark.parametrize("signal", ["SIGKILL", "SIGTERM"])
def test_container_kill_restarts_the_container_in_place(chaos: Chaos, kube, web: Web, signal: str) -> None:
    before = web_pods(kube, web.namespace)
    with chaos.container_kill(web.namespace, "app=web", signal=signal) as record:
        assert record.verified and "restart count up" in record.effect
    after = web_pods(kube, web.namespace)
    # Same pods (names and UIDs): only the process was restarted.
    assert {n: p.metadata.uid for n, p in after.items()} == {n: p.metadata.uid for n, p in before.items()}
    (victim,) = [t.split("/")[0] for t in record.targets]
    restarts = {n: p.status.container_statuses[0].restart_count for n, p in after.items()}
    assert restarts[victim] == before[victim].status.container_statuses[0].restart_count + 1
    print(f"container kill {signal}: restart seen {record.inject_to_effect:.2f} s after the signal")


def test_partition_cuts_both_directions_and_heals(cluster, chaos: Chaos, kube, web: Web, client: str) -> None:
    url = f"http://web.{web.namespace}/"
    probe_eventually(kube, web.namespace, client, url)
    with chaos.partition(web.namespace, "role=client", peer_selector="app=web", max_share=1.0) as record:
        assert "open before, blocked after" in record.effect, record.effect
        assert record.max_share == 1.0 and record.max_share_raised
        code, results = probe(kube, web.namespace, client, url)
        assert code != 0 and "error" in results[0], results
        # Traffic that does not cross the partition still flows: the host reaches web.
        assert get_from_host(web.node_port)["pod"].startswith("web-")
        # Counted independently: 2 rules in the client for each of the 3 web pods, 2 in each web pod.
        assert len(scan(cluster.name, str(cluster.kubeconfig)).of(record.fault_id)) == 6 + 3 * 2
    assert scan(cluster.name, str(cluster.kubeconfig)).of(record.fault_id) == []
    assert record.reverted and "no rule with comment" in (record.undo_proof or "")
    probe_eventually(kube, web.namespace, client, url, within=30)
    print(f"partition: blocked {record.inject_to_effect:.3f} s after injection")
    # Where SREs look: an Event on the partitioned pod at the injection and at the undo, read from the API.
    pod = kube.core.read_namespaced_pod(client, web.namespace)
    said = events_about(kube, web.namespace, client)
    assert [r for r, _, _ in said] == ["ChaoskitFaultInjected", "ChaoskitFaultUndone"], said
    assert all(uid == pod.metadata.uid and record.fault_id in message for _, uid, message in said), said
    assert record.event_errors == []


def events_about(kube, namespace: str, name: str) -> list[tuple[str, str, str]]:
    """(reason, involved object's UID, message) of chaoskit's Events about ``name``."""
    found = kube.core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}").items
    mine = [e for e in found if e.source and e.source.component == "chaoskit"]
    # Events carry whole seconds: the two of a short fault share one, so they are listed by reason (Injected first).
    return sorted((e.reason, e.involved_object.uid, e.message) for e in mine)


def test_a_container_restarted_inside_a_partition_still_has_its_rules_undone(
    cluster, chaos: Chaos, kube, web: Web, client: str
) -> None:
    """The rules live in the pod's namespace, which outlives a restart of its container (a new pid)."""
    with chaos.partition(web.namespace, "role=client", peer_selector="app=web", max_share=1.0) as cut:
        with chaos.container_kill(web.namespace, "role=client", max_share=1.0) as killed:
            assert "restart count up" in (killed.effect or "")
        assert len(scan(cluster.name, str(cluster.kubeconfig)).of(cut.fault_id)) == 12
    assert scan(cluster.name, str(cluster.kubeconfig)).of(cut.fault_id) == []
    assert "no rule with comment" in (cut.undo_proof or "") and "gone" not in (cut.undo_proof or ""), cut.undo_proof
    probe_eventually(kube, web.namespace, client, f"http://web.{web.namespace}/", within=60)


def test_partition_from_everything_probes_the_api_service_the_cluster_serves(
    cluster, chaos: Chaos, kube, web: Web, client: str
) -> None:
    service = kube.core.read_namespaced_service("kubernetes", "default")
    target = f"{service.spec.cluster_ip}:{service.spec.ports[0].port}"
    with chaos.partition(web.namespace, "role=client", max_share=1.0) as record:
        assert f"the kubernetes Service {target} open before, blocked after" in record.effect, record.effect
        code, _ = probe(kube, web.namespace, client, f"http://web.{web.namespace}/")
        assert code != 0
    assert scan(cluster.name, str(cluster.kubeconfig)).of(record.fault_id) == []
    probe_eventually(kube, web.namespace, client, f"http://web.{web.namespace}/", within=30)


def test_partition_refuses_when_there_is_nothing_to_prove_against(chaos: Chaos, web: Web) -> None:
    # The web pods listen on their port only: nothing answers on 9 before the cut, so no probe could prove it.
    with pytest.raises(SpecError, match=r"nothing to prove the partition against.*9.*refused"):
        with chaos.partition(web.namespace, "app=web", port=9, count=1):
            pass


def test_network_faults_go_through_the_blast_radius_cap(chaos: Chaos, web: Web) -> None:
    for fault in (
        lambda: chaos.partition(web.namespace, "app=web"),
        lambda: chaos.packet_loss(web.namespace, "app=web", percent=10),
        lambda: chaos.bandwidth(web.namespace, "app=web", rate_kbit=1000),
    ):
        with pytest.raises(SafetyError, match=r"3 of 3 pods .*over the blast-radius cap of 50%.*max_share"):
            with fault():
                pass
    assert chaos.records == []


def test_packet_loss_drops_packets_and_heals(cluster, chaos: Chaos, kube, web: Web) -> None:
    with chaos.packet_loss(web.namespace, "app=web", percent=50, max_share=1.0) as record:
        assert "the loss rule dropped" in record.effect, record.effect
        assert len(scan(cluster.name, str(cluster.kubeconfig)).of(record.fault_id)) == 3
    assert scan(cluster.name, str(cluster.kubeconfig)).of(record.fault_id) == []
    print(f"packet loss: {record.effect}; effect after {record.inject_to_effect:.2f} s")


def test_bandwidth_limit_slows_what_the_pods_send_and_heals(cluster, chaos: Chaos, kube, web: Web) -> None:
    size = 400_000  # 1.6 s at the limit below; milliseconds without it
    unlimited = download_from_host(web.node_port, size)
    with chaos.bandwidth(web.namespace, "app=web", rate_kbit=2000, max_share=1.0) as record:
        assert "measured at" in record.effect, record.effect
        handle = qdisc_handle(record.fault_id)
        shaped = scan(cluster.name, str(cluster.kubeconfig)).qdiscs
        assert len([q for q in shaped if f"qdisc tbf {handle} " in q]) == 3, shaped
        # Seen from the host: whichever pod answers, its response comes at no more than the limit.
        limited = download_from_host(web.node_port, size)
        assert limited > size / (2000 * 1000 / 8) * 0.8, (limited, unlimited)
    assert not [q for q in scan(cluster.name, str(cluster.kubeconfig)).qdiscs if f" {handle} " in q]
    after = download_from_host(web.node_port, size)
    assert after < limited / 4, (after, limited)
    print(
        f"bandwidth: {record.effect}; effect after {record.inject_to_effect:.3f} s; {size} bytes from the host: "
        f"{unlimited:.3f} s before, {limited:.2f} s limited, {after:.3f} s after"
    )


def _timed_gets(connection: http.client.HTTPConnection, count: int = 7) -> float:
    """The median milliseconds of ``count`` GETs on one kept-alive connection (the same pod each time)."""
    times = []
    for _ in range(count):
        start = time.perf_counter()
        connection.request("GET", "/")
        response = connection.getresponse()
        response.read()
        assert response.status == 200
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def test_latency_delays_open_connections_too_and_heals(request, cluster, chaos: Chaos, kube, web: Web) -> None:
    """Seen from the host on a connection opened before the fault: its requests slow by the delay, then recover."""
    delay = 80
    connection = http.client.HTTPConnection("127.0.0.1", web.node_port, timeout=10)
    request.addfinalizer(connection.close)  # also when the test fails: no socket left for a later test's GC
    before = _timed_gets(connection)
    with chaos.latency(web.namespace, "app=web", delay_ms=delay, max_share=1.0) as record:
        assert "ms added" in record.effect and record.verified, record.effect
        held = scan(cluster.name, str(cluster.kubeconfig))
        if "NFQUEUE" in record.effect:
            # One NFQUEUE rule and one delayer process per pod, counted without chaoskit's code.
            assert len(held.of(record.fault_id)) == 3 and len(held.helpers_of(record.fault_id)) == 3, held
        during = _timed_gets(connection)
        fresh = time.perf_counter()
        get_from_host(web.node_port)
        fresh_ms = (time.perf_counter() - fresh) * 1000
    after_scan = scan(cluster.name, str(cluster.kubeconfig))
    assert after_scan.of(record.fault_id) == [] and after_scan.helpers_of(record.fault_id) == [], after_scan
    assert record.reverted, record
    if "NFQUEUE" in record.effect:
        assert "no delayers left" in (record.undo_proof or ""), record.undo_proof
    after = _timed_gets(connection)
    connection.close()
    assert during >= before + 0.8 * delay, (before, during)
    assert fresh_ms >= delay, fresh_ms  # a new connection: its handshake and its response are delayed
    assert after < before + 0.25 * delay, (before, after)
    print(
        f"latency {delay} ms: {record.effect}; effect after {record.inject_to_effect:.3f} s; GETs on a connection "
        f"opened before: {before:.1f} ms before, {during:.1f} ms during, {after:.1f} ms after; a new one "
        f"during: {fresh_ms:.1f} ms; undo: {record.undo_proof}"
    )


def test_latency_engine_netem_is_refused_with_the_reason_where_the_kernel_lacks_it(
    pytester: pytest.Pytester, cluster, kube, web: Web
) -> None:
    node = next(iter(web_pods(kube, web.namespace).values())).spec.node_name
    has_netem, _ = netem_available(cluster.node_shell, node)
    pytester.makepyfile(
        f"""
        def test_latency(chaos):
            with chaos.latency("{web.namespace}", "app=web", delay_ms=50, engine="netem", max_share=1.0) as record:
                assert record.verified
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs")
    if has_netem:
        result.assert_outcomes(passed=1)
    else:
        result.assert_outcomes(skipped=1)
        result.stdout.fnmatch_lines(
            ["*engine netem needs the kernel's netem qdisc*engine nfqueue*nothing was injected*"]
        )


@pytest.mark.cluster_alone  # its scan of the whole cluster must see no other test's fault
def test_a_second_latency_on_the_same_pods_is_refused_and_the_first_stays(cluster, chaos: Chaos, web: Web) -> None:
    with chaos.latency(web.namespace, "app=web", delay_ms=20, max_share=1.0) as first:
        with pytest.raises(FaultNotEffective, match=r"already delays this pod|qdisc"):
            with chaos.latency(web.namespace, "app=web", delay_ms=40, max_share=1.0):
                pass
        held = scan(cluster.name, str(cluster.kubeconfig))
        assert len(held.of(first.fault_id)) == 3, held
        assert [h for h in held.helpers if "--tag=chaoskit:" in h] == held.helpers_of(first.fault_id), held
    assert scan(cluster.name, str(cluster.kubeconfig)).empty()


@pytest.mark.api_only
@pytest.mark.destructive
def test_node_drain_evicts_under_the_budget_and_uncordons(cluster, chaos: Chaos, kube, web: Web) -> None:
    kube.apply([pdb(web.namespace, "web", WEB_LABELS, pdb_api_version(kube), minAvailable=2)])
    pods = web_pods(kube, web.namespace)
    by_node: dict[str, int] = {}
    for pod in pods.values():
        by_node[pod.spec.node_name] = by_node.get(pod.spec.node_name, 0) + 1
    node = max(by_node, key=lambda n: by_node[n])  # the worker holding the most web pods
    with chaos.node_drain(node, timeout=120) as record:
        assert record.verified and "cordoned" in record.effect, record.effect
        assert kube.core.read_node(node).spec.unschedulable
        assert kube.core.read_node(node).metadata.annotations["chaoskit.io/cordoned-by"] == record.fault_id
        # The budget held: replacements came up elsewhere while the drain went on.
        wait_web(kube, web.namespace)
        assert all(p.spec.node_name != node for p in web_pods(kube, web.namespace).values())
    after = kube.core.read_node(node)
    assert not after.spec.unschedulable
    assert "chaoskit.io/cordoned-by" not in (after.metadata.annotations or {})
    said = sorted((r, uid) for r, uid, m in events_about(kube, "default", node) if record.fault_id in m)
    assert said == [("ChaoskitFaultInjected", after.metadata.uid), ("ChaoskitFaultUndone", after.metadata.uid)]
    print(f"node drain of {node}: {record.effect}; {record.inject_to_effect:.1f} s")


@pytest.mark.api_only
def test_a_pod_kill_cycle_ends_when_the_workload_is_whole_and_the_watch_is_left_at_once(
    chaos: Chaos, kube, web: Web
) -> None:
    with chaos.recovery_watch(web.namespace, "web", service="web") as watch:
        with chaos.pod_kill(web.namespace, "app=web", grace_seconds=0) as record:
            pass
        assert record.injected_mono is not None
        recovery = watch.wait_recovered(record.injected_mono, timeout=120)
        seen = time.monotonic()
        # Whole when the watch says so: the Deployment and the Service both back, as read afresh.
        assert kube.apps.read_namespaced_deployment_status("web", web.namespace).status.ready_replicas == 3
        endpoints = kube.core.read_namespaced_endpoints("web", web.namespace)
        assert sum(len(s.addresses or []) for s in endpoints.subsets or []) == 3
        leaving = time.monotonic()
    left = time.monotonic() - leaving
    assert recovery.recovered and recovery.loss_seen is not None, (recovery, watch.events)
    assert recovery.endpoints_loss_seen is not None and recovery.endpoints_whole is not None
    # At once: not after the server ends the watch (30 s). Milliseconds here (printed); 2 s for a busy machine.
    assert left < 2.0, f"leaving the watch took {left:.3f} s"
    print(
        f"pod kill: whole again {recovery.seconds:.2f} s after the kill (Deployment {recovery.whole:.2f} s, "
        f"endpoints {recovery.endpoints_whole:.2f} s), seen {seen - record.injected_mono:.2f} s after it; "
        f"watch left in {left * 1000:.1f} ms"
    )
