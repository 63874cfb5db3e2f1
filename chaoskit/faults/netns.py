"""Reaching pods' processes and network namespaces from their node, with no helper pod per run.

Every step runs as a bash script on the pod's node (:mod:`chaoskit.adapters.nodes`:
``docker exec`` into a kind node, or an exec into the injector agent's pod on
any cluster). The script finds a container's processes by the container's ID
in their cgroup path, in ``/proc``, and ``nsenter -t PID -n CMD`` runs CMD,
with the node's (or agent's) own tools (iptables, tc), inside the pod's network
namespace. The peers start a privileged helper pod per run for this, which
costs tens of seconds.

Speed: a fault touches several pods on several nodes, and each step used to be
an exec of its own. Here each step is **one exec per node**
(a shell script that does the step for every namespace on that node and reports
each namespace's result between markers), with the nodes
in parallel threads.

Trust: a namespace is recorded as (node, pid, netns inode), and the inode is
what counts. The namespace belongs to the pod's sandbox, not to the container
whose pid was recorded: a container that restarts (killed, OOM, a failed
liveness probe) leaves the namespace, and every rule in it, in place under a
new pid. So when ``/proc/PID/ns/net`` is no longer the recorded inode, the
script looks for any process on the node still in that namespace and acts
through it; only when none is left is the namespace *gone* (the pod itself was
deleted or its node stopped, and the rules with it). A reused pid is never
mistaken for the original. A read that fails (a paused node, a failing ``iptables-save``, Docker
not answering) raises :class:`NamespaceUnreadable`; it is never taken for
"nothing there".
"""

from __future__ import annotations

import re
import secrets
import shlex
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from chaoskit.adapters import nodes
from chaoskit.adapters.nodes import NodeShell
from chaoskit.agent import actions
from chaoskit.errors import ClusterError, SpecError

COMMENT_PREFIX = "chaoskit:"
STEP_TIMEOUT = 30.0
"""How long one step's script may run on one node."""
PARALLEL = 16
"""How many of a node's pod namespaces one step works in at once."""
GONE_STATES = ("exited", "missing", "created", "dead", "removing")
"""Node container states in which every pod namespace of the node is gone."""

T = TypeVar("T")
R = TypeVar("R")


class NamespaceUnreadable(ClusterError):
    """A pod's network namespace could not be read or changed: what is in it is unknown."""


@dataclass(frozen=True)
class Netns:
    """One pod's network namespace, as seen from its kind node."""

    node: str
    """The kind node (and its container's name)."""
    pid: int
    """A process of the pod (its container's main process), in the node's PID namespace."""
    inode: int
    """The namespace's inode (``stat -L /proc/PID/ns/net``); 0 if unknown (ledgers before it was recorded)."""
    pod: str = ""
    """``namespace/name`` of the pod, for messages."""

    def to_undo(self) -> list[Any]:
        return [self.node, self.pid, self.inode, self.pod]

    @classmethod
    def from_undo(cls, item: list[Any]) -> Netns:
        node, pid, *rest = item
        inode = int(rest[0]) if rest else 0
        pod = str(rest[1]) if len(rest) > 1 else ""
        return cls(str(node), int(pid), inode, pod)

    def __str__(self) -> str:
        return f"{self.pod or 'pid ' + str(self.pid)} on {self.node}"


@dataclass(frozen=True)
class PodProcess:
    """Where a pod's container runs."""

    namespace: str
    pod: str
    node: str
    """The kind node (and its container's name)."""
    container_id: str
    pid: int
    """The container's main process, in the node's PID namespace."""
    ip: str
    """The pod's IP address."""
    inode: int = 0
    """The inode of the pod's network namespace."""

    @property
    def netns(self) -> Netns:
        return Netns(self.node, self.pid, self.inode, f"{self.namespace}/{self.pod}")


@dataclass(frozen=True)
class Outcome:
    """What a snippet did in one namespace."""

    gone: bool
    """The namespace no longer exists (its pod restarted or its node stopped): nothing ran."""
    code: int
    """The snippet's exit status (-1 when gone)."""
    output: str
    """Its standard output and error."""


def on_nodes(groups: dict[str, T], work: Callable[[str, T], R]) -> dict[str, R]:
    """Run ``work(node, items)`` for every node at once; the first error is raised."""
    if len(groups) <= 1:
        return {node: work(node, items) for node, items in groups.items()}
    with ThreadPoolExecutor(max_workers=len(groups), thread_name_prefix="chaoskit-node") as pool:
        futures = {node: pool.submit(work, node, items) for node, items in groups.items()}
        return {node: future.result() for node, future in futures.items()}


