"""The stateful system under test on the real cluster: Redis + Sentinel failover behind a shop.

The master-kill test is the experiment the system exists for: kill the Redis
master's pod while a writer sends writes through the shop, and prove that
Sentinel elects a new master within a target, that every write the shop
acknowledged can be read back, and that the old master comes back as a replica.
"""

from __future__ import annotations

import time

from systems import (
    ShopSystem,
    call,
    fqdn,
    master_pod,
    metrics,
    on_one_replica,
    replication,
    sentinel_story,
    shop_read,
    shop_write,
    wait_group_healthy,
    wait_new_master,
)
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from chaoskit import AckedWriter, read_back
from chaoskit.chaos import Chaos
from chaoskit.errors import ClusterError

# Sentinel: 2 s to call the master down, about 1 s to agree and elect, then the promotion.
FAILOVER_TARGET_SECONDS = 15


def roles(kube, namespace: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {f"redis-{i}": replication(kube, namespace, f"redis-{i}").get("role", "?") for i in range(3)}


def test_shop_writes_and_reads_through_sentinel(kube, shop: ShopSystem) -> None:
    ns = shop.namespace
    master = master_pod(kube, ns)
    assert sorted(roles(kube, ns).values()) == ["master", "slave", "slave"]
    assert roles(kube, ns)[master] == "master"
    # Everything is known by its pod DNS name, which the cluster DNS serves for headless Services.
    health = wait_group_healthy(kube, ns)
    assert health["master"] == fqdn(ns, master, "redis"), health
    assert health["replicas"] == sorted(fqdn(ns, f"redis-{i}", "redis") for i in range(3) if f"redis-{i}" != master)
    for i in range(3):
        info = replication(kube, ns, f"redis-{i}")
        if info["role"] == "slave":
            assert info["master_host"] == fqdn(ns, master, "redis") and info["master_link_status"] == "up", info
    code, out = kube.exec(ns, "sentinel-0", ["getent", "hosts", fqdn(ns, master, "redis")])
    pod_ip = kube.core.read_namespaced_pod(master, ns).status.pod_ip
    assert code == 0 and out.split()[0] == pod_ip, out

    with AckedWriter(shop_write(shop.node_port), max_writes=200, max_seconds=30) as writer:
        writer.wait_for_acks(200)
    log = writer.log
    assert len(log.acknowledged) == 200 and not log.failed, log.failed
    verdict = read_back(shop_read(shop.node_port), log.acknowledged)
    assert verdict.checked == 200 and verdict.lost == [], verdict

    assert call(shop.node_port, "/write?key=only-a-key")[0] == 400
    assert call(shop.node_port, "/read?key=never-written")[0] == 404
    text = metrics(shop.node_port)
    assert 'shop_requests_total{endpoint="write",code="200"}' in text, text
    pods = kube.pods(ns, "app=shop")
    assert all(p.metadata.annotations["prometheus.io/scrape"] == "true" for p in pods)
    print(f"200 writes acknowledged and read back; master {master}")


def test_shop_pod_deleted_gracefully_drops_no_request(chaos: Chaos, kube, shop: ShopSystem) -> None:
    # A graceful delete: the pod fails readiness, keeps serving while kube-proxy moves
    # traffic away, then finishes what is in flight. No write may fail meanwhile.
    with AckedWriter(shop_write(shop.node_port), max_writes=20_000, max_seconds=90, pause=0.05) as writer:
        writer.wait_for_acks(50)
        # Returns once the pod has left the API: the container exits about 4 s after
        # SIGTERM, but the kubelet may take many seconds more to let the pod go.
        with chaos.pod_kill(shop.namespace, "app=shop", grace_seconds=15) as record:
            assert record.verified, record
        writer.wait_for_acks(writer.acknowledged() + 50)
    log = writer.log
    assert not log.failed, sorted(set(log.failed.values()))[:5]
    assert read_back(shop_read(shop.node_port), log.acknowledged).lost == []
    print(
        f"shop pod {record.targets[0]} deleted gracefully (gone after {record.inject_to_effect:.1f} s): "
        f"{len(log.acknowledged)} writes, none failed; longest gap {log.longest_gap():.2f} s"
    )


def test_master_kill_fails_over_without_losing_acknowledged_writes(chaos: Chaos, kube, shop: ShopSystem) -> None:
    ns = shop.namespace
    old = master_pod(kube, ns)
    old_ip = kube.core.read_namespaced_pod(old, ns).status.pod_ip
    with AckedWriter(shop_write(shop.node_port), max_writes=3000, max_seconds=60) as writer:
        writer.wait_for_acks(50)
        with chaos.pod_kill(ns, "app=redis", names=[old]) as record:
            assert record.verified, record
        killed_at = record.injected_mono
        assert killed_at is not None
        new = wait_new_master(
            shop.node_port, old, within=FAILOVER_TARGET_SECONDS + 15, explain=lambda: sentinel_story(kube, ns)
        )
        elected = time.monotonic() - killed_at
        acked_before = writer.acknowledged()
        writer.wait_for_acks(acked_before + 100)
    log = writer.log

    assert new != old
    assert elected < FAILOVER_TARGET_SECONDS, f"new master {new} after {elected:.1f} s"
    verdict = read_back(shop_read(shop.node_port), log.acknowledged)
    assert verdict.lost == [], f"{len(verdict.lost)} acknowledged writes lost: {verdict.lost[:10]}"

    # The old master came back (new pod, new IP) as a replica of the new one, and only one master exists. Until
    # its container has started, an exec into the new pod is refused ("container not found"): asked again.
    for attempt in Retrying(
        stop=stop_after_delay(60),
        wait=wait_fixed(1),
        retry=retry_if_exception_type((AssertionError, ClusterError)),
        reraise=True,
    ):
        with attempt:
            info = replication(kube, ns, old)
            assert info.get("role") == "slave" and info.get("master_link_status") == "up", info
            assert info["master_host"] == fqdn(ns, new, "redis"), info
    rejoined = time.monotonic() - killed_at
    assert sorted(roles(kube, ns).values()) == ["master", "slave", "slave"]
    health = wait_group_healthy(kube, ns)
    assert health["master"] == fqdn(ns, new, "redis"), health
    new_ip = kube.core.read_namespaced_pod(old, ns).status.pod_ip
    print(
        f"master {old} killed: {new} elected after {elected:.1f} s (target {FAILOVER_TARGET_SECONDS} s); "
        f"writes: {len(log.acknowledged)} acknowledged ({on_one_replica(log)} on one replica only), "
        f"{len(log.failed)} not, {len(verdict.lost)} lost; "
        f"longest gap between acknowledgements {log.longest_gap():.1f} s; "
        f"{old} back as replica after {rejoined:.1f} s ({old_ip} -> {new_ip}); "
        f"unacknowledged: {sorted(set(log.failed.values()))[:3]}"
    )
