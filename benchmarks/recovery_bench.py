"""The recovery watch against an independent ground truth, on a warm cluster, printed, never asserted.

    python benchmarks/recovery_bench.py [--runs 10]

Each run is one cycle as a test lives it: enter a recovery watch on the
3-replica web fixture (Deployment and Service), kill one pod (grace 0), wait
until the watch says whole again (Deployment ready and endpoints back, after a
loss it saw), and leave the watch. Beside it, a thread of this script polls
the Deployment's ``readyReplicas`` every 50 ms through an API client of its own:
the ground truth, whole again at the first poll answering 3 ready after one
answering fewer.

Printed per run, all from the kill: the cycle's wall time (until the watch is
closed), the ground truth's recovery, their difference, the watch's own
recovery time and how long leaving the watch took; then p50 and max of each.
Target: the cycle ends within 0.3 s of the ground truth; leaving the watch
takes under 100 ms.
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

from workloads import (  # noqa: E402
    ReadyPoller,
    bench_cluster,
    deploy_web,
    scratch_namespace,
    wait_endpoints,
    wait_web,
)

from chaoskit.chaos import Chaos  # noqa: E402

REPLICAS = 3


def line(name: str, values: list[float], unit: str = "s") -> str:
    scale, fmt = (1000, "{:.0f} ms") if unit == "ms" else (1, "{:.3f} s")
    p50, top = statistics.median(values) * scale, max(values) * scale
    return f"{name}: p50 {fmt.format(p50)}, max {fmt.format(top)}, min {fmt.format(min(values) * scale)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    cluster, image = bench_cluster()
    ns = f"ck-recovery-bench-{os.getpid()}"
    cycles: list[float] = []
    truths: list[float] = []
    differences: list[float] = []
    watched: list[float] = []
    leaves: list[float] = []
    with cluster.kube() as kube, cluster.kube() as truth_kube, scratch_namespace(kube, ns):
        deploy_web(kube, ns, image, cluster.free_node_port(kube))
        chaos = Chaos(cluster, kube)
        for i in range(runs):
            wait_web(kube, ns)
            wait_endpoints(kube, ns, "web", REPLICAS)
            with ReadyPoller(truth_kube, ns, "web").running() as poller:
                with chaos.recovery_watch(ns, "web", service="web") as watch:
                    with chaos.pod_kill(ns, "app=web", grace_seconds=0) as record:
                        pass
                    assert record.injected_mono is not None
                    recovery = watch.wait_recovered(record.injected_mono, timeout=120)
                    leaving = time.monotonic()
                closed = time.monotonic()
            truth_at = poller.lost_and_whole(record.injected_mono, REPLICAS)[1]
            if recovery.seconds is None or truth_at is None:
                print(f"run {i + 1}: no recovery seen (watch {recovery}, ground truth {truth_at})", flush=True)
                continue
            cycle, truth = closed - record.injected_mono, truth_at - record.injected_mono
            cycles.append(cycle)
            truths.append(truth)
            differences.append(cycle - truth)
            watched.append(recovery.seconds)
            leaves.append(closed - leaving)
            print(
                f"run {i + 1}: cycle {cycle:.3f} s, ground truth {truth:.3f} s, difference {cycle - truth:+.3f} s; "
                f"watch's recovery {recovery.seconds:.3f} s (Deployment {recovery.whole:.3f} s, endpoints "
                f"{'-' if recovery.endpoints_whole is None else f'{recovery.endpoints_whole:.3f} s'}), "
                f"watch left in {(closed - leaving) * 1000:.1f} ms; {len(poller.samples)} polls, "
                f"{poller.errors} failed",
                flush=True,
            )
    if not cycles:
        print("no run saw a recovery")
        return
    print(f"over {len(cycles)} runs:")
    print("  " + line("pod-kill cycle wall time (kill -> recovery seen -> watch closed)", cycles))
    print("  " + line("ground-truth recovery (50 ms poll of readyReplicas)", truths))
    print("  " + line("difference, cycle - ground truth", differences))
    worst = max(differences, key=abs)
    print(f"  largest difference either way: {worst:+.3f} s (target within 0.3 s)")
    print("  " + line("recovery time as the watch measured it", watched))
    print("  " + line("leaving the watch (target < 100 ms)", leaves, unit="ms"))


if __name__ == "__main__":
    main()