def locate(shell: NodeShell, pod: Any, container: str | None = None) -> PodProcess:
    """Find a running pod's container (the first one unless named) on its node."""
    return locate_all(shell, [pod], container)[0]


def locate_all(shell: NodeShell, pods: list[Any], container: str | None = None) -> list[PodProcess]:
    """Find every pod's running container: one exec per node, the nodes in parallel."""
    wanted: dict[str, list[tuple[Any, str]]] = {}
    for pod in pods:
        name = pod.metadata.name
        statuses = pod.status.container_statuses or []
        if container:
            statuses = [s for s in statuses if s.name == container]
        running = [s for s in statuses if s.container_id and s.state and s.state.running]
        if not running or not pod.spec.node_name or not pod.status.pod_ip:
            which = f"container {container}" if container else "container"
            raise SpecError(f"pod {pod.metadata.namespace}/{name} has no running {which}")
        wanted.setdefault(pod.spec.node_name, []).append((pod, running[0].container_id.split("://", 1)[1]))

    def find(node: str, items: list[tuple[Any, str]]) -> list[PodProcess]:
        listing = nodes.check(
            shell, node, ["bash", "-c", find_containers_script([cid for _, cid in items])], STEP_TIMEOUT
        )
        found = main_processes(listing)
        located = []
        for pod, cid in items:
            words = found.get(cid)
            if words is None or words[1] == 0:
                raise SpecError(f"container {cid[:12]} of pod {pod.metadata.name} is not running on node {node}")
            located.append(
                PodProcess(pod.metadata.namespace, pod.metadata.name, node, cid, words[0], pod.status.pod_ip, words[1])
            )
        return located

    found_by_node = on_nodes(wanted, find)
    by_name = {(p.namespace, p.pod): p for located in found_by_node.values() for p in located}
    return [by_name[(p.metadata.namespace, p.metadata.name)] for p in pods]


CONTAINER_ID = re.compile(r"^[0-9a-f]{12,128}$")
"""A container ID as every runtime writes it (containerd, CRI-O and Docker: 64 hex digits)."""


def find_containers_script(container_ids: list[str]) -> str:
    """Bash: print ``CID PID NSPID INODE`` for every process of the named containers on this node.

    A container's processes are found by its ID in their cgroup path, which
    every runtime (containerd, CRI-O, Docker) and both cgroup versions put
    there; so no runtime client is needed on the node. NSPID is the process's
    pid inside its own PID namespace (1 for the container's main process),
    INODE that of its network namespace. The IDs come from the API: each must be hex, or nothing is built.
    """
    bad = [cid for cid in container_ids if not CONTAINER_ID.match(cid)]
    if bad:
        raise SpecError(f"container ID {bad[0][:80]!r} is not hex: the pod's status is not a runtime's")
    pattern = "|".join(container_ids)  # hex only: nothing in it for grep or the shell to read
    return (
        f"grep -l -E {shlex.quote(pattern)} /proc/[0-9]*/cgroup 2>/dev/null | while read -r f; do "
        "pid=${f#/proc/}; pid=${pid%/cgroup}; "
        f'cid=$(grep -o -m1 -E {shlex.quote(pattern)} "$f" 2>/dev/null) || continue; '
        "nspid=$(awk '/^NSpid:/ {print $NF}' /proc/$pid/status 2>/dev/null); "
        "ino=$(stat -L -c %i /proc/$pid/ns/net 2>/dev/null || echo 0); "
        'echo "$cid $pid ${nspid:-0} $ino"; done; true'
    )


def container_processes(shell: NodeShell, pods: list[Any]) -> dict[str, list[tuple[str, list[int]]]]:
    """Every process of every running container of ``pods``, per node: (container ID, pids); one exec per node."""
    wanted: dict[str, list[str]] = {}
    for pod in pods:
        ids = [
            s.container_id.split("://", 1)[1]
            for s in pod.status.container_statuses or []
            if s.container_id and s.state and s.state.running
        ]
        if not ids or not pod.spec.node_name:
            raise SpecError(f"pod {pod.metadata.namespace}/{pod.metadata.name} has no running container")
        wanted.setdefault(pod.spec.node_name, []).extend(ids)

    def find(node: str, ids: list[str]) -> list[tuple[str, list[int]]]:
        listed = container_listing(nodes.check(shell, node, ["bash", "-c", find_containers_script(ids)], STEP_TIMEOUT))
        found = {cid: [pid for pid, _, _ in listed.get(cid, [])] for cid in ids}
        empty = [cid[:12] for cid, pids in found.items() if not pids]
        if empty:
            raise SpecError(f"containers {', '.join(empty)} have no process on node {node}")
        return sorted(found.items())

    return on_nodes(wanted, find)


