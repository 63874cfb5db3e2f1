"""Resilience of the stateless web tier: 3 replicas, a readiness probe, a PDB keeping 2.

Each experiment drives load at the tier through its NodePort on 127.0.0.1,
breaks something, and ends in a verdict against the SLOs written here.
"""

from __future__ import annotations

import time

from workloads import WEB_LABELS, Web, steady_load

from chaoskit.experiment import Workload
from chaoskit.slo import Availability, ErrorBurst, LatencyPercentile, PromQL, RecoveryTime


def web_nodes(kube, web: Web) -> dict[str, int]:
    """How many web pods each node holds."""
    counts: dict[str, int] = {}
    for pod in kube.pods(web.namespace, "app=web"):
        counts[pod.spec.node_name] = counts.get(pod.spec.node_name, 0) + 1
    return counts


def test_pod_kill_under_load(experiment, chaos, prometheus, web: Web) -> None:
    # Seen from the server side too: the surviving pods kept serving (Prometheus scrapes each every second).
    served = f'sum(rate(web_requests_total{{namespace="{web.namespace}"}}[5s]))'
    slo = [
        Availability(0.99),
        LatencyPercentile(95, 250),
        ErrorBurst(2.0),
        RecoveryTime(30),
        PromQL(served, at_least=100, window="fault"),
    ]
    prometheus.wait_for_scrape({"namespace": web.namespace}, count=3)
    with experiment(steady_load(web, 60), slo, Workload(web.namespace, "web", "web"), prometheus=prometheus):
        time.sleep(3)
        with chaos.pod_kill(web.namespace, "app=web", grace_seconds=0):
            pass


def test_node_drain_under_load_respects_the_pdb(experiment, chaos, kube, web: Web) -> None:
    node = max((counts := web_nodes(kube, web)), key=lambda n: counts[n])
    slo = [Availability(0.99), LatencyPercentile(95, 250), RecoveryTime(60)]
    with experiment(steady_load(web, 90), slo, Workload(web.namespace, "web", "web")) as run:
        time.sleep(3)
        with chaos.node_drain(node, timeout=120):
            run.wait_recovered(timeout=60)  # replacements ready elsewhere while the node is cordoned
            assert all(p.spec.node_name != node for p in kube.pods(web.namespace, "app=web"))
    assert not kube.core.read_node(node).spec.unschedulable, "the drained node must be uncordoned at the end"


def test_worker_node_failure_reschedules_the_pods(experiment, chaos, kube, web: Web) -> None:
    node = max((counts := web_nodes(kube, web)), key=lambda n: counts[n])
    # Until the node is declared NotReady (about 30 s), a share of requests still go to its pods.
    slo = [
        Availability(0.60, window="fault"),
        Availability(0.99, window="after"),
        RecoveryTime(120),
    ]
    with experiment(steady_load(web, 180), slo, Workload(web.namespace, "web", "web")) as run:
        time.sleep(3)
        with chaos.node_failure(node, mode="stop"):
            recovered = run.wait_recovered(timeout=150)
            moved = kube.pods(web.namespace, ",".join(f"{k}={v}" for k, v in WEB_LABELS.items()))
            ready_elsewhere = [
                p
                for p in moved
                if p.spec.node_name != node and p.metadata.deletion_timestamp is None and p.status.phase == "Running"
            ]
            assert len(ready_elsewhere) >= 3, "the pods of the failed node must run elsewhere"
    print(f"worker {node} stopped: web whole again on the other nodes after {recovered:.1f} s")


def test_latency_on_the_web_tier_keeps_p95_within_its_slo(experiment, chaos, web: Web) -> None:
    """By netem where the kernel has it; here (no netem) by chaoskit's user-space delayer, the same test."""
    slo = [LatencyPercentile(95, 400, window="fault"), Availability(0.99)]
    with experiment(steady_load(web, 40), slo, Workload(web.namespace, "web", "web"), settle_seconds=2):
        with chaos.latency(web.namespace, "app=web", delay_ms=100, jitter_ms=20, max_share=1.0):  # every web pod
            time.sleep(10)


def test_cpu_starved_web_pod_keeps_the_tier_within_its_slo(experiment, chaos, web: Web) -> None:
    """One web pod shares its CPU with a busy stressor in its own cgroup (a noisy neighbour inside it, a runaway
    loop): its requests slow, the tier as a whole must stay within its SLO."""
    slo = [LatencyPercentile(95, 250, window="fault"), Availability(0.99)]
    with experiment(steady_load(web, 35), slo, Workload(web.namespace, "web", "web"), settle_seconds=2) as run:
        with chaos.stress(web.namespace, "app=web", cpu_workers=2, count=1) as starved:
            assert "CPU" in (starved.effect or ""), starved.effect
            time.sleep(15)
    assert run.result is not None
    during = next(s for s in run.result.verdict.stats if s.window == "fault")
    print(f"CPU stress on {starved.targets[0]} ({starved.effect}): p95 {during.p95_ms:.0f} ms of {during.requests}")


def test_zone_failure_of_the_web_tier_spread_over_two_zones(experiment, chaos, kube, web: Web) -> None:
    """The web tier runs in two zones; the zone holding most of its pods fails whole (every node in it
    stopped at once). The tier must come back whole in the zone left."""
    zone_of = {n.metadata.name: (n.metadata.labels or {}).get("topology.kubernetes.io/zone") for n in kube.nodes()}
    pods_in: dict[str, int] = {}
    for node, count in web_nodes(kube, web).items():
        pods_in[str(zone_of[node])] = pods_in.get(str(zone_of[node]), 0) + count
    assert len(pods_in) >= 2, f"the web tier should span two zones: {pods_in}"
    zone = max(pods_in, key=lambda z: pods_in[z])
    slo = [Availability(0.60, window="fault"), Availability(0.99, window="after"), RecoveryTime(120)]
    # 120 s of load: the zone is NotReady after about 40 s and the tier whole again after about 50 s.
    with experiment(steady_load(web, 120), slo, Workload(web.namespace, "web", "web")) as run:
        time.sleep(3)
        with chaos.zone_failure(zone, mode="stop") as down:
            recovered = run.wait_recovered(timeout=150)
            survivors = [
                p
                for p in kube.pods(web.namespace, "app=web")
                if zone_of.get(p.spec.node_name) != zone and p.status.phase == "Running"
            ]
            assert len(survivors) >= 3, "the tier must run whole outside the failed zone"
    print(f"zone {zone} ({pods_in[zone]} of the web pods) failed ({down.effect}): whole again after {recovered:.1f} s")
