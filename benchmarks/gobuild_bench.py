"""How long Kubernetes and its node runtime take to build from Go modules, cold and warm.

    .venv/bin/python benchmarks/gobuild_bench.py --kubernetes 1.37 --cache /tmp/gobuild-cache

A cold build runs with an empty chaoskit cache (``CHAOSKIT_CACHE``, so no binaries and no Go build cache)
and the machine's module cache as it is; ``--cold-modules`` also points ``GOMODCACHE`` at an empty
directory, so every module zip is downloaded again (the fresh machine's case). Then it runs again, warm:
every piece is found in the cache. It prints each piece's build time, the binaries' sizes, the machine's
load and cores, and the peak resident memory of the build's processes (from ``getrusage`` of the children).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kubernetes", default="1.37")
    parser.add_argument("--cache", type=Path, required=True, help="an empty directory for chaoskit's cache")
    parser.add_argument("--cold-modules", action="store_true", help="download every module again")
    args = parser.parse_args()
    if args.cache.exists() and any(args.cache.iterdir()):
        parser.error(f"{args.cache} is not empty: a cold build needs an empty cache")
    args.cache.mkdir(parents=True, exist_ok=True)
    os.environ["CHAOSKIT_CACHE"] = str(args.cache)
    if args.cold_modules:
        os.environ["GOMODCACHE"] = str(args.cache / "gomodcache")
    from chaoskit.provision import gomodules

    rel = gomodules.release(args.kubernetes)
    load_before = os.getloadavg()
    started = time.monotonic()
    binaries = gomodules.build(rel)
    cold = time.monotonic() - started
    load_after = os.getloadavg()
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    started = time.monotonic()
    gomodules.build(rel)
    warm = time.monotonic() - started
    print(f"\nKubernetes {rel.kubernetes} from Go modules on {os.cpu_count()} cores")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min)")
    for piece in rel.pieces:
        built = (gomodules.entry(rel, piece) / "built.txt").read_text().strip()
        print(f"  {built}")
    print(f"cold: {cold:.0f} s in all ({cold / 60:.1f} min); warm (all cached): {warm:.1f} s")
    print(f"peak resident memory of one build process: {peak:.0f} MiB")
    total = sum(path.stat().st_size for path in binaries.values())
    print(f"{len(binaries)} binaries, {total / 2**20:.0f} MiB: " + ", ".join(sorted(binaries)))
    if args.cold_modules:  # the module cache is read-only: go removes it
        subprocess.run(["go", "clean", "-modcache"], check=False, env={**os.environ, "GOTOOLCHAIN": "local"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
