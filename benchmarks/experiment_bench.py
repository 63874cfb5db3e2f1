"""Harness overhead of one experiment on a warm cluster, printed, never asserted.

    python benchmarks/experiment_bench.py [--runs 3]

Each run is a pod kill under load against the 3-replica web fixture, judged
against a few SLOs, with the journal and HTML report written. The overhead is
the wall time of the whole experiment minus what the experiment is *for*
(warm-up, the fault block, waiting for recovery, the settle window): starting
the watch and the load worker, stopping them, judging and writing the reports.
Target: under 5 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "fixtures"))

from workloads import bench_cluster, deploy_web, scratch_namespace, wait_web  # noqa: E402

from chaoskit.chaos import Chaos  # noqa: E402
from chaoskit.experiment import Experiment, ExperimentSpec, Workload  # noqa: E402
from chaoskit.load import LoadSpec  # noqa: E402
from chaoskit.report import write_reports  # noqa: E402
from chaoskit.slo import Availability, LatencyPercentile, RecoveryTime  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    cluster, image = bench_cluster()
    ns = f"ck-experiment-bench-{os.getpid()}"
    overheads, totals, recoveries = [], [], []
    with cluster.kube() as kube, tempfile.TemporaryDirectory() as reports, scratch_namespace(kube, ns):
        port = deploy_web(kube, ns, image, cluster.free_node_port(kube)).node_port
        chaos = Chaos(cluster, kube)
        for i in range(runs):
            spec = ExperimentSpec(
                name=f"pod kill under load {i + 1}",
                load=LoadSpec(host=f"http://127.0.0.1:{port}", users=8, run_seconds=60, warmup_seconds=2),
                objectives=(Availability(0.9), LatencyPercentile(95, 500), RecoveryTime(30)),
                workload=Workload(ns, "web", "web"),
                settle_seconds=3,
            )
            started = time.monotonic()
            run = Experiment(spec, chaos, on_result=[lambda r: write_reports([r], Path(reports))])
            with run:
                with chaos.pod_kill(ns, "app=web"):
                    pass
            total = time.monotonic() - started
            t = run.timings
            overhead = total - t.warmup - t.block - t.recovery_wait - t.settle
            assert run.result is not None
            print(
                f"run {i + 1}: total {total:.2f} s = warm-up {t.warmup:.2f} + faults {t.block:.2f} "
                f"+ recovery {t.recovery_wait:.2f} + settle {t.settle:.2f} + harness {overhead:.2f} "
                f"(setup {t.setup:.2f}, stop and judge {t.teardown:.2f}); {run.result.headline()}",
                flush=True,
            )
            overheads.append(overhead)
            totals.append(total)
            recoveries.append(run.result.verdict.recovery_s or 0.0)
            wait_web(kube, ns)
    print(
        f"harness overhead per experiment: p50 {statistics.median(overheads):.2f} s, "
        f"max {max(overheads):.2f} s over {runs} runs (target < 5 s)"
    )
    total, recovery = statistics.median(totals), statistics.median(recoveries)
    print(f"experiment wall time: p50 {total:.1f} s; recovery p50 {recovery:.2f} s")


if __name__ == "__main__":
    main()
