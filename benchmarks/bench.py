"""``make bench``: run the benchmarks whose figures the docs quote, and print the figures table.

    python benchmarks/bench.py [--quick] [--only distributed,scale]

Each benchmark runs as its own process with ``--json FILE`` (see :mod:`figures_out`); its own printout
goes by as it runs, and at the end one Markdown table gives every figure as min / median / max over its
runs, the 1-minute load average while it was taken, and the command that printed it, to paste into
docs/figures.md and to rerun. ``--quick`` runs fewer rounds (to try the table, not to quote it).

The scaling benchmark needs the cluster (``chaoskit cluster up``); the load benchmark needs nothing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from figures_out import Figures  # noqa: E402

BENCHMARKS = {
    "distributed": (["distributed_bench.py", "--rounds", "5"], ["distributed_bench.py", "--rounds", "2"]),
    "scale": (
        ["scale_bench.py", "--runs", "3", "--sizes", "3,10,30"],
        ["scale_bench.py", "--runs", "1", "--sizes", "3,10"],
    ),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer runs: to try the table, not to quote it")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help=f"which of {', '.join(BENCHMARKS)}")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in BENCHMARKS]
    if unknown:
        parser.error(f"no benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}")
    tables: list[Figures] = []
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="chaoskit-bench-") as tmp:
        for name in chosen:
            full, quick = BENCHMARKS[name]
            argv = quick if args.quick else full
            out = Path(tmp) / f"{name}.json"
            print(f"== {name}: python benchmarks/{' '.join(argv)} ({time.strftime('%H:%M:%S')})", flush=True)
            done = subprocess.run([sys.executable, str(HERE / argv[0]), *argv[1:], "--json", str(out)], check=False)
            if done.returncode != 0 or not out.exists():
                failed.append(f"{name} (exit {done.returncode})")
                continue
            tables.append(Figures.read(out))
    print(f"\nfigures on {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M %Z')}:\n")
    print("| figure | min / median / max | load average (1 min) | command |")
    print("|---|---|---|---|")
    for table in tables:
        for figure in table.figures:
            print(figure.row(table.command))
    if failed:
        print(f"\nnot measured: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
