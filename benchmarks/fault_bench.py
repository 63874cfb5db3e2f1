"""Figures of the fault library on a warm cluster, printed, never asserted.

    python benchmarks/fault_bench.py [--runs 5]

For pod kill, container kill, partition, packet loss, bandwidth, latency, DNS,
CPU and memory stress (and ``--zone-runs`` zone failures): inject-to-effect
(from the injection call to the effect being in place, as the fault record
stamps it). For the network faults (on 3 pods over two nodes), also the wall
time of entering the block (plan, the partition's probe before the cut,
inject, proof) and of leaving it (undo and its proof). For the recovery watcher: the time from a pod kill to the watch
seeing the loss, in the Service's endpoints and in the Deployment's status.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "fixtures"))


def line(name: str, values: list[float], target: str) -> None:
    values = sorted(values)
    print(
        f"{name}: p50 {statistics.median(values) * 1000:.0f} ms, min {values[0] * 1000:.0f} ms, "
        f"max {values[-1] * 1000:.0f} ms over {len(values)} runs (target {target})",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--zone-runs", type=int, default=1, help="zone failures (stop, a worker zone): slow")
    args = parser.parse_args()
    runs, zone_runs = args.runs, args.zone_runs

    from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed
    from workloads import (
        bench_cluster,
        client_pod,
        scratch_namespace,
        wait_endpoints,
        wait_pod_running,
        wait_web,
        web_objects,
    )

    from chaoskit.adapters.kube import is_control_plane
    from chaoskit.chaos import Chaos

    cluster, image = bench_cluster()
    ns = f"ck-fault-bench-{os.getpid()}"
    effects: dict[str, list[float]] = {
        "pod kill": [],
        "container kill": [],
        "partition": [],
        "packet loss": [],
        "bandwidth": [],
        "latency (50 ms)": [],
        "dns (nxdomain, the client pod)": [],
        "stress (1 CPU worker, one pod)": [],
        "stress (64 MiB, one pod)": [],
    }
    network = ["partition", "packet loss", "bandwidth", "latency (50 ms)", "dns (nxdomain, the client pod)"]
    proven: dict[str, list[float]] = {name: [] for name in network}
    undone: dict[str, list[float]] = {name: [] for name in network}
    zone_down: list[float] = []
    endpoints_seen: list[float] = []
    deployment_seen: list[float] = []
    with cluster.kube() as kube, scratch_namespace(kube, ns):
        kube.apply([*web_objects(ns, image, cluster.free_node_port(kube)), client_pod(ns, image)])
        wait_web(kube, ns)
        wait_pod_running(kube, ns, "client")
        chaos = Chaos(cluster, kube)
        for _ in range(runs):
            wait_endpoints(kube, ns, "web", 3)
            with chaos.recovery_watch(ns, "web", service="web") as watch:
                with chaos.pod_kill(ns, "app=web") as record:
                    pass
                for attempt in Retrying(
                    stop=stop_after_delay(60), wait=wait_fixed(0.2), retry=retry_if_exception_type(AssertionError)
                ):
                    with attempt:
                        recovery = watch.recovery(record.injected_mono)
                        assert recovery.recovered
            effects["pod kill"].append(record.inject_to_effect or 0)
            endpoints_seen.append(recovery.endpoints_loss_seen or 0)
            deployment_seen.append(recovery.loss_seen or 0)
            wait_web(kube, ns)
            with chaos.container_kill(ns, "app=web") as record:
                effects["container kill"].append(record.inject_to_effect or 0)
            wait_web(kube, ns)
            # Each network fault on all 3 web pods (over two nodes), so max_share=1.0 says so.
            for name, fault in (
                ("partition", lambda: chaos.partition(ns, "role=client", peer_selector="app=web", max_share=1.0)),
                ("packet loss", lambda: chaos.packet_loss(ns, "app=web", percent=30, max_share=1.0)),
                ("bandwidth", lambda: chaos.bandwidth(ns, "app=web", rate_kbit=2000, max_share=1.0)),
                ("latency (50 ms)", lambda: chaos.latency(ns, "app=web", delay_ms=50, max_share=1.0)),
                ("dns (nxdomain, the client pod)", lambda: chaos.dns(ns, "role=client", "web", max_share=1.0)),
            ):
                entered = time.monotonic()
                with fault() as record:
                    proven[name].append(time.monotonic() - entered)
                    leaving = time.monotonic()
                undone[name].append(time.monotonic() - leaving)
                effects[name].append(record.inject_to_effect or 0)
            with chaos.stress(ns, "app=web", cpu_workers=1) as record:
                effects["stress (1 CPU worker, one pod)"].append(record.inject_to_effect or 0)
            with chaos.stress(ns, "app=web", memory_bytes=64 << 20) as record:
                effects["stress (64 MiB, one pod)"].append(record.inject_to_effect or 0)
        for _ in range(zone_runs):
            workers = {n.metadata.name: n for n in kube.nodes() if not is_control_plane(n)}
            zone = sorted(n.metadata.labels["topology.kubernetes.io/zone"] for n in workers.values())[-1]
            with chaos.zone_failure(zone, mode="stop") as record:
                zone_down.append(record.inject_to_effect or 0)
            wait_web(kube, ns)
    for name, values in effects.items():
        line(f"inject-to-effect, {name}", values, "< 1 s; network faults < 250 ms")
    for name in proven:
        line(f"{name}: plan + inject + proof (entering the block)", proven[name], "")
        line(f"{name}: undo + proof of the undo (leaving the block)", undone[name], "")
    line("recovery watcher: pod kill -> loss seen in Service endpoints", endpoints_seen, "p50 < 200 ms")
    line("recovery watcher: pod kill -> loss seen in Deployment status", deployment_seen, "p50 < 200 ms")
    if zone_down:
        line("zone failure (stop): injected -> every node of the zone NotReady", zone_down, "the node grace period")


if __name__ == "__main__":
    main()
