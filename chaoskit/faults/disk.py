"""Disk fill: a container's filesystem (a volume, or its own root) filled to a percentage by one file.

From the pod's node, the container's files are under ``/proc/PID/root``: the
fault measures the filesystem holding ``path`` there (``statfs``), and writes one
file, ``.chaoskit-fill-<fault id>``, of the size that brings its use to
``percent`` (``fallocate``, so the blocks are really taken, not a sparse
hole). A fill larger than ``max_bytes`` (1 GiB unless raised) is refused
before anything is written: a container's root filesystem is usually its
node's disk, and filling it fills the node's (kubelets evict pods under disk
pressure).

Proof of effect, from inside the pod: its own ``df`` of ``path`` shows the
use at the percentage or above. Undo deletes the file, found through the
recorded process or, if the container restarted, under the pod's volumes on
the node (``/var/lib/kubelet/pods/<uid>``), where a volume keeps it across
restarts; proven by finding it nowhere. A container's own root filesystem
goes with the container, and the file with it.

I/O latency (``Chaos.io_latency``) is not implemented: it raises FaultUnsupported,
saying why. Delaying one container's block I/O honestly needs a delay layer
under its filesystem (device-mapper's ``dm-delay``, which this project's kernel
lacks, or a FUSE passthrough mounted over the path in the container's mount
namespace, which files the application holds open would bypass); a
throughput limit (the blkio controller) is not latency.
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass
from typing import Any

from chaoskit.adapters import nodes
from chaoskit.adapters.kube import Kube
from chaoskit.agent import actions
from chaoskit.cluster.base import Cluster
from chaoskit.errors import (
    ClusterError,
    FaultNotEffective,
    FaultUndoFailed,
    SafetyError,
    SpecError,
)
from chaoskit.faults.base import Fault, FaultRecord
from chaoskit.faults.netns import STEP_TIMEOUT, PodProcess, locate_all
from chaoskit.faults.safety import check_selector

GIB = 1 << 30
MIB = 1 << 20
FILL_PREFIX = ".chaoskit-fill-"
KUBELET_PODS = "/var/lib/kubelet/pods"
FILL_TIMEOUT = 120.0


@dataclass(frozen=True)
class DiskFillSpec:
    """Which container's filesystem to fill, where, and how full."""

    namespace: str
    selector: str
    percent: int
    """How full the filesystem holding ``path`` gets, in 1-99 (its ``df`` use)."""
    path: str = "/"
    """A directory in the container: a volume's mount point (``/data``), or ``/`` for its own filesystem."""
    max_bytes: int = GIB
    """The most the fill may write; a fill that needs more is refused before anything is written."""
    container: str | None = None
    """The container (default: the pod's first)."""
    count: int | None = 1
    """How many of the matching pods (None: every one, under the blast-radius cap)."""
    seed: int | None = None

    def __post_init__(self) -> None:
        check_selector(self.selector)
        if not 1 <= self.percent <= 99:
            raise SpecError(f"percent must be in 1-99, not {self.percent}")
        if not self.path.startswith("/") or ".." in self.path.split("/") or "\n" in self.path:
            raise SpecError(f"path must be an absolute directory in the container, without '..': {self.path!r}")
        if self.max_bytes < MIB:
            raise SpecError(f"max_bytes must be at least 1 MiB, not {self.max_bytes}")
        if self.count is not None and (isinstance(self.count, bool) or self.count < 1):
            raise SpecError(f"count must be at least 1 (or None for every matching pod), not {self.count!r}")


@dataclass(frozen=True)
class Usage:
    """A filesystem's size and use as ``df -P -B1`` gives them."""

    size: int
    used: int
    available: int

    @property
    def percent(self) -> float:
        """Use as ``df`` computes it: used / (used + available)."""
        whole = self.used + self.available
        return 100.0 * self.used / whole if whole else 0.0

    def __str__(self) -> str:
        return f"{self.percent:.0f} % of {self.size / MIB:.0f} MiB"


def parse_df(output: str) -> Usage:
    """The sizes on the last line of ``df -P -B1`` (a mount point with spaces keeps the numbers in place)."""
    lines = [line for line in output.splitlines() if line.strip()]
    numbers = re.findall(r"\s(\d+)\s+(\d+)\s+(\d+)\s+\d+%", lines[-1]) if lines else []
    if not numbers:
        raise ClusterError(f"cannot read df's answer: {output.strip()[-200:]}")
    size, used, available = (int(n) for n in numbers[0])
    return Usage(size, used, available)


