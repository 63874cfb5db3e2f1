"""Load from inside the cluster: two Locust worker pods under the runner's master, through tunnels."""

from __future__ import annotations

import time

from kubernetes import client
from workloads import Web

from chaoskit.adapters.kube import Kube
from chaoskit.chaos import Chaos
from chaoskit.experiment import Workload
from chaoskit.load import Load, LoadSpec
from chaoskit.load.pods import WorkerPods
from chaoskit.slo import Availability, LatencyPercentile


def load_pods(kube: Kube) -> list[str]:
    """Worker pods in chaoskit-system, read with the official client and the label alone."""
    core = client.CoreV1Api(kube.api_client)
    pods = core.list_namespaced_pod("chaoskit-system", label_selector="app.kubernetes.io/name=chaoskit-load")
    return [p.metadata.name for p in pods.items]


def from_pods(web: Web, users: int, run_seconds: float, warmup_seconds: float) -> LoadSpec:
    """Two worker pods sending 10 requests/s per user to the web tier's Service."""
    return LoadSpec(
        host=f"http://web.{web.namespace}.svc:80",
        in_cluster=True,
        workers=2,
        users=users,
        rate_per_user=10,
        run_seconds=run_seconds,
        warmup_seconds=warmup_seconds,
        timeout_seconds=1,
    )


def test_two_worker_pods_load_the_web_tier_through_its_service(experiment, chaos: Chaos, web: Web) -> None:
    spec = from_pods(web, users=6, run_seconds=15, warmup_seconds=3)
    seen: list[str] = []
    objectives = [Availability(0.95), LatencyPercentile(95, 1000)]
    with experiment(spec, objectives, Workload(web.namespace, "web", "web")) as run:
        seen = load_pods(chaos.kube)
        time.sleep(2)
    result = run.result
    assert result is not None
    assert len(seen) == 2, f"two worker pods ran the load: {seen}"
    stream = result.load["stream"]
    assert stream["complete"], stream
    # Every record kept: the records equal Locust's own count, summed by the master from both pods' statistics.
    assert stream["locust_requests"] == stream["received"] > 0
    assert result.load["spec"]["in_cluster"] and result.load["spec"]["workers"] == 2
    (whole, *_rest) = result.verdict.stats
    assert whole.requests > 100, "the load ran steadily"
    assert result.verdict.passed, result.verdict.explain()
    print(f"{result.headline()}; records {stream['received']}, Locust counted {stream['locust_requests']}")
    deadline = time.monotonic() + 60
    while load_pods(chaos.kube) and time.monotonic() < deadline:
        time.sleep(1)
    assert load_pods(chaos.kube) == [], "the worker pods were removed with the load"


def test_a_worker_pod_deleted_mid_run_ends_the_load_and_is_named(chaos: Chaos, web: Web) -> None:
    spec = from_pods(web, users=4, run_seconds=40, warmup_seconds=2)
    started = time.monotonic()
    with Load(spec, WorkerPods(chaos.kube, chaos.cluster)) as load:
        (victim, *_) = load_pods(chaos.kube)
        core = client.CoreV1Api(chaos.kube.api_client)
        core.delete_namespaced_pod(victim, "chaoskit-system", grace_period_seconds=0)
        result = load.wait()
    assert time.monotonic() - started < 35, "the load ended when its worker went, not at its run time"
    assert not result.stream.complete
    (lost,) = result.stream.lost_workers
    assert victim in lost, lost
    print(f"lost: {lost}; {result.stream.received} records before it")
    assert result.stream.shortfall is not None and "not the whole run" in result.stream.shortfall
    deadline = time.monotonic() + 60
    while load_pods(chaos.kube) and time.monotonic() < deadline:
        time.sleep(1)
    assert load_pods(chaos.kube) == [], "the Deployment's replacement pod went with it"
