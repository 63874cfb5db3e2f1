"""The injector agent against Docker, in one run, and how a partition grows with its pods; printed, never asserted.

    python benchmarks/injector_bench.py [--runs 3] [--sizes 3,10,30]

For container kill, process freeze, partition, packet loss and bandwidth on the
3 web pods: inject-to-effect (as the fault record stamps it) and the time to
undo and prove the undo, through Docker (``docker exec`` into the kind node)
and through the injector agent (an exec into its pod through the API),
alternated run by run. Then a partition of one client pod from N web pods
(N = 3, 10, 30): inject-to-effect each way, against the goal of under 2x from
3 to 30 (one exec per node, the nodes in parallel).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "fixtures"))


def ms(values: list[float]) -> str:
    values = sorted(values)
    return f"p50 {statistics.median(values) * 1000:.0f} ms (min {values[0] * 1000:.0f}, max {values[-1] * 1000:.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", default="3,10,30")
    parser.add_argument("--scaling-only", action="store_true", help="only the partition's growth with its pods")
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]

    from workloads import bench_cluster, client_pod, scratch_namespace, wait_pod_running, wait_web, web_objects

    from chaoskit.adapters import nodes
    from chaoskit.chaos import Chaos
    from chaoskit.cluster import injector

    cluster, image = bench_cluster()
    ns = f"ck-injector-bench-{os.getpid()}"
    with cluster.kube() as kube, scratch_namespace(kube, ns):
        injector.install(cluster, kube)
        shells: dict[str, nodes.NodeShell] = {"docker": nodes.DockerShell(), "agent": nodes.AgentShell(kube)}
        kube.apply([*web_objects(ns, image, cluster.free_node_port(kube)), client_pod(ns, image)])
        wait_web(kube, ns)
        wait_pod_running(kube, ns, "client")
        # One Chaos per way to the nodes: the way travels with the cluster handle.
        ways = {way: Chaos(replace(cluster, shell=shell), kube) for way, shell in shells.items()}
        faults: dict[str, Callable[[Chaos], AbstractContextManager[Any]]] = {
            "container kill": lambda chaos: chaos.container_kill(ns, "app=web"),
            "process freeze": lambda chaos: chaos.process_freeze(ns, "app=web", port=8080),
            "partition": lambda chaos: chaos.partition(ns, "role=client", peer_selector="app=web", max_share=1.0),
            "packet loss": lambda chaos: chaos.packet_loss(ns, "app=web", percent=30, max_share=1.0),
            "bandwidth": lambda chaos: chaos.bandwidth(ns, "app=web", rate_kbit=2000, max_share=1.0),
        }
        effect: dict[tuple[str, str], list[float]] = {}
        undo: dict[tuple[str, str], list[float]] = {}
        for _ in range(0 if args.scaling_only else args.runs):
            for way, chaos in ways.items():
                for name, fault in faults.items():
                    wait_web(kube, ns)
                    with fault(chaos) as record:
                        leaving = time.monotonic()
                    if record.undoable:
                        undo.setdefault((name, way), []).append(time.monotonic() - leaving)
                    effect.setdefault((name, way), []).append(record.inject_to_effect or 0)
        for name in faults if not args.scaling_only else ():
            for way in shells:
                undone = f"; undo + proof {ms(undo[(name, way)])}" if (name, way) in undo else ""
                print(f"{name} via {way}: inject-to-effect {ms(effect[(name, way)])}{undone}", flush=True)

        scaling: dict[tuple[int, str], list[float]] = {}
        for size in sizes:
            kube.apply(web_objects(ns, image, cluster.free_node_port(kube), replicas=size)[:1])
            wait_web(kube, ns, replicas=size, timeout=300)
            for _ in range(args.runs):
                for way, chaos in ways.items():
                    with chaos.partition(ns, "role=client", peer_selector="app=web", max_share=1.0) as record:
                        pass
                    scaling.setdefault((size, way), []).append(record.inject_to_effect or 0)
        for way in shells:
            base = statistics.median(scaling[(sizes[0], way)])
            for size in sizes:
                p50 = statistics.median(scaling[(size, way)])
                print(
                    f"partition of 1 client from {size} web pods via {way}: inject-to-effect "
                    f"{ms(scaling[(size, way)])}, {p50 / base:.2f}x of {sizes[0]} pods (goal < 2x at 30)",
                    flush=True,
                )


if __name__ == "__main__":
    main()