def container_listing(listing: str) -> dict[str, list[tuple[int, int, int]]]:
    """:func:`find_containers_script`'s output, read: each container's processes as (pid, nspid, inode)."""
    found: dict[str, list[tuple[int, int, int]]] = {}
    for line in listing.splitlines():
        words = line.split()
        if len(words) == 4 and all(w.isdigit() for w in words[1:]):
            found.setdefault(words[0], []).append((int(words[1]), int(words[2]), int(words[3])))
    return found


def main_processes(listing: str) -> dict[str, tuple[int, int]]:
    """From :func:`find_containers_script`'s output: each container's main process and netns inode.

    The main process is pid 1 of the container's own PID namespace; in a pod
    sharing one PID namespace (or the host's), the oldest (lowest) pid.
    """
    found = container_listing(listing)
    chosen: dict[str, tuple[int, int]] = {}
    for cid, processes in found.items():
        pid, _, inode = min(processes, key=lambda p: (p[1] != 1, p[0]))
        chosen[cid] = (pid, inode)
    return chosen


FIND_NAMESPACE = r"""ck_pid() {
    if [ "$2" = 0 ]; then [ -e /proc/$1/ns/net ] && echo $1; return; fi
    [ "$(stat -L -c %i /proc/$1/ns/net 2>/dev/null)" = "$2" ] && { echo $1; return; }
    find /proc -mindepth 3 -maxdepth 3 -path '/proc/[0-9]*/ns/net' -lname "net:\[$2\]" -print -quit 2>/dev/null \
        | cut -d/ -f3
}"""
"""Shell: ``ck_pid PID INODE`` prints a pid in the namespace with that inode (PID itself, or any
process still in it), or nothing when the namespace is gone. Inode 0 (an old ledger): PID alone."""


def in_namespaces(
    shell: NodeShell, node: str, work: list[tuple[Netns, str]], timeout: float = STEP_TIMEOUT
) -> list[Outcome]:
    """Run each (namespace, shell snippet) on ``node`` with one exec; return each namespace's outcome.

    A namespace that no process on the node is in any more (its pod deleted) or
    whose node container is stopped is ``gone``; one whose recorded process
    restarted is reached through another process still in it. A node that cannot be reached for
    another reason (paused, Docker not answering) raises NamespaceUnreadable.
    """
    token = secrets.token_hex(4)
    try:
        result = shell.run(node, ["bash", "-c", namespaces_script(work, token)], timeout=timeout)
    except ClusterError as exc:
        state = shell.state(node)
        if state in GONE_STATES:
            return [Outcome(True, -1, "") for _ in work]
        raise NamespaceUnreadable(f"cannot reach the pods' namespaces on node {node} ({state}): {exc}") from None
    outcomes = _sections(result.stdout, token, len(work))
    if outcomes is None:
        raise NamespaceUnreadable(
            f"the script on node {node} ended early (exit {result.code}): {result.output.strip()[-300:]}"
        )
    return outcomes


def namespaces_script(work: list[tuple[Netns, str]], token: str) -> str:
    """Bash that runs each (namespace, snippet) of one node, each namespace's output between markers that
    carry ``token``."""
    sections = [
        f'echo "@@{token} begin {i}"; p=$(ck_pid {ns.pid} {ns.inode}); if [ -n "$p" ]; then '
        f'nsenter -t "$p" -n sh -c {shlex.quote(snippet)} 2>&1; rc=$?; '
        f'echo "@@{token} end {i} $rc"; else echo "@@{token} end {i} gone"; fi'
        for i, (ns, snippet) in enumerate(work)
    ]
    if len(work) == 1:
        return "\n".join([FIND_NAMESPACE, *sections])
    # For the runner: the namespaces at once (PARALLEL at a time), each into a file of its own, then printed
    # in order, so a node's step costs about the same for 30 pods as for 3.
    lines = [FIND_NAMESPACE, "ck_dir=$(mktemp -d) || exit 3; trap 'rm -rf \"$ck_dir\"' EXIT"]
    for i, section in enumerate(sections):
        lines.append(f'( {section} ) > "$ck_dir/{i}" 2>&1 &')
        if (i + 1) % PARALLEL == 0:
            lines.append("wait")
    lines.append("wait")
    lines.append(f'for i in $(seq 0 {len(work) - 1}); do cat "$ck_dir/$i"; done')
    return "\n".join(lines)


