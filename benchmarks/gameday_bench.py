"""How fast an abort takes effect, printed, never asserted.

    python benchmarks/gameday_bench.py [--runs 5]

Two figures, on the 3-replica web fixture with every web pod partitioned from
everything (so the host's requests through the NodePort time out):

* **trip to undone**: a stop condition (availability below 80 % over 3 s)
  trips; the time from the trip until every fault of the experiment is undone
  and the undo proven (target: under 1 s);
* **time to trip**: from the injection until the condition trips (bounded by
  the condition's window and the load's 1 s request timeout);
* **abort to undone**: ``chaoskit abort`` in another process while a pod is
  partitioned; the time it reports from its abort line until the fault is
  undone and proven (target: under 2 s).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "fixtures"))

from workloads import bench_cluster, deploy_web, scratch_namespace  # noqa: E402

from chaoskit import Availability, AvailabilityBelow, Chaos, Experiment, ExperimentSpec, LoadSpec  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    cluster, image = bench_cluster()
    ns = f"ck-gameday-bench-{os.getpid()}"
    undo_ms, trip_s, abort_s = [], [], []
    with cluster.kube() as kube, scratch_namespace(kube, ns):
        port = deploy_web(kube, ns, image, cluster.free_node_port(kube)).node_port
        for i in range(runs):
            load = LoadSpec(
                host=f"http://127.0.0.1:{port}", users=4, rate_per_user=10, run_seconds=60, warmup_seconds=2,
                timeout_seconds=1,
            )  # fmt: skip
            spec = ExperimentSpec(
                f"trip {i + 1}", load, (Availability(0.5),), stop_conditions=(AvailabilityBelow(0.8, 3),),
                settle_seconds=0,
            )  # fmt: skip
            chaos = Chaos(cluster, kube)  # a tripped run stops its handle: each run gets its own
            run = Experiment(spec, chaos, check=False)
            with run:
                with chaos.partition(ns, "app=web", max_share=1.0) as cut:
                    run.hold(40)
            assert run.aborted_at is not None and run.abort_undone_at is not None, "the condition never tripped"
            undo_ms.append((run.abort_undone_at - run.aborted_at) * 1000)
            trip_s.append(run.aborted_at - (cut.injected_at or run.aborted_at))
            print(f"run {i + 1}: tripped {trip_s[-1]:.1f} s after the injection, undone {undo_ms[-1]:.0f} ms later")
        for i in range(runs):
            held = threading.Event()

            handle = Chaos(cluster, kube)  # a handle made after the last abort: it may inject again

            def hold(handle: Chaos = handle, held: threading.Event = held) -> None:
                with handle.partition(ns, "app=web", count=1):
                    held.set()
                    time.sleep(20)

            thread = threading.Thread(target=hold, daemon=True)
            thread.start()
            held.wait(60)
            out = subprocess.run(
                [sys.executable, "-m", "chaoskit.cli", "abort", "--name", cluster.name],
                capture_output=True, text=True, timeout=120, check=True,
            ).stdout  # fmt: skip
            abort_s.append(float(out.split(" undone in ")[1].split(" s")[0]))
            thread.join(60)
            print(f"abort {i + 1}: {out.splitlines()[0]}")
    print(
        f"stop condition trip -> every fault undone and proven: p50 {statistics.median(undo_ms):.0f} ms, "
        f"worst {max(undo_ms):.0f} ms ({runs} runs; target < 1000 ms)"
    )
    print(f"injection -> trip (availability < 80 % over 3 s, 1 s timeouts): p50 {statistics.median(trip_s):.1f} s")
    print(
        f"chaoskit abort -> fault undone and proven: p50 {statistics.median(abort_s):.2f} s, "
        f"worst {max(abort_s):.2f} s ({runs} runs; target < 2 s)"
    )


if __name__ == "__main__":
    main()
