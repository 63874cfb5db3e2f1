"""Leader failover, graceful against crash, side by side; printed, never asserted.

    python benchmarks/crash_bench.py [--runs 5]

Runs the etcd and the Redis (Sentinel) leader experiments of ``experiments/``
``--runs`` times in each mode, interleaved (graceful, crash, graceful, ...):
graceful is ``pod_kill(grace_seconds=0)`` (an API delete: SIGTERM first),
crash is ``pod_kill(crash=True)`` (SIGKILL to every process from the node, then
a force delete). Each run's own line gives the time to a new leader (etcd:
the StatefulSet whole again; Redis: a new master elected), the acknowledged
writes read back and lost, and the longest gap in the acknowledged writes
(etcd). Prints min, median and max per system and mode, and the machine's load.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = {
    "etcd": (
        "experiments/test_etcd.py",
        r"whole again after ([\d.]+) s.*?(\d+) acknowledged writes read back, (\d+) lost",
    ),
    "redis": ("experiments/test_shop.py", r"elected after ([\d.]+) s; (\d+) acknowledged writes read back, (\d+) lost"),
}
GAP = re.compile(r"longest gap ([\d.]+) s")


def spread(values: list[float], unit: str = "s") -> str:
    values = sorted(values)
    return f"median {statistics.median(values):.1f} {unit} (min {values[0]:.1f}, max {values[-1]:.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start", flush=True)
    results: dict[tuple[str, str], list[tuple[float, int, int, float | None]]] = {}
    for run in range(args.runs):
        for system, (path, pattern) in CASES.items():
            for mode in ("graceful", "crash"):
                test = f"{path}::" + (
                    "test_leader_killed_under_writes_recovers_on_its_own_volume_and_loses_nothing"
                    if system == "etcd"
                    else "test_leader_failover_under_writes_loses_no_acknowledged_write"
                )
                done = subprocess.run(
                    [sys.executable, "-m", "pytest", f"{test}[{mode}]", "-q", "-s", "-p", "no:cacheprovider"],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    timeout=900,
                    check=False,
                )
                found = re.search(pattern, done.stdout)
                if found is None:
                    print(f"run {run + 1} {system} {mode}: no figure (exit {done.returncode})", flush=True)
                    print(done.stdout[-2000:], flush=True)
                    continue
                gap = GAP.search(done.stdout)
                figures = (
                    float(found.group(1)),
                    int(found.group(2)),
                    int(found.group(3)),
                    float(gap.group(1)) if gap else None,
                )
                results.setdefault((system, mode), []).append(figures)
                print(
                    f"run {run + 1} {system} {mode}: new leader after {figures[0]:.1f} s, {figures[1]} acknowledged "
                    f"writes read back, {figures[2]} lost" + (f", longest write gap {figures[3]:.1f} s" if gap else ""),
                    flush=True,
                )
    for (system, mode), rows in sorted(results.items()):
        gaps = [r[3] for r in rows if r[3] is not None]
        print(
            f"{system} {mode}, {len(rows)} runs: new leader {spread([r[0] for r in rows])}; acknowledged writes lost "
            f"{sum(r[2] for r in rows)} of {sum(r[1] for r in rows)}"
            + (f"; longest write gap {spread(gaps)}" if gaps else ""),
            flush=True,
        )
    print(f"load average {os.getloadavg()[0]:.2f} at the end", flush=True)


if __name__ == "__main__":
    main()