def steps_by_node(namespaces: Iterable[Netns], op: str, **fields: Any) -> dict[str, list[dict[str, Any]]]:
    """One typed agent step (:mod:`chaoskit.agent.actions`) per namespace, grouped by node."""
    steps: dict[str, list[dict[str, Any]]] = {}
    for ns in namespaces:
        steps.setdefault(ns.node, []).append(actions.step(op, pid=ns.pid, inode=ns.inode, **fields))
    return steps


def _sections(text: str, token: str, count: int) -> list[Outcome] | None:
    begin = f"@@{token} begin "
    end = f"@@{token} end "
    outcomes: dict[int, Outcome] = {}
    current: list[str] = []
    for line in text.splitlines():
        if line.startswith(begin):
            current = []
        elif line.startswith(end):
            index, status = line[len(end) :].split()
            if status == "gone":
                outcomes[int(index)] = Outcome(True, -1, "")
            else:
                outcomes[int(index)] = Outcome(False, int(status), "\n".join(current))
        else:
            current.append(line)
    if len(outcomes) != count:
        return None
    return [outcomes[i] for i in range(count)]


def run_everywhere(
    shell: NodeShell, work: list[tuple[Netns, str]], timeout: float = STEP_TIMEOUT
) -> dict[Netns, Outcome]:
    """Run each (namespace, snippet): one exec per node, the nodes in parallel."""
    groups: dict[str, list[tuple[Netns, str]]] = {}
    for ns, snippet in work:
        groups.setdefault(ns.node, []).append((ns, snippet))
    results = on_nodes(groups, lambda node, items: in_namespaces(shell, node, items, timeout))
    return {
        ns: outcome for node, items in groups.items() for (ns, _), outcome in zip(items, results[node], strict=True)
    }


# --- iptables -----------------------------------------------------------------------------------

PROBE_SECONDS = 1.0
"""How long a TCP probe waits for its connection."""


def tcp_snippet(ip: str, port: int, timeout: float = PROBE_SECONDS) -> str:
    """Try one TCP connection; print ``probe=<rc>`` after the connection's own error, if any."""
    inner = shlex.quote(f"exec 3<>/dev/tcp/{ip}/{port}")
    return f"timeout {timeout:g} bash -c {inner} 2>&1; echo probe=$?"


def probe_verdict(outcome: Outcome, where: str, target: str) -> str:
    """``open``, ``blocked`` or ``refused`` from a :func:`tcp_snippet` outcome; anything else is an error.

    Blocked is a connection that timed out (its packets dropped on the way) or
    that the namespace's own OUTPUT chain refused (``Operation not permitted``).
    A probe that did not run, or failed some other way, raises: an error of the
    probe is not a blocked connection.
    """
    if outcome.gone:
        raise NamespaceUnreadable(f"the probe from {where} could not run: its namespace is gone")
    match = re.search(r"probe=(\d+)\s*$", outcome.output)
    if match is None:
        raise NamespaceUnreadable(f"the probe from {where} to {target} did not run: {tail_of(outcome.output)}")
    code = int(match.group(1))
    if code == 0:
        return "open"
    if code == 124 or "Operation not permitted" in outcome.output:
        return "blocked"
    if "Connection refused" in outcome.output:
        return "refused"
    raise NamespaceUnreadable(f"the probe from {where} to {target} failed (exit {code}): {tail_of(outcome.output)}")


def probe_from_pod(shell: NodeShell, ns: Netns, ip: str, port: int) -> str:
    """A TCP probe from inside a pod's namespace: ``open``, ``blocked`` or ``refused``."""
    (outcome,) = in_namespaces(shell, ns.node, [(ns, tcp_snippet(ip, port))])
    return probe_verdict(outcome, str(ns), f"{ip}:{port}")


def probe_from_node(shell: NodeShell, node: str, ip: str, port: int) -> str:
    """A TCP probe from a node's own namespace (outside every pod): ``open``, ``blocked`` or ``refused``."""
    result = shell.run(node, ["bash", "-c", tcp_snippet(ip, port)], timeout=STEP_TIMEOUT)
    return probe_verdict(Outcome(False, result.code, result.output), f"node {node}", f"{ip}:{port}")


