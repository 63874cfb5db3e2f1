"""The injector agent's cost at rest and its undo of a killed run's fault; printed, never asserted.

    python benchmarks/agent_bench.py [--rest 180] [--runs 5]

* **At rest**: the API requests the agents make in ``--rest`` seconds with no
  fault recorded, per node and minute. Counted twice: by the API server itself
  (``apiserver_request_total`` for the ``faults`` resource, which only the
  agents and runners touch, read from ``/metrics`` before and after), and by
  the agents' own counters (their log line every minute, records and Leases).
* **SIGKILL -> undo by lease expiry**, ``--runs`` times: a separate process
  holds a partition (a client pod cut from 3 web pods) through the agent and
  is SIGKILLed; the time until no ``chaoskit:`` rule is left on any node, read
  by ``tests/cluster/residue.py`` (Docker and iptables only, none of
  chaoskit's fault code), against the lease's 15 s + 5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "fixtures"))
sys.path.insert(0, str(ROOT / "tests" / "cluster"))

HOLDER = """
import pathlib, sys, time
sys.path.insert(0, {fixtures!r})
from workloads import bench_cluster
from dataclasses import replace
from chaoskit.adapters import nodes
from chaoskit.chaos import Chaos

cluster, _ = bench_cluster()
with cluster.kube() as kube:
    chaos = Chaos(replace(cluster, shell=nodes.AgentShell(kube)), kube)
    with chaos.partition({ns!r}, "role=client", peer_selector="app=web", max_share=1.0):
        pathlib.Path({marker!r}).write_text("held")
        time.sleep(600)
"""


def faults_requests(kube) -> dict[str, float]:
    """``apiserver_request_total`` for the faults resource in a namespace, summed by verb (the controller
    manager's own watch of every resource is cluster-scoped, and not counted)."""
    api = kube.api_client
    method, url, headers, body, post = api.param_serialize("GET", "/metrics", auth_settings=["BearerToken"])
    response = api.call_api(method, url, headers, body, post)
    response.read()
    text = response.data.decode()
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("apiserver_request_total{") and 'resource="faults"' in line and 'scope="namespace"' in line:
            verb = re.search(r'verb="([A-Z]+)"', line)
            if verb:
                totals[verb.group(1)] = totals.get(verb.group(1), 0) + float(line.rsplit(" ", 1)[1])
    return totals


def agent_counts(kube, since: float) -> dict[str, int]:
    """The agents' own request counts from their log lines since ``since`` (Unix time)."""
    counts: dict[str, int] = {}
    for pod in kube.pods("chaoskit-system", "app=chaoskit-injector"):
        log = kube.core.read_namespaced_pod_log(
            pod.metadata.name, "chaoskit-system", since_seconds=max(1, int(time.time() - since))
        )
        for line in log.splitlines():
            found = re.search(r"api requests in the last \d+ s: (\{.*\})", line)
            if found:
                for verb, n in json.loads(found.group(1)).items():
                    counts[verb] = counts.get(verb, 0) + n
    return counts


def spread(values: list[float]) -> str:
    values = sorted(values)
    return f"median {statistics.median(values):.1f} s (min {values[0]:.1f}, max {values[-1]:.1f}, {len(values)} runs)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rest", type=int, default=180, help="seconds at rest to count the agents' requests")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--settle", type=int, default=70, help="seconds after the install before the window (agents' start-up LISTs)"
    )
    args = parser.parse_args()

    from residue import scan
    from workloads import bench_cluster, client_pod, scratch_namespace, wait_pod_running, wait_web, web_objects

    from chaoskit.cluster import injector

    cluster, image = bench_cluster()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start", flush=True)
    with cluster.kube() as kube:
        injector.install(cluster, kube)
        node_count = len(kube.nodes())
        time.sleep(args.settle)  # an install that rolled the agents: their start-up LIST and first minute line
        before, started = faults_requests(kube), time.time()
        time.sleep(args.rest)
        after = faults_requests(kube)
        minutes = args.rest / 60
        by_server = {v: after.get(v, 0) - before.get(v, 0) for v in after if after.get(v, 0) - before.get(v, 0)}
        total = sum(by_server.values())
        print(
            f"at rest, {args.rest} s, {node_count} agents: the API server counted {total:.0f} request(s) on faults "
            f"({by_server or 'none'}) = {total / minutes / node_count:.2f} per node per minute",
            flush=True,
        )
        own = agent_counts(kube, started)
        print(
            f"at rest: the agents' own counters (records, Leases; minute lines in the window): {own or 'none'} "
            f"= {sum(own.values()) / minutes / node_count:.2f} per node per minute (before the watch: 2 LISTs a "
            "second per node, 120 per minute)",
            flush=True,
        )

        ns = f"ck-agent-bench-{os.getpid()}"
        with scratch_namespace(kube, ns):
            kube.apply([*web_objects(ns, image, cluster.free_node_port(kube)), client_pod(ns, image)])
            wait_web(kube, ns)
            wait_pod_running(kube, ns, "client")
            took = []
            for run in range(args.runs):
                marker = Path(f"/tmp/chaoskit-agent-bench-{os.getpid()}-{run}")
                marker.unlink(missing_ok=True)
                script = textwrap.dedent(HOLDER).format(fixtures=str(ROOT / "fixtures"), ns=ns, marker=str(marker))
                holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL)
                deadline = time.monotonic() + 180
                while not marker.exists():
                    if holder.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"the holder did not hold its partition (exit {holder.poll()})")
                    time.sleep(0.1)
                holder.send_signal(signal.SIGKILL)
                killed = time.monotonic()
                holder.wait(timeout=30)
                while scan(cluster.name, str(cluster.kubeconfig)).rules:
                    if time.monotonic() - killed > 120:
                        raise SystemExit("the agents did not undo the killed run's partition in 120 s")
                    time.sleep(0.25)
                took.append(time.monotonic() - killed)
                print(f"run {run + 1}: undone {took[-1]:.1f} s after the SIGKILL", flush=True)
                marker.unlink(missing_ok=True)
            time.sleep(15)  # the last owner's lease expired by this machine's clock too: cleanup removes the records
            subprocess.run(
                [sys.executable, "-m", "chaoskit.cli", "cleanup", "--name", cluster.name],
                capture_output=True,
                timeout=300,
            )
            print(
                f"SIGKILL -> undone by the agents: {spread(took)}, against lease 15 s + 5 s; load average "
                f"{os.getloadavg()[0]:.2f} at the end",
                flush=True,
            )


if __name__ == "__main__":
    main()
