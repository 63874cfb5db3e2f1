"""chaoskit's load on Locust's distributed engine against plain Locust, interleaved, same responder.

    python benchmarks/distributed_bench.py [--rounds 3] [--seconds 8] [--users 40] [--workers 1,2]

Each round runs, one after another in this order, against one raw-asyncio
responder on 127.0.0.1 (the one :mod:`load_bench` uses):

* chaoskit with 1 worker, then with 2 (``LoadSpec(workers=N)``: a master in
  the load process, N Locust workers, every request's record sent to the
  master and on to the test process);
* plain Locust with the same workers: ``locust --headless --processes N``
  (a master and N workers) on a locustfile with the same user: a
  FastHttpUser asking ``/`` with no think time.

The rate of each is taken over the same measured window: after a warm-up of
``--warmup`` seconds, ``--seconds`` of run. For chaoskit, the records started
in that window over its length; for plain Locust, the growth of Locust's own
cumulative request count between the first and the last row of its
``--csv-full-history`` in that window, over the time between those rows.
Scaling is each engine's 2-worker rate over its own 1-worker rate in the same
round. Printed: every run, then min, median and max per configuration and of
the scaling, the machine's load average before and after, and whether every
chaoskit record was kept (received = Locust's own count). The target: chaoskit's
median 2-worker scaling at least plain Locust's median minus 5 % of it.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from figures_out import Figures  # noqa: E402
from load_bench import free_port  # noqa: E402

LOCUSTFILE = textwrap.dedent(
    """
    from locust import FastHttpUser, constant, task

    class PathsUser(FastHttpUser):
        wait_time = constant(0)

        @task
        def request_next_path(self):
            self.client.get("/", name="/")
    """
)


def chaoskit_rate(port: int, args: argparse.Namespace, workers: int) -> tuple[float, bool]:
    from chaoskit.load import LoadSpec, run_load

    spec = LoadSpec(
        f"http://127.0.0.1:{port}",
        run_seconds=args.seconds,
        warmup_seconds=args.warmup,
        users=args.users,
        spawn_rate=1000,
        workers=workers,
    )
    result = run_load(spec)
    end = result.warmup_ended_at + args.seconds
    measured = [r for r in result.measured() if r.started < end]
    return len(measured) / args.seconds, result.stream.complete


def plain_rate(port: int, args: argparse.Namespace, workers: int, work: Path) -> float:
    locustfile = work / "plainfile.py"
    locustfile.write_text(LOCUSTFILE)
    prefix = work / f"plain-{workers}"
    total = args.warmup + args.seconds + 2
    subprocess.run(
        [
            str(Path(sys.executable).with_name("locust")),
            "-f",
            str(locustfile),
            "--headless",
            "--processes",
            str(workers),
            "-u",
            str(args.users),
            "-r",
            "1000",
            "-t",
            f"{total:g}s",
            "--host",
            f"http://127.0.0.1:{port}",
            "--csv",
            str(prefix),
            "--csv-full-history",
            "--only-summary",
            "--loglevel",
            "ERROR",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=total + 60,
    )
    rows = []
    with open(f"{prefix}_stats_history.csv") as file:
        for row in csv.DictReader(file):
            if row["Name"] == "Aggregated":
                rows.append((int(row["Timestamp"]), int(row["Total Request Count"])))
    start = rows[0][0] + args.warmup
    window = [(t, n) for t, n in rows if start <= t <= start + args.seconds]
    (t0, n0), (t1, n1) = window[0], window[-1]
    return (n1 - n0) / (t1 - t0)


def spread(values: list[float]) -> str:
    return f"min {min(values):,.0f}, median {statistics.median(values):,.0f}, max {max(values):,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--users", type=int, default=40)
    parser.add_argument("--json", type=Path, help="also write the figures here, for benchmarks/bench.py")
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks" / "load_bench.py"), "--serve", str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    rates: dict[str, list[float]] = {"chaoskit 1": [], "chaoskit 2": [], "plain 1": [], "plain 2": []}
    loads: dict[str, list[float]] = {name: [] for name in rates}
    kept: list[bool] = []
    load_before = os.getloadavg()
    try:
        assert server.stdout is not None
        if server.stdout.readline() != b"listening\n":
            raise SystemExit("the responder did not start")
        print(f"cores: {os.cpu_count()}; python {sys.version.split()[0]}; load average {load_before[0]:.2f}")
        print(f"{args.users} users, {args.warmup:g} s warm-up, {args.seconds:g} s measured, {args.rounds} rounds")
        with tempfile.TemporaryDirectory(prefix="chaoskit-bench-") as work:
            for round_ in range(1, args.rounds + 1):
                for workers in (1, 2):
                    rate, complete = chaoskit_rate(port, args, workers)
                    rates[f"chaoskit {workers}"].append(rate)
                    loads[f"chaoskit {workers}"].append(os.getloadavg()[0])
                    kept.append(complete)
                    print(
                        f"round {round_}: chaoskit {workers} worker(s): {rate:,.0f} requests/s, "
                        f"{'every record kept' if complete else 'RECORDS LOST'}",
                        flush=True,
                    )
                for workers in (1, 2):
                    rate = plain_rate(port, args, workers, Path(work))
                    rates[f"plain {workers}"].append(rate)
                    loads[f"plain {workers}"].append(os.getloadavg()[0])
                    print(f"round {round_}: plain Locust {workers} worker(s): {rate:,.0f} requests/s", flush=True)
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=10)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    for name, values in rates.items():
        print(f"{name} worker(s): {spread(values)} requests/s")
    ours = [b / a for a, b in zip(rates["chaoskit 1"], rates["chaoskit 2"], strict=True)]
    theirs = [b / a for a, b in zip(rates["plain 1"], rates["plain 2"], strict=True)]
    show = ", ".join
    print(f"chaoskit 2/1 scaling per round: {show(f'{s:.2f}x' for s in ours)}; median {statistics.median(ours):.2f}x")
    median = statistics.median(theirs)
    print(f"plain Locust 2/1 scaling per round: {show(f'{s:.2f}x' for s in theirs)}; median {median:.2f}x")
    goal = statistics.median(theirs) * 0.95
    verdict = "met" if statistics.median(ours) >= goal else "NOT met"
    print(f"target: chaoskit's median scaling >= plain Locust's minus 5 % ({goal:.2f}x): {verdict}")
    print(f"every chaoskit record kept in {sum(kept)} of {len(kept)} runs")
    out = Figures(f"python benchmarks/distributed_bench.py --rounds {args.rounds} --users {args.users}")
    for name, values in rates.items():
        engine, workers = name.split()
        label = "chaoskit (LoadSpec(workers=N))" if engine == "chaoskit" else "plain Locust (--processes N)"
        out.add(f"{label}, {workers} worker(s), {args.users} users, local responder", "requests/s", values, loads[name])
    every = loads["chaoskit 1"] + loads["chaoskit 2"] + loads["plain 1"] + loads["plain 2"]
    out.add(f"chaoskit 2/1-worker scaling (every record kept in {sum(kept)} of {len(kept)} runs)", "x", ours, every)
    out.add("plain Locust 2/1-worker scaling", "x", theirs, every)
    out.write(args.json)


if __name__ == "__main__":
    main()