CONNECT_TIMER = r"""
import socket, sys, time
ip, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for _ in range(count):
    s = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET)
    s.settimeout(5)
    start = time.perf_counter()
    try:
        s.connect((ip, port))
        outcome = "open"
    except ConnectionRefusedError:
        outcome = "refused"
    except OSError as exc:
        outcome = type(exc).__name__
    print("rtt", outcome, round((time.perf_counter() - start) * 1e6))
    s.close()
    time.sleep(0.02)
"""
"""Python: time ``count`` TCP handshakes (a refusal is timed too: its RST answers as the SYN-ACK would)."""


def connect_times(shell: NodeShell, node: str, ip: str, port: int, count: int = 9) -> list[float]:
    """Milliseconds each of ``count`` TCP handshakes from ``node``'s own namespace to ``ip:port`` took.

    Python's clock around ``connect()`` where the node (or the agent) has python3; else bash's
    ``/dev/tcp`` between two ``date`` calls (a few ms of process start in every figure, the same
    before and during a fault). A handshake that timed out raises: it measures nothing.
    """
    timer = shlex.quote(CONNECT_TIMER)
    fallback = (
        f"for i in $(seq {count}); do s=$(date +%s%N); "
        f"timeout 5 bash -c {shlex.quote(f'exec 3<>/dev/tcp/{ip}/{port}')} 2>/dev/null; rc=$?; e=$(date +%s%N); "
        "case $rc in 0) o=open;; 124) o=timeout;; *) o=refused;; esac; echo rtt $o $(( (e - s) / 1000 )); done"
    )
    script = (
        f"if command -v python3 >/dev/null; then python3 -c {timer} {shlex.quote(ip)} {port} {count}; "
        f"else {fallback}; fi"
    )
    output = on_node(shell, node, script, timeout=count * 6 + 10)
    times = []
    for line in output.splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == "rtt":
            if words[1] not in ("open", "refused"):
                raise ClusterError(f"a TCP handshake from {node} to {ip}:{port} failed ({words[1]})")
            times.append(int(words[2]) / 1000)
    if len(times) != count:
        raise ClusterError(f"timing TCP handshakes from {node} to {ip}:{port} gave no figures: {tail_of(output)}")
    return times


def on_node(shell: NodeShell, node: str, script: str, timeout: float) -> str:
    """A bash script in the node's own namespace (outside every pod); its output. A failure is a ClusterError."""
    return nodes.check(shell, node, ["bash", "-c", script], timeout)


def timed_send(shell: NodeShell, process: PodProcess, size: int, timeout: float) -> float:
    """Seconds for ``size`` bytes sent from the pod's namespace to arrive at a listener on its node.

    The listener binds the pod's default gateway (the node's bridge address) in
    the node's own namespace; the clock stops when the listener has read
    everything, so bytes still queued in the pod count against the time. One
    exec does it all: find the gateway, listen, send, time. The listener's port
    lies above the kernel's ephemeral range: one inside it was seen taken by a
    connection of the load ("Address already in use").
    """
    limit = f"{timeout:.1f}"
    pid = process.pid
    script = f"""
        via=$(nsenter -t {pid} -n ip -4 route show default | awk '{{for (i = 1; i < NF; i++) if ($i == "via") print $(i + 1)}}')
        [ -n "$via" ] || {{ echo "no default route in the pod's namespace" >&2; exit 3; }}
        port=$((61000 + RANDOM % 4500))  # above Linux's ephemeral ports (to 60999), which the load's connections take
        timeout {limit} socat -u TCP-LISTEN:$port,bind=$via,reuseaddr OPEN:/dev/null & listener=$!
        for i in $(seq 200); do ss -Hltn "sport = :$port" | grep -q . && break; sleep 0.01; done
        start=$(date +%s%N)
        head -c {size} /dev/zero | timeout {limit} nsenter -t {pid} -n socat -u - TCP:$via:$port
        wait $listener
        echo $(( $(date +%s%N) - start ))
    """  # noqa: E501
    result = shell.run(process.node, ["bash", "-ec", script], timeout=timeout + 5)
    if result.code != 0:
        raise ClusterError(f"the probe transfer from {process.pod} failed: {tail_of(result.output)}")
    return int(result.stdout.split()[-1]) / 1e9


def tail_of(output: str) -> str:
    return " | ".join(output.strip().splitlines()[-3:]) or "no output"


def unquote(words: list[str]) -> list[str]:
    # iptables-save quotes comments that contain spaces; ours have none, but strip quotes anyway.
    return [w[1:-1] if len(w) >= 2 and w[0] == w[-1] == '"' else w for w in words]
