"""How a pod kill and a partition grow with their target pods, in one run; printed, never asserted.

    python benchmarks/scale_bench.py [--runs 3] [--sizes 3,10,30,100] [--ways docker,agent]

For N web pods (N = each of ``--sizes``), interleaved run by run:

* **pod kill of all N pods** (grace 0): inject-to-effect as the fault record stamps it (from the
  first delete to every killed UID gone from the API), with the deletes 8 at a time (chaoskit's
  way) and one at a time (as before), so the two are measured side by side on the same pods;
* **partition of one client pod from the N pods** through each way to the nodes (``docker``,
  ``agent``): inject-to-effect (every rule in place in every namespace).

Each figure is min, median and max over ``--runs``, with its growth from the smallest size, and
the machine's load average as each run ended. Before each measurement it waits for the 1-minute
load average to fall under ``--settle-load`` (up to 3 min before the partitions, 1 min before
each kill): a kill restarts N pods, and on two cores their start is a load that would otherwise
be measured with the fault. Goals (issue 25): a partition under 2x from 3
to 30 pods and under 4x from 3 to 100, on both ways.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "fixtures"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from figures_out import Figures  # noqa: E402


def spread(values: list[float]) -> str:
    v = sorted(values)
    return f"median {statistics.median(v) * 1000:.0f} ms (min {v[0] * 1000:.0f}, max {v[-1] * 1000:.0f})"


def settle(load: float, most: float = 180.0) -> None:
    """Wait (bounded) until the 1-minute load average is under ``load``: the pods a kill restarted have started."""
    deadline = time.monotonic() + most
    while os.getloadavg()[0] >= load and time.monotonic() < deadline:
        time.sleep(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", default="3,10,30,100")
    parser.add_argument("--ways", default="docker,agent", help="ways to the nodes for the partition")
    parser.add_argument(
        "--settle-load", type=float, default=4.0, help="before each measurement, wait (bounded) for this load"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here, for benchmarks/bench.py")
    args = parser.parse_args()
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C stops it even when started in the background
    sizes = [int(n) for n in args.sizes.split(",")]
    ways = args.ways.split(",")

    from workloads import bench_cluster, client_pod, scratch_namespace, wait_pod_running, wait_web, web_objects

    from chaoskit.adapters import kube as kube_module
    from chaoskit.adapters import nodes
    from chaoskit.chaos import Chaos
    from chaoskit.cluster import injector

    cluster, image = bench_cluster()
    ns = f"ck-scale-bench-{os.getpid()}"
    loads: list[float] = []
    started = time.monotonic()
    with cluster.kube() as kube, scratch_namespace(kube, ns):
        shells: dict[str, nodes.NodeShell] = {}
        if "docker" in ways:
            shells["docker"] = nodes.DockerShell()
        if "agent" in ways:
            injector.install(cluster, kube)
            shells["agent"] = nodes.AgentShell(kube)
        chaos_by_way = {way: Chaos(replace(cluster, shell=shell), kube) for way, shell in shells.items()}
        chaos = next(iter(chaos_by_way.values()))
        port = cluster.free_node_port(kube)
        kube.apply([client_pod(ns, image)])
        wait_pod_running(kube, ns, "client")
        kill: dict[tuple[int, str], list[float]] = {}
        cut: dict[tuple[int, str], list[float]] = {}
        size_loads: dict[int, list[float]] = {}
        for size in sizes:
            mark = len(loads)
            kube.apply(web_objects(ns, image, port, replicas=size)[:1])
            wait_web(kube, ns, replicas=size, timeout=600)
            # The partitions first, on a machine that has settled: the kills below restart N pods each, and on
            # two cores that load (an average of 40 at N=30) would be measured, not the partition.
            settle(args.settle_load)
            for _ in range(args.runs):
                for way, by_way in chaos_by_way.items():
                    with by_way.partition(ns, "role=client", peer_selector="app=web", max_share=1.0) as record:
                        pass
                    cut.setdefault((size, way), []).append(record.inject_to_effect or 0)
                loads.append(os.getloadavg()[0])
            for _ in range(args.runs):
                for how, parallel in (("8 at a time", 8), ("one at a time", 1)):
                    kube_module.PARALLEL_CALLS = parallel
                    wait_web(kube, ns, replicas=size, timeout=600)
                    settle(args.settle_load, most=60.0)  # a shorter wait: six kills a size
                    with chaos.pod_kill(ns, "app=web", count=size, grace_seconds=0, max_share=1.0) as record:
                        pass
                    kill.setdefault((size, how), []).append(record.inject_to_effect or 0)
                    loads.append(os.getloadavg()[0])
                kube_module.PARALLEL_CALLS = 8
            wait_web(kube, ns, replicas=size, timeout=600)
            size_loads[size] = loads[mark:]
            # Printed as each size is done: a run stopped at the largest size keeps the smaller ones' figures.
            print(
                f"N={size} measured {time.monotonic() - started:.0f} s in; load average (1 min) as each run ended "
                f"{min(loads[mark:]):.2f}-{max(loads[mark:]):.2f} on {os.cpu_count()} cores",
                flush=True,
            )
            for title, figures, keys in (
                ("pod kill of all N pods, grace 0", kill, ("8 at a time", "one at a time")),
                ("partition of 1 client from N pods", cut, tuple(ways)),
            ):
                for key in keys:
                    values = figures[(size, key)]
                    base = statistics.median(figures[(sizes[0], key)])
                    print(
                        f"  {title} ({key}), N={size}: inject-to-effect {spread(values)} over {len(values)} runs, "
                        f"{statistics.median(values) / base:.2f}x of N={sizes[0]}",
                        flush=True,
                    )
    command = f"python benchmarks/scale_bench.py --runs {args.runs} --sizes {args.sizes} --ways {args.ways}"
    out = Figures(command)
    for size in sizes:
        for key in ("8 at a time", "one at a time"):
            values = [v * 1000 for v in kill[(size, key)]]
            out.add(
                f"pod kill of all {size} pods, grace 0, deletes {key}: inject-to-effect", "ms", values, size_loads[size]
            )
        for way in ways:
            values = [v * 1000 for v in cut[(size, way)]]
            out.add(f"partition of 1 client from {size} pods ({way}): inject-to-effect", "ms", values, size_loads[size])
            if size != sizes[0]:
                growth = statistics.median(cut[(size, way)]) / statistics.median(cut[(sizes[0], way)])
                name = f"partition ({way}): median inject-to-effect at {size} pods over that at {sizes[0]}"
                out.add(name, "x", [growth], size_loads[size])
    out.write(args.json)


if __name__ == "__main__":
    main()
