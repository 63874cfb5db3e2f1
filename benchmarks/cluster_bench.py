"""Figures of the cluster layer, printed, never asserted.

    python benchmarks/cluster_bench.py warm            cluster up with images cached (target < 90 s)
    python benchmarks/cluster_bench.py pod-recovery    pod deleted -> Deployment whole again (N runs)
    python benchmarks/cluster_bench.py cold --yes-uninstall
                                                     a cold build from nothing (target < 25 min);
                                                     removes the cluster, chaoskit's images, Docker
                                                     and kind first, to start as a new machine does

Each prints one line per figure: ``figure: value unit (target ...)``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "fixtures"))
CHAOSKIT = [sys.executable, "-m", "chaoskit.cli"]


def figure(name: str, value: float, unit: str, target: str) -> None:
    print(f"{name}: {value:.1f} {unit} (target {target})", flush=True)


def timed(args: list[str], env: dict[str, str] | None = None) -> float:
    started = time.monotonic()
    subprocess.run(args, check=True, env={**os.environ, **(env or {})})
    return time.monotonic() - started


def warm() -> None:
    subprocess.run([*CHAOSKIT, "cluster", "up"], check=True)  # make sure images are built
    subprocess.run([*CHAOSKIT, "cluster", "down"], check=True)
    figure("cluster up, warm machine, 3 nodes", timed([*CHAOSKIT, "cluster", "up"]), "s", "< 90 s")


def cold() -> None:
    cache = Path.home() / ".cache" / "chaoskit-cold-bench"
    shutil.rmtree(cache, ignore_errors=True)
    print("resetting the machine to a new one's state (cluster, images, Docker, kind)", flush=True)
    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        subprocess.run([*CHAOSKIT, "cluster", "down"], check=False)
        images = subprocess.run(
            ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"], capture_output=True, text=True
        ).stdout.split()
        doomed = [i for i in images if i.startswith(("chaoskit/", "k8s.gcr.io/"))]
        if doomed:
            subprocess.run(["docker", "rmi", "-f", *doomed], check=False, capture_output=True)
        subprocess.run(["sh", "-c", "kill $(cat /var/run/docker.pid)"], check=False)
        time.sleep(5)
    for path in (
        "/etc/docker/daemon.json",
        "/usr/local/libexec/chaoskit/runc-nosysresource",
        "/etc/apt/sources.list.d/chaoskit.sources",
        "/etc/apt/preferences.d/chaoskit",
    ):
        Path(path).unlink(missing_ok=True)
    subprocess.run(
        [
            "apt-get",
            "remove",
            "-y",
            "-q",
            "docker.io",
            "kind",
            "golang-1.19-go",
            "debootstrap",
            "golang-github-modern-go-reflect2-dev",
        ],
        check=False,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    took = timed([*CHAOSKIT, "cluster", "up"], env={"CHAOSKIT_CACHE": str(cache)})
    figure("cold build from nothing to a ready 3-node cluster", took / 60, "min", "< 25 min")


def pod_recovery(runs: int) -> None:
    from workloads import WEB_LABELS, bench_cluster, scratch_namespace, wait_web, web_objects

    cluster, image = bench_cluster()
    namespace = f"ck-bench-{os.getpid()}"
    with cluster.kube() as kube, scratch_namespace(kube, namespace):
        kube.apply(web_objects(namespace, image, cluster.free_node_port(kube)))
        wait_web(kube, namespace)
        times = []
        for _ in range(runs):
            pods = kube.core.list_namespaced_pod(namespace, label_selector="app=web").items
            victim = sorted(p.metadata.name for p in pods)[0]
            started = time.monotonic()
            kube.core.delete_namespaced_pod(victim, namespace, grace_period_seconds=0)

            def whole(current: dict, victim: str = victim) -> bool:
                ready = [
                    p
                    for p in current.values()
                    if p.metadata.labels.get("app") == WEB_LABELS["app"]
                    and p.metadata.deletion_timestamp is None
                    and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
                ]
                return victim not in current and len(ready) == 3

            kube.wait_for(kube.core.list_namespaced_pod, whole, 60, "recovery", namespace=namespace)
            times.append(time.monotonic() - started)
    figure("pod deleted (grace 0) -> 3 ready replicas, median", statistics.median(times), "s", "p99 pod startup <= 5 s")
    figure("  min", min(times), "s", "-")
    figure("  max", max(times), "s", "-")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("warm")
    c = sub.add_parser("cold")
    c.add_argument("--yes-uninstall", action="store_true", required=True)
    p = sub.add_parser("pod-recovery")
    p.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    if args.what == "warm":
        warm()
    elif args.what == "cold":
        cold()
    else:
        pod_recovery(args.runs)


if __name__ == "__main__":
    main()
