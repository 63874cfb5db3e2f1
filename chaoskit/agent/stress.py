"""Burn CPU and hold memory inside one container: its cgroups, its PID and network namespaces.

Started by a stress fault (:mod:`chaoskit.faults.stress`) from the node (or
the injector agent) as ``nsenter -t PID -p -n -i -u python3 stress.py --join
PID ...``: it enters the container's namespaces that way, then moves itself
into every cgroup of the target process, so what it burns and holds is
counted, limited and throttled as the container's own (no sidecar). Its
``--cpu-workers`` children each keep one CPU busy ``--cpu-percent`` of every
100 ms; with ``--memory-bytes`` it holds that many bytes, every page written.

Memory stress holds its bytes in an anonymous in-memory file (``memfd``):
the container's cgroup is charged for them, but no process's resident size
shows them, so at the limit the kernel's OOM killer picks the container's own
largest process, as if the application itself had grown (no capability is
needed, unlike ``oom_score_adj -1000``). The container's restart is the
recovery: its PID namespace ends, and the stressor with it.

It ends on SIGTERM/SIGINT, or when the target process is gone. Stdlib only,
one file: copied to the node as it is and run with ``python3``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

CGROUP_ROOT = "/proc/1/root/sys/fs/cgroup"
"""The node's cgroup tree, seen through its init's root: the agent's own mount may show only its subtree."""
PERIOD = 0.1


def cgroups_of(pid: str) -> list[tuple[str, str]]:
    """(controllers, path) of each hierarchy ``pid`` is in, as the node's init sees them (its cgroup namespace)."""
    text = subprocess.run(
        ["nsenter", "-t", "1", "-C", "cat", f"/proc/{pid}/cgroup"], capture_output=True, text=True, check=True
    ).stdout
    found = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            found.append((parts[1], parts[2]))
    return found


def directories(controllers: str, path: str) -> list[str]:
    """Where a hierarchy's cgroup may be mounted under the node's tree (v2, hybrid, v1 named or joined)."""
    names = [controllers.removeprefix("name="), *controllers.split(",")] if controllers else ["", "unified"]
    return [os.path.normpath(f"{CGROUP_ROOT}/{name}/{path}") for name in names]


def join(pid: str) -> int:
    """Move this process into every cgroup of ``pid``; how many it joined."""
    joined = 0
    for controllers, path in cgroups_of(pid):
        for directory in directories(controllers, path):
            procs = os.path.join(directory, "cgroup.procs")
            if os.path.exists(procs):
                with open(procs, "w") as handle:
                    handle.write(str(os.getpid()))
                joined += 1
                break
    return joined


def stats(pid: str) -> dict[str, float | None]:
    """The cgroup figures of ``pid``'s container: CPU used so far (s), memory used and its limit (bytes), the
    CPU quota (cores; None: none), the node's CPUs, and the CFS throttling counters so far (``cpu_periods``,
    ``cpu_throttled_periods``, ``cpu_throttled_seconds``: the periods the quota was enforced in, those it ran
    out in, and the time its processes waited; None where the cgroup has no ``cpu.stat``)."""
    found: dict[str, float | None] = {"cpu_seconds": None, "memory_bytes": None, "memory_limit": None}
    found["cpu_quota"] = None
    found.update(cpu_periods=None, cpu_throttled_periods=None, cpu_throttled_seconds=None)
    found["cpus"] = float(os.cpu_count() or 1)
    for controllers, path in cgroups_of(pid):
        for directory in directories(controllers, path):
            if not os.path.isdir(directory):
                continue
            read = _reader(directory)
            if controllers == "":  # v2: one tree holds every figure
                usage = read("cpu.stat", "usage_usec")
                found["cpu_seconds"] = usage / 1e6 if usage is not None else found["cpu_seconds"]
                found["memory_bytes"] = read("memory.current") or found["memory_bytes"]
                found["memory_limit"] = read("memory.max") or found["memory_limit"]
                quota = _words(directory, "cpu.max")
                if quota and quota[0] != "max":
                    found["cpu_quota"] = int(quota[0]) / int(quota[1])
                _throttling(found, read, "throttled_usec", 1e6)
            if "cpuacct" in controllers.split(","):
                usage = read("cpuacct.usage")
                found["cpu_seconds"] = usage / 1e9 if usage is not None else None
            if "cpu" in controllers.split(","):
                quota, period = read("cpu.cfs_quota_us"), read("cpu.cfs_period_us")
                if quota and period and quota > 0:
                    found["cpu_quota"] = quota / period
                _throttling(found, read, "throttled_time", 1e9)
            if "memory" in controllers.split(","):
                found["memory_bytes"] = read("memory.usage_in_bytes")
                limit = read("memory.limit_in_bytes")
                found["memory_limit"] = limit if limit and limit < 2**62 else None
            break
    return found


def _throttling(found: dict[str, float | None], read, time_key: str, per_second: float) -> None:  # type: ignore[no-untyped-def]
    """The CFS throttling counters of ``cpu.stat`` into ``found`` (``time_key``: ``throttled_time`` in ns on v1,
    ``throttled_usec`` on v2), each kept where this tree has none (a hybrid node's unified tree, read after the
    v1 ``cpu`` one, has no such counters)."""
    periods, throttled, waited = (
        read("cpu.stat", "nr_periods"),
        read("cpu.stat", "nr_throttled"),
        read("cpu.stat", time_key),
    )
    if periods is not None:
        found["cpu_periods"] = periods
    if throttled is not None:
        found["cpu_throttled_periods"] = throttled
    if waited is not None:
        found["cpu_throttled_seconds"] = waited / per_second


