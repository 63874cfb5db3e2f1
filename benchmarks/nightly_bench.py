"""Nights of the nightly recipe, honest and doctored: how often an unchanged system is called regressed, and
whether a real 2x slowdown of recovery is caught.

    .venv/bin/python benchmarks/nightly_bench.py run --nights 10 --workers 1 --dir /tmp/nights/serial
    .venv/bin/python benchmarks/nightly_bench.py doctored --dir /tmp/nights/serial
    .venv/bin/python benchmarks/nightly_bench.py report --dir /tmp/nights/serial

``run`` runs ``examples/ci/nightly.sh`` that many times on the cluster (the two file experiments, pod kill and
partition, ``REPEAT`` runs each, default 3), each night judged by the recipe against the nights before it,
exactly as CI would. ``doctored`` runs one more night in which the web tier really recovers about twice as
slowly: its readiness probe waits ``initialDelaySeconds`` (the baseline's median pod-kill recovery, rounded
up, plus 1 s) before the first probe, so a replacement pod is ready that much later; its nights are kept apart
(``<dir>-doctored``) so they never enter the honest baseline. ``report`` prints, per night, the verdict of
each experiment, the figures that regressed and the load average, then the totals: false regressions among
the honest nights (every regression there is false: nothing changed), and whether each doctored night was
caught on ``recovery_s``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ["experiments/web-pod-kill.chaos.yaml", "experiments/web-partition.chaos.yaml"]
POD_KILL = "web pod kill under load (file)"


def night(nights: Path, workers: int, repeat: int, experiments: list[str], log: Path) -> int:
    env = {
        **os.environ,
        "NIGHTS": str(nights),
        "REPEAT": str(repeat),
        "WORKERS": str(workers),
        "EXPERIMENTS": " ".join(experiments),
    }
    with log.open("w") as out:
        return subprocess.run(
            ["bash", "examples/ci/nightly.sh", "-p", "no:cacheprovider"], cwd=ROOT, env=env, stdout=out, stderr=out
        ).returncode


def journals(nights: Path) -> list[tuple[str, dict]]:
    found = []
    for d in sorted(nights.glob("2*/")):
        path = d / "chaoskit-journal.json"
        if path.exists():
            found.append((d.name, json.loads(path.read_text())))
    return found


def run(args: argparse.Namespace) -> None:
    args.dir.mkdir(parents=True, exist_ok=True)
    for i in range(args.nights):
        started = time.monotonic()
        code = night(args.dir, args.workers, args.repeat, EXPERIMENTS, args.dir / f"night-{time.time():.0f}.log")
        load = os.getloadavg()[0]
        print(f"night {i + 1}/{args.nights}: exit {code} in {time.monotonic() - started:.0f} s, load {load:.2f}")


def doctored(args: argparse.Namespace) -> None:
    recoveries = [
        run["figures"]["recovery_s"]
        for _, document in journals(args.dir)
        for run in document["experiments"]
        if run["group"] == POD_KILL and "recovery_s" in run.get("figures", {})
    ]
    if not recoveries:
        sys.exit(f"no honest night in {args.dir} with a pod-kill recovery: run 'run' first")
    # The replacement's first probe waits this long after its container starts; the container starts about
    # a second after the kill, so the honest median rounded up, plus 1 s, roughly doubles recovery (the
    # report prints the ratio the doctored nights really reached).
    delay = math.ceil(statistics.median(recoveries)) + 1
    work = args.dir.parent / f"{args.dir.name}-work"
    shutil.rmtree(work, ignore_errors=True)
    (work / "experiments" / "systems").mkdir(parents=True)
    (work / "fixtures").symlink_to(ROOT / "fixtures")
    for name in EXPERIMENTS:
        shutil.copy(ROOT / name, work / name)
    manifest = (ROOT / "experiments/systems/web-tier.yaml").read_text()
    slower = manifest.replace("periodSeconds: 1\n", f"periodSeconds: 1\n            initialDelaySeconds: {delay}\n")
    assert slower != manifest, "the web tier's readiness probe changed: update the doctoring"
    (work / "experiments/systems/web-tier.yaml").write_text(slower)
    # The doctored night is judged against the honest nights, and kept apart from them afterwards.
    apart = args.dir.parent / f"{args.dir.name}-doctored"
    apart.mkdir(exist_ok=True)
    before = {d.name for d in args.dir.glob("2*/")}
    log = apart / f"night-{time.time():.0f}.log"
    code = night(args.dir, args.workers, args.repeat, [str(work / n) for n in EXPERIMENTS], log)
    for d in args.dir.glob("2*/"):
        if d.name not in before:
            shutil.move(str(d), apart / d.name)
    print(
        f"doctored night (readiness initialDelaySeconds {delay} s, median honest recovery "
        f"{statistics.median(recoveries):.2f} s): exit {code}; log {log}"
    )


def summarise(document: dict) -> tuple[dict[str, str], list[str]]:
    runs = document["experiments"]
    verdicts: dict[str, str] = {}
    regressed = []
    for r in runs:
        word = r.get("verdict_word") or r["outcome"].upper()
        verdicts.setdefault(r["group"], "")
        verdicts[r["group"]] += word[0]
        regressed += [f"{r['group'][:20]}: {j['figure']}" for j in r.get("regressions", [])]
    return verdicts, regressed


def report(args: argparse.Namespace) -> None:
    honest = journals(args.dir)
    false_runs = total_runs = 0
    for name, document in honest:
        verdicts, regressed = summarise(document)
        runs = document["experiments"]
        total_runs += len(runs)
        false_runs += sum(1 for r in runs if r.get("regressions"))
        shape = runs[0].get("shape", {}) if runs else {}
        print(
            f"honest {name} ({shape.get('workers', '?')} workers): "
            + "; ".join(f"{g[:24]} {w}" for g, w in verdicts.items())
            + (f"; regressed: {', '.join(regressed)}" if regressed else "")
        )
    judged_nights = [n for n, d in honest if any(r.get("judgements") for r in d["experiments"])]
    print(
        f"honest nights: {len(honest)} ({len(judged_nights)} judged against a baseline); runs: {total_runs}; "
        f"runs called regressed: {false_runs} (every one false: nothing changed; a night judged together counts "
        "on its last run)"
    )
    caught = 0
    doctored_nights = journals(args.dir.parent / f"{args.dir.name}-doctored")
    for name, document in doctored_nights:
        kills = [r for r in document["experiments"] if r["group"] == POD_KILL]
        recovery = [r["figures"].get("recovery_s") for r in kills]
        hit = any(j["figure"] == "recovery_s" for r in kills for j in r.get("regressions", []))
        caught += hit
        print(
            f"doctored {name}: pod-kill recovery {', '.join(f'{v:.2f}' for v in recovery if v)} s; "
            f"recovery_s {'CAUGHT' if hit else 'MISSED'}"
        )
    if doctored_nights:
        honest_recovery = [
            r["figures"]["recovery_s"]
            for _, d in honest
            for r in d["experiments"]
            if r["group"] == POD_KILL and "recovery_s" in r.get("figures", {})
        ]
        slow = [
            r["figures"]["recovery_s"]
            for _, d in doctored_nights
            for r in d["experiments"]
            if r["group"] == POD_KILL and "recovery_s" in r.get("figures", {})
        ]
        ratio = statistics.median(slow) / statistics.median(honest_recovery)
        print(
            f"doctored nights: {len(doctored_nights)}, caught {caught}; pod-kill recovery median "
            f"{statistics.median(slow):.2f} s against the honest {statistics.median(honest_recovery):.2f} s "
            f"({ratio:.2f}x; honest min {min(honest_recovery):.2f}, max {max(honest_recovery):.2f} s over "
            f"{len(honest_recovery)} runs)"
        )
    print(f"load average now {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")


def replay(args: argparse.Namespace) -> None:
    """Judge each honest night again with this checkout's rules, against the nights before it (up to 14)."""
    sys.path.insert(0, str(ROOT))
    from chaoskit.baseline import Baseline, selected
    from chaoskit.results import percentile_needs

    honest = journals(args.dir)
    doctored = journals(args.dir.parent / f"{args.dir.name}-doctored")
    # Each honest night against the honest nights before it; each doctored night against the honest nights
    # before it (the recipe never keeps a doctored night in the baseline).
    nights = [(name, doc, honest[max(0, k - 14) : k]) for k, (name, doc) in enumerate(honest)]
    nights += [(f"doctored {name}", doc, [h for h in honest if h[0] < name][-14:]) for name, doc in doctored]
    false_runs = runs_seen = 0
    for name, document, earlier_nights in nights:
        baseline = Baseline()
        for earlier, doc in earlier_nights:
            baseline.add(args.dir / earlier / "chaoskit-journal.json", doc)
        if not baseline.runs:
            continue
        groups: dict[str, list[dict[str, float]]] = {}
        least: dict[str, list[dict[str, int]]] = {}
        regressed = []
        repeats = Counter(r["group"] for r in document["experiments"])  # each experiment's runs tonight
        for r in document["experiments"]:
            requests = {s["window"]: s["requests"] for s in r["verdict"]["stats"]}
            figures = {
                f: v
                for f, v in r.get("figures", {}).items()
                if percentile_needs(f) is None or requests.get(f.split(".")[0], 0) >= (percentile_needs(f) or 0)
            }
            shape = {k: r["shape"][k] for k in ("workers", "load") if k in r.get("shape", {})}
            judged = baseline.check_run(r["group"], figures, shape, requests, repeated=repeats[r["group"]])
            hit = [j.figure for j in judged if selected((), j.figure)]
            groups.setdefault(r["group"], []).append(figures)
            least.setdefault(r["group"], []).append(requests)
            if not name.startswith("doctored"):
                runs_seen += 1
                false_runs += bool(hit)
            regressed += [f"{r['group'][:12]} {h}" for h in hit]
        for group, runs in groups.items():
            fewest = {w: min(counts[w] for counts in least[group]) for w in least[group][0]}
            together = baseline.check_runs(group, runs, None, fewest)
            regressed += [f"{group[:12]} {j.figure} (together)" for j in together]
            if together and not name.startswith("doctored"):
                false_runs += 1  # the night's judgement, counted on its last run as the plugin reports it
        print(
            f"{name}: against {len(baseline.nights())} nights, {len(baseline.runs)} runs: "
            + (", ".join(regressed) if regressed else "no regression")
        )
    print(f"replayed honest runs: {runs_seen}; called regressed: {false_runs} (every one false)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["run", "doctored", "report", "replay"])
    parser.add_argument("--dir", type=Path, required=True, help="the nights' directory (NIGHTS)")
    parser.add_argument("--nights", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    {"run": run, "doctored": doctored, "report": report, "replay": replay}[args.action](args)


if __name__ == "__main__":
    main()