STATFS = ["stat", "-f", "-c", "statfs %S %b %f %a"]
"""The filesystem's sizes from ``statfs(2)`` on a path, as ``df`` computes them but with no need for the path's
mount to be in the reader's own mount table (from the injector agent's pod, it is not)."""


def parse_statfs(output: str) -> Usage:
    """:class:`Usage` from :data:`STATFS`'s answer (block size, blocks, free, available to users)."""
    found = re.search(r"statfs (\d+) (\d+) (\d+) (\d+)", output)
    if found is None:
        raise ClusterError(f"cannot read statfs's answer: {output.strip()[-200:]}")
    block, total, free, available = (int(n) for n in found.groups())
    return Usage(total * block, (total - free) * block, available * block)


def fill_bytes(usage: Usage, percent: int) -> int:
    """Bytes one file must take for ``df`` to show ``percent`` use (at least: blocks round up)."""
    whole = usage.used + usage.available
    return max(0, int(whole * percent / 100) - usage.used)


class DiskFill(Fault):
    kind = "disk-fill"
    node_wide = True
    node_access = "writes a file into containers' filesystems from their node"
    spec: DiskFillSpec
    _processes: list[PodProcess]
    _plans: list[dict[str, Any]]

    def nodes(self) -> list[str]:
        return sorted({p.node for p in self._processes})

    def plan(self) -> list[str]:
        spec = self.spec
        pods = self.live_pods(spec.namespace, spec.selector)
        chosen = self.choose(pods, spec.count, spec.seed, f"pods matching {spec.selector!r}")
        uids = {p.metadata.name: str(p.metadata.uid) for p in chosen}
        self._processes = locate_all(self.cluster.node_shell, chosen, spec.container)
        self._plans = []
        for process in self._processes:
            usage = self._usage_on_node(process.node, process.pid)
            size = fill_bytes(usage, spec.percent)
            if size == 0:
                raise SpecError(f"{spec.path} in {process.pod} is at {usage} already, not under {spec.percent} %")
            if size > spec.max_bytes:
                raise SafetyError(
                    f"filling {spec.path} in {process.pod} ({usage}) to {spec.percent} % would write "
                    f"{size / MIB:.0f} MiB, over max_bytes {spec.max_bytes / MIB:.0f} MiB: a container's own "
                    "filesystem is usually its node's disk; fill a volume, or raise max_bytes knowingly"
                )
            self._plans.append(
                {"node": process.node, "pid": process.pid, "pod": process.pod, "uid": uids[process.pod]}
                | {"netns": process.inode, "bytes": size, "before": str(usage)}
            )
        return [f"{p.pod}:{spec.path}@{p.node}" for p in self._processes]

    def _target(self, pid: int) -> str:
        return f"/proc/{pid}/root{self.spec.path.rstrip('/')}"

    def _usage_on_node(self, node: str, pid: int) -> Usage:
        return parse_statfs(
            nodes.check(self.cluster.node_shell, node, [*STATFS, f"{self._target(pid)}/"], STEP_TIMEOUT)
        )

    @property
    def file_name(self) -> str:
        return f"{FILL_PREFIX}{self.fault_id}"

    def undo_data(self, targets: list[str]) -> dict[str, Any] | None:
        return {"file": self.file_name, "path": self.spec.path, "containers": self._plans}

    def inject(self, targets: list[str]) -> None:
        for item in self._plans:
            path = f"{self._target(item['pid'])}/{self.file_name}"
            quoted = shlex.quote(path)
            script = (
                f"fallocate -l {item['bytes']} {quoted} 2>/dev/null "
                f"|| head -c {item['bytes']} /dev/zero > {quoted} || {{ rm -f {quoted}; exit 3; }}; sync -f {quoted}"
            )
            result = self.cluster.node_shell.run(item["node"], ["bash", "-c", script], FILL_TIMEOUT)
            if result.code != 0:
                raise FaultNotEffective(f"disk fill: writing {path} on {item['node']} failed: {result.output[-300:]}")
        self._in_place_mono = time.monotonic()

    def verify(self, targets: list[str], record: FaultRecord) -> str:
        record.effect_mono = self._in_place_mono
        spec = self.spec
        proofs = []
        for process, item in zip(self._processes, self._plans, strict=True):
            df = ["df", "-P", "-B1", spec.path]
            code, out, err = self.kube.exec_streams(process.namespace, process.pod, df, 30, container=spec.container)
            output, seen_by = out + err, "the pod's own df"
            if code == 0:
                usage = parse_df(output)
            else:  # a container without df: the node reads the same filesystem through /proc
                usage, seen_by = self._usage_on_node(process.node, process.pid), "statfs from the node"
            if usage.percent < spec.percent - 0.5:
                raise FaultNotEffective(f"disk fill: {spec.path} in {process.pod} is at {usage}, not {spec.percent} %")
            proofs.append(f"{process.pod}:{spec.path} {item['before']} -> {usage} ({seen_by})")
        return "; ".join(proofs)

    @classmethod
    def _remove_script(cls, item: dict[str, Any], undo: dict[str, Any], remove: bool) -> str:
        """Shell for the node: find the fill file wherever the pod may still hold it, remove it (or, with
        ``remove`` false, only list it), then print ``left=N``.

        Where: through the recorded process, through every process still in the pod's network namespace (a
        restarted container has a new PID, and a volume kept the file for it), and under the pod's volumes in
        the kubelet's directory."""
        name = str(undo["file"])
        inside = f"{str(undo['path']).rstrip('/')}/{name}"
        pods = shlex.quote(f"{KUBELET_PODS}/{item['uid']}")
        inode = int(item.get("netns") or 0)
        in_pod = (
            f"find /proc -mindepth 3 -maxdepth 3 -path '/proc/[0-9]*/ns/net' -lname 'net:\\[{inode}\\]' 2>/dev/null "
            "| cut -d/ -f3"
            if inode
            else "true"
        )
        look = (
            f"{{ for p in {item['pid']} $({in_pod}); do f=/proc/$p/root{shlex.quote(inside)}; "
            '[ -e "$f" ] && echo "$f"; done; '
            f"[ -d {pods} ] && find {pods} -name {shlex.quote(name)} 2>/dev/null; }}"
        )
        act = "rm -f" if remove else "ls -d"
        return (
            f"found=$( {look} | sort -u ); "
            f'[ -z "$found" ] || {act} $found; '
            f"left=$( {look} ); "
            'echo "left=$(printf %s "$left" | grep -c .)"'
        )

    @classmethod
    def revert(cls, cluster: Cluster, kube: Kube, undo: dict[str, Any]) -> None:
        for item in undo["containers"]:
            if cluster.node_shell.state(item["node"]) in ("exited", "missing"):
                continue
            result = cluster.node_shell.run(
                item["node"], ["bash", "-c", cls._remove_script(item, undo, True)], STEP_TIMEOUT
            )
            if result.code != 0:
                raise FaultUndoFailed(f"removing {undo['file']} on {item['node']} failed: {result.output[-200:]}")

    @classmethod
    def agent_steps(cls, undo: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        steps: dict[str, list[dict[str, Any]]] = {}
        for item in undo["containers"]:
            fill = actions.step(
                "remove-fill",
                pid=item["pid"],
                inode=item["netns"],
                uid=item["uid"],
                path=str(undo["path"]),
                file=str(undo["file"]),
            )
            steps.setdefault(item["node"], []).append(fill)
        return steps

    @classmethod
    def check_undone(cls, cluster: Cluster, kube: Kube, undo: dict[str, Any]) -> str:
        checked = []
        for item in undo["containers"]:
            if cluster.node_shell.state(item["node"]) in ("exited", "missing"):
                checked.append(f"{item['pod']}: its node is down")
                continue
            result = cluster.node_shell.run(
                item["node"], ["bash", "-c", cls._remove_script(item, undo, False)], STEP_TIMEOUT
            )
            found = re.search(r"left=(\d+)", result.output)
            if found is None:
                raise FaultUndoFailed(f"cannot look for {undo['file']} on {item['node']}: {result.output[-200:]}")
            if int(found.group(1)):
                raise FaultUndoFailed(f"{undo['file']} is still in {item['pod']} on {item['node']}")
            checked.append(f"{item['pod']}: no {undo['file']}")
        return "; ".join(checked)


IO_LATENCY_UNSUPPORTED = (
    "I/O latency is not implemented: delaying one container's block I/O needs a delay layer under its "
    "filesystem (device-mapper's dm-delay, absent from this project's kernel, or a FUSE passthrough over the "
    "path, which files already open would bypass), and a throughput limit is not latency; use disk_fill, "
    "stress, or latency on the storage's network"
)


@dataclass(frozen=True)
class IoLatencySpec:
    """Which containers' I/O under ``path`` would be delayed, and by how much."""

    namespace: str
    selector: str
    delay_ms: int
    path: str = "/"

    def __post_init__(self) -> None:
        check_selector(self.selector)
        if not 1 <= self.delay_ms <= 60000:
            raise SpecError(f"delay_ms must be in 1-60000, not {self.delay_ms}")