def node_busy() -> tuple[float, float]:
    """The node's CPU time so far, (busy, total) in clock ticks, from /proc/stat (the kernel's, shared by
    every container on it)."""
    with open("/proc/stat") as handle:
        fields = [float(x) for x in handle.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def stats_over(pid: str, seconds: float) -> dict[str, float | None]:
    """:func:`stats`, plus the container's CPU use in cores over ``seconds`` (``cpu_rate``) and the share of
    the node's CPUs busy meanwhile (``node_busy``): both sampled here, on the node's own clock, so the time
    it takes to reach the node does not dilute them."""
    first, busy_first, start = stats(pid), node_busy(), time.monotonic()
    time.sleep(seconds)
    found, busy_second, elapsed = stats(pid), node_busy(), time.monotonic() - start
    if first["cpu_seconds"] is not None and found["cpu_seconds"] is not None:
        found["cpu_rate"] = (found["cpu_seconds"] - first["cpu_seconds"]) / elapsed
    ticks = busy_second[1] - busy_first[1]
    found["node_busy"] = (busy_second[0] - busy_first[0]) / ticks if ticks > 0 else None
    return found


def _words(directory: str, name: str) -> list[str]:
    try:
        with open(os.path.join(directory, name)) as handle:
            return handle.read().split()
    except OSError:
        return []


def _reader(directory: str):  # type: ignore[no-untyped-def]
    def read(name: str, key: str | None = None) -> float | None:
        words = _words(directory, name)
        if key is not None:
            pairs = dict(zip(words[::2], words[1::2], strict=False))
            words = [pairs[key]] if key in pairs else []
        return float(words[0]) if words and words[0].isdigit() else None

    return read


def hold(size: int) -> int:
    """Write ``size`` bytes into an anonymous in-memory file; its descriptor. The pages are charged to this
    process's memory cgroup (the container's) but mapped by no process, so they add to no process's resident
    size: at the container's limit, the OOM killer's pick is the container's own largest process."""
    fd = os.memfd_create("chaoskit-stress")
    block = b"\x01" * (1 << 20)
    left = size
    while left > 0:
        left -= os.write(fd, block[: min(left, len(block))])
    return fd


def burn(percent: int) -> None:
    """Keep one CPU busy ``percent`` of every period, until killed."""
    busy = PERIOD * percent / 100
    while True:
        start = time.monotonic()
        while time.monotonic() - start < busy:
            pass
        rest = PERIOD - (time.monotonic() - start)
        if rest > 0:
            time.sleep(rest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--join", help="a process of the target container (a node PID)")
    parser.add_argument("--stats", help="print the cgroup figures of this process's container (JSON) and exit")
    parser.add_argument("--over", type=float, default=0.0, help="with --stats: also the CPU rate over this many s")
    parser.add_argument("--cpu-workers", type=int, default=0)
    parser.add_argument("--cpu-percent", type=int, default=100)
    parser.add_argument("--memory-bytes", type=int, default=0)
    parser.add_argument("--tag", help="the fault's tag, to be found by")
    args = parser.parse_args(argv)
    if args.stats:
        print(json.dumps(stats_over(args.stats, args.over) if args.over > 0 else stats(args.stats)), flush=True)
        return 0
    if not args.join:
        parser.error("--join or --stats is needed")
    try:
        wanted = cgroups_of(args.join)
        if join(args.join) == 0:
            print(f"chaoskit-stress: no cgroup of process {args.join} found under {CGROUP_ROOT}", flush=True)
            return 3
        mine = cgroups_of("self")  # cat's own, inherited from this process (whose PID here is the container's)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"chaoskit-stress: cannot join the cgroups of {args.join}: {exc}", flush=True)
        return 3
    if sorted(mine) != sorted(wanted):
        print(f"chaoskit-stress: joined {mine}, not {wanted}", flush=True)
        return 3
    children = []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    held_fd = -1
    try:
        print(f"ready cgroups={len(mine)}", flush=True)  # before the memory: at the limit, the kernel may end us
        if args.memory_bytes:
            held_fd = hold(args.memory_bytes)
        for _ in range(args.cpu_workers):
            child = os.fork()
            if child == 0:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                burn(args.cpu_percent)
            children.append(child)
        print(f"holding workers={len(children)} bytes={args.memory_bytes if held_fd >= 0 else 0}", flush=True)
        while os.path.exists(f"/proc/{args.join}") or _alive_in_namespace():
            time.sleep(1)
        print("stopped: the container's process is gone", flush=True)
        return 0
    finally:
        for child in children:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _alive_in_namespace() -> bool:
    """Whether another process than this one and its workers is in this PID namespace (the container lives)."""
    mine = os.readlink("/proc/self/ns/pid")
    family = {os.getpid(), *(int(c) for c in _children())}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in family:
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") == mine:
                    return True
            except OSError:
                continue
    return False


def _children() -> list[str]:
    try:
        with open(f"/proc/self/task/{os.getpid()}/children") as handle:
            return handle.read().split()
    except OSError:
        return []


if __name__ == "__main__":
    sys.exit(main())
