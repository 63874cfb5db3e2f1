"""What the injector agent may do on its node: a closed set of typed steps, each validated, each run as
argument vectors. Standard library only (the agent's image has nothing else).

A fault record (:mod:`chaoskit.faults.objects`) never carries a script. It
carries, per node, a list of **steps**: ``{"op": ..., field: value}``, where
every op is one of :data:`OPS` and every field has a type and a pattern
(names as DNS-1123, pids and inodes as integers, a qdisc handle as hex, an
iptables comment as ``chaoskit:<fault id>``). The agent builds each command
itself from those fields, as an argument vector; nothing from a record, a
rule listing or ``/proc`` ever reaches a shell. A step that does not validate
is refused with the reason and nothing of its record runs.

Every op only undoes what chaoskit itself puts on a node, or (``stop-kubelet``,
the one inject) does the single thing a node fault asks:

* ``delete-rules``: delete the iptables rules carrying the fault's comment, in
  one pod's network namespace (found by its inode, through any process still
  in it), then list the table again and fail if one is left;
* ``delete-qdisc``: delete eth0's root qdisc while it bears the fault's handle;
* ``stop-helpers``: SIGTERM (then SIGKILL) the node's processes whose argv
  holds the word ``--tag=<comment>``, the helpers a fault started;
* ``resume``: SIGCONT every process of one PID namespace (a freeze's undo);
* ``remove-fill``: unlink the disk fill's file (``.chaoskit-fill-<id>``) where
  the pod can still see it;
* ``start-kubelet`` / ``stop-kubelet``: systemd's kubelet unit on the node;
* ``crash-node`` (an inject): the node dies as a machine does at a power loss,
  as far as a process on it can make it: SIGKILL to the kubelet (its unit then
  stopped, so systemd does not restart it), to every process of every pod on the
  node but the agent's own, and to the container runtime's shims of those pods.
  Nothing gets SIGTERM. The kernel, containerd and the node's network stay up;
  ``start-kubelet`` is its undo.

Shared by the agent (which validates what it reads) and the runner (which
builds records from the same types), so both judge a step the same way.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# --- fields ------------------------------------------------------------------------------------

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
COMMENT = re.compile(r"^chaoskit:[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
HANDLE = re.compile(r"^[0-9a-f]{1,4}:$")
UID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
FILL_FILE = re.compile(r"^\.chaoskit-fill-[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
PATH_SEGMENT = re.compile(r"^[A-Za-z0-9_.-]+$")
PID_MAX = 4194304
"""The kernel's highest pid (``pid_max`` can be no larger on 64-bit)."""
INODE_MAX = 2**63 - 1
"""An int64, as the record's schema holds it (namespace inodes are 32-bit in practice)."""
TABLES = ("filter", "mangle", "nat")
FAMILIES = ("ipv4", "ipv6")
KUBELET_PODS = "/var/lib/kubelet/pods"
HOST = ["nsenter", "-t", "1", "-m", "-u", "-i", "-n", "-p", "--"]
"""The node's own namespaces, from the agent (which shares only its PID and network namespaces)."""
HELPER_TAG = "--tag="
STEP_TIMEOUT = 30.0
MAX_STEPS = 256
"""Steps per node in one record (a fault on 30 pods of one node has 30-60)."""


class Refused(ValueError):
    """A record or step that does not validate: nothing of it runs."""


def _name(value: Any, field: str, pattern: re.Pattern[str] = DNS_SUBDOMAIN, limit: int = 253) -> str:
    if not isinstance(value, str) or not value or len(value) > limit or not pattern.match(value):
        raise Refused(f"{field}: {_show(value)} is not a valid name ({pattern.pattern})")
    return value


def _int(value: Any, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Refused(f"{field}: {_show(value)} is not an integer in {low}-{high}")
    return value


def _choice(value: Any, field: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise Refused(f"{field}: {_show(value)} is not one of {', '.join(choices)}")
    return str(value)


def _path(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.startswith("/") or len(value) > 1024:
        raise Refused(f"{field}: {_show(value)} is not an absolute path")
    segments = [s for s in value.split("/") if s]
    if any(s in (".", "..") or not PATH_SEGMENT.match(s) for s in segments):
        raise Refused(f"{field}: {_show(value)} may hold only letters, digits, '.', '_', '-' and '/' (no '..')")
    return "/" + "/".join(segments)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_node(value: Any, field: str = "node") -> str:
    return _name(value, field)


def check_comment(value: Any, field: str = "comment") -> str:
    return _name(value, field, COMMENT, 100)


def check_handle(value: Any, field: str = "handle") -> str:
    return _name(value, field, HANDLE, 5)


def check_pid(value: Any, field: str = "pid") -> int:
    return _int(value, field, 1, PID_MAX)


def check_inode(value: Any, field: str = "inode") -> int:
    return _int(value, field, 1, INODE_MAX)


# --- steps -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One validated step of a record, for this node."""

    op: str
    fields: dict[str, Any]

    def __str__(self) -> str:
        return f"{self.op}({', '.join(f'{k}={v}' for k, v in sorted(self.fields.items()))})"


def _netns(raw: dict[str, Any]) -> dict[str, Any]:
    return {"pid": check_pid(raw.get("pid")), "inode": check_inode(raw.get("inode"))}


FIELDS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "delete-rules": lambda raw: {
        **_netns(raw),
        "table": _choice(raw.get("table", "filter"), "table", TABLES),
        "comment": check_comment(raw.get("comment")),
        "families": _families(raw.get("families", ["ipv4"])),
    },
    "delete-qdisc": lambda raw: {**_netns(raw), "handle": check_handle(raw.get("handle"))},
    "stop-helpers": lambda raw: {"comment": check_comment(raw.get("comment"))},
    "resume": lambda raw: {"pidNamespace": check_inode(raw.get("pidNamespace"), "pidNamespace")},
    "remove-fill": lambda raw: {
        **_netns(raw),
        "uid": _name(raw.get("uid"), "uid", UID, 36),
        "path": _path(raw.get("path"), "path"),
        "file": _name(raw.get("file"), "file", FILL_FILE, 80),
    },
    "start-kubelet": lambda raw: {},
    "stop-kubelet": lambda raw: {},
    "crash-node": lambda raw: {},
}
OPS = tuple(FIELDS)
INJECT_OPS = ("stop-kubelet", "crash-node")
UNDO_OPS = tuple(op for op in OPS if op not in INJECT_OPS)
POD_UID = re.compile(r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})")
"""A pod's UID in a cgroup path: ``.../kubepods/burstable/pod<uid>/...`` (cgroupfs) or
``kubepods-burstable-pod<uid with _>.slice`` (systemd)."""
SHIM = "containerd-shim"
K8S_NAMESPACE = b"k8s.io"
"""containerd's namespace of the kubelet's containers (the shims' ``-namespace`` argument)."""
CRASH_ROUNDS = 20


def _families(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or len(value) > 2:
        raise Refused(f"families: {_show(value)} is not a list of {', '.join(FAMILIES)}")
    return tuple(_choice(v, "families", FAMILIES) for v in value)


def check_step(raw: Any, allowed: tuple[str, ...] = UNDO_OPS) -> Step:
    """Validate one step (a dict from a record); a field not known to its op is refused too."""
    if not isinstance(raw, dict):
        raise Refused(f"a step must be a mapping, not {_show(raw)}")
    op = raw.get("op")
    if op not in allowed:
        raise Refused(f"op: {_show(op)} is not one of {', '.join(allowed)}")
    fields = FIELDS[op](raw)
    extra = set(raw) - {"op", *fields}
    if extra:
        raise Refused(f"{op}: unknown field(s) {', '.join(sorted(map(str, extra)))}")
    return Step(op, fields)


def check_steps(raw: Any, allowed: tuple[str, ...] = UNDO_OPS) -> list[Step]:
    if not isinstance(raw, list) or len(raw) > MAX_STEPS:
        raise Refused(f"steps must be a list of at most {MAX_STEPS}, not {_show(raw)}")
    return [check_step(item, allowed) for item in raw]


def to_raw(step: Step) -> dict[str, Any]:
    """A step as a record holds it (lists for tuples)."""
    return {"op": step.op, **{k: list(v) if isinstance(v, tuple) else v for k, v in step.fields.items()}}


def step(op: str, **fields: Any) -> dict[str, Any]:
    """Build a record's step, validated now (the runner's side): a bad field is a bug, raised here."""
    return to_raw(check_step({"op": op, **fields}, OPS))


# --- running -----------------------------------------------------------------------------------


@dataclass
class Node:
    """Where steps run: the node's ``/proc`` and its tools, by argument vectors only."""

    proc: str = "/proc"
    tmp: str = "/tmp"
    timeout: float = STEP_TIMEOUT

    def run(self, argv: list[str], stdin: str | None = None) -> tuple[int, str]:
        try:
            done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired:
            return 124, f"{argv[0]} ran over {self.timeout:g} s"
        except OSError as exc:
            return 127, f"{argv[0]}: {exc}"
        return done.returncode, done.stdout + done.stderr

    def pids(self) -> list[int]:
        try:
            names = os.listdir(self.proc)
        except OSError:
            return []
        return sorted(int(n) for n in names if n.isdigit())

    def link(self, pid: int, what: str) -> str:
        try:
            return os.readlink(f"{self.proc}/{pid}/ns/{what}")
        except OSError:
            return ""

    def in_netns(self, pid: int, inode: int) -> int | None:
        """A process in the network namespace with ``inode``: ``pid`` itself, or any still in it; None when
        no process is (the pod and its namespace are gone)."""
        want = f"net:[{inode}]"
        if self.link(pid, "net") == want:
            return pid
        return next((p for p in self.pids() if self.link(p, "net") == want), None)

    def in_pidns(self, inode: int) -> list[int]:
        want = f"pid:[{inode}]"
        return [p for p in self.pids() if self.link(p, "pid") == want]

    def read(self, pid: int, what: str) -> bytes:
        try:
            with open(f"{self.proc}/{pid}/{what}", "rb") as handle:
                return handle.read()
        except OSError:
            return b""

    def pod_of(self, pid: int) -> str | None:
        """The UID (with '-') of the pod whose cgroup holds ``pid``; None for a process of no pod."""
        found = POD_UID.search(self.read(pid, "cgroup").decode(errors="replace"))
        return found.group(1).replace("_", "-") if found else None

    def parent(self, pid: int) -> int:
        stat = self.read(pid, "stat").decode(errors="replace")
        fields = stat[stat.rfind(")") + 2 :].split()
        return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0

    def shims(self) -> list[int]:
        """The container runtime's shims of the kubelet's containers (containerd's ``k8s.io`` namespace)."""
        found = []
        for pid in self.pids():
            if not self.read(pid, "comm").startswith(SHIM.encode()[:15]):
                continue
            words = self.read(pid, "cmdline").split(b"\0")
            if K8S_NAMESPACE in words:
                found.append(pid)
        return found

    def tagged(self, comment: str) -> list[int]:
        """Processes whose argv holds the word ``--tag=<comment>`` (a helper of that fault)."""
        word = (HELPER_TAG + comment).encode()
        found = []
        for pid in self.pids():
            try:
                with open(f"{self.proc}/{pid}/cmdline", "rb") as handle:
                    words = handle.read().split(b"\0")
            except OSError:
                continue
            if word in words and pid != os.getpid():
                found.append(pid)
        return found


class StepFailed(RuntimeError):
    """A step ran and did not reach its end state (the message says what is left)."""


def run_step(node: Node, item: Step) -> str:
    """Run one validated step; return what it did. Raises StepFailed when its end state is not reached."""
    f = item.fields
    if item.op == "delete-rules":
        return _delete_rules(node, f["pid"], f["inode"], f["table"], f["comment"], f["families"])
    if item.op == "delete-qdisc":
        return _delete_qdisc(node, f["pid"], f["inode"], f["handle"])
    if item.op == "stop-helpers":
        return _stop_helpers(node, f["comment"])
    if item.op == "resume":
        pids = node.in_pidns(f["pidNamespace"])
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        return f"SIGCONT to {len(pids)} process(es)"
    if item.op == "remove-fill":
        return _remove_fill(node, f)
    if item.op == "crash-node":
        return _crash_node(node)
    if item.op in ("start-kubelet", "stop-kubelet"):
        verb = item.op.split("-")[0]
        code, output = node.run([*HOST, "systemctl", verb, "kubelet"])
        active, _ = node.run([*HOST, "systemctl", "is-active", "--quiet", "kubelet"])
        if code != 0 or (active == 0) != (verb == "start"):
            raise StepFailed(f"systemctl {verb} kubelet: exit {code}, active: {active == 0}: {output[-300:]}")
        return f"kubelet {verb}: systemd says {'active' if active == 0 else 'inactive'}"
    raise Refused(f"op {item.op} is not known")  # check_step admits none other


def _rules(listing: str, comment: str) -> list[str]:
    """The ``-A`` lines of an ``iptables-save`` listing whose comment is exactly ``comment``."""
    found = []
    for line in listing.splitlines():
        if not line.startswith("-A "):
            continue
        words = line.split()
        for i, word in enumerate(words[:-1]):
            if word == "--comment" and words[i + 1].strip('"') == comment:
                found.append(line)
                break
    return found


def _delete_rules(node: Node, pid: int, inode: int, table: str, comment: str, families: tuple[str, ...]) -> str:
    inside = node.in_netns(pid, inode)
    if inside is None:
        return "namespace gone"
    enter = ["nsenter", "-t", str(inside), "-n"]
    counts = []
    for family in families:
        tool = "iptables" if family == "ipv4" else "ip6tables"
        code, listing = node.run([*enter, f"{tool}-save", "-t", table])
        if code != 0:
            raise StepFailed(f"{tool}-save -t {table} failed (exit {code}): no rule read: {listing.strip()[-200:]}")
        found = _rules(listing, comment)
        if found:
            deletes = ["-D " + line[3:] for line in found]
            # iptables-restore parses its input itself: the listed rules never reach a shell. One transaction,
            # or one rule at a time when it fails (another undo of the same fault may have got there first).
            batch = f"*{table}\n" + "\n".join(deletes) + "\nCOMMIT\n"
            code, _ = node.run([*enter, f"{tool}-restore", "-w", "--noflush"], batch)
            if code != 0:
                for line in deletes:
                    node.run([*enter, f"{tool}-restore", "-w", "--noflush"], f"*{table}\n{line}\nCOMMIT\n")
        code, listing = node.run([*enter, f"{tool}-save", "-t", table])
        if code != 0:
            raise StepFailed(f"{tool}-save -t {table} failed after the delete")
        left = _rules(listing, comment)
        if left:
            raise StepFailed(f"still in place after the delete: {left[0][:200]}")
        counts.append(f"{len(found)} {family} rule(s)")
    return f"deleted {', '.join(counts)} {comment} in net:[{inode}]"


def _root_qdisc(node: Node, enter: list[str]) -> tuple[str, str] | None:
    code, output = node.run([*enter, "tc", "qdisc", "show", "dev", "eth0", "root"])
    words = output.split()
    if code != 0 or len(words) < 3 or words[0] != "qdisc":
        raise StepFailed(f"tc qdisc show dev eth0 root failed (exit {code}): {output[-200:]}")
    return words[1], words[2]


def _delete_qdisc(node: Node, pid: int, inode: int, handle: str) -> str:
    inside = node.in_netns(pid, inode)
    if inside is None:
        return "namespace gone"
    enter = ["nsenter", "-t", str(inside), "-n"]
    current = _root_qdisc(node, enter)
    if current and current[1] == handle:
        node.run([*enter, "tc", "qdisc", "del", "dev", "eth0", "root"])
        current = _root_qdisc(node, enter)
        if current and current[1] == handle:
            raise StepFailed(f"eth0's root qdisc still bears {handle}")
        return f"qdisc {handle} deleted in net:[{inode}]"
    return f"no qdisc {handle} in net:[{inode}]"


def _stop_helpers(node: Node, comment: str) -> str:
    pids = node.tagged(comment)
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 1.0)):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and node.tagged(comment):
            time.sleep(0.05)
        if not node.tagged(comment):
            break
    left = node.tagged(comment)
    prefix = f"chaoskit-{comment.removeprefix('chaoskit:')}-"
    try:
        for name in os.listdir(node.tmp):
            if name.startswith(prefix) and name.endswith(".log"):
                os.remove(os.path.join(node.tmp, name))
    except OSError:
        pass
    if left:
        raise StepFailed(f"{len(left)} helper(s) of {comment} still run: {left[:5]}")
    return f"{len(pids)} helper(s) of {comment} ended"


def _remove_fill(node: Node, f: dict[str, Any]) -> str:
    inside = f"{f['path'].rstrip('/')}/{f['file']}"
    candidates = set()
    holders = [f["pid"]] + [p for p in node.pids() if node.link(p, "net") == f"net:[{f['inode']}]"]
    for pid in holders:
        candidates.add(f"{node.proc}/{pid}/root{inside}")
    pod_dir = f"{KUBELET_PODS}/{f['uid']}"
    for root, _dirs, files in os.walk(pod_dir):
        if f["file"] in files:
            candidates.add(os.path.join(root, f["file"]))
    removed = 0
    for path in sorted(candidates):
        try:
            os.unlink(path)  # unlink: a symlink planted under the name is removed, never followed
            removed += 1
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StepFailed(f"cannot remove {path}: {exc}") from None
    left = [p for p in candidates if os.path.lexists(p)]
    if left:
        raise StepFailed(f"{f['file']} is still at {left[0]}")
    return f"{f['file']}: {removed} removed"


def _crash_node(node: Node) -> str:
    """SIGKILL the kubelet, then every pod's processes and their shims but the agent's own; see the module's
    docs. The kubelet goes first, so that it cannot see its containers die and start them again."""
    code, output = node.run([*HOST, "systemctl", "kill", "--signal=SIGKILL", "kubelet"])
    if code != 0:
        raise StepFailed(f"systemctl kill --signal=SIGKILL kubelet: exit {code}: {output[-300:]}")
    # The unit would restart (Restart=always): stopping it now only cancels that, its process being dead.
    code, output = node.run([*HOST, "systemctl", "stop", "kubelet"])
    active, _ = node.run([*HOST, "systemctl", "is-active", "--quiet", "kubelet"])
    if code != 0 or active == 0:
        raise StepFailed(f"the kubelet was SIGKILLed but its unit still runs (stop: exit {code}): {output[-300:]}")
    mine = node.pod_of(os.getpid())
    spared = {os.getpid()}
    pid = os.getpid()
    while pid > 1:  # the agent and its ancestors (its shim among them) are spared: it must restore the node
        pid = node.parent(pid)
        spared.add(pid)
    killed: set[int] = set()
    pods: set[str] = set()
    for _ in range(CRASH_ROUNDS):  # again while any is left: a dying process's children may still be forking
        owners = {p: node.pod_of(p) for p in node.pids() if p not in spared}
        victims = {p: uid for p, uid in owners.items() if uid and uid != mine}
        if not victims:
            break
        for victim, uid in victims.items():
            pods.add(uid)
            try:
                os.kill(victim, signal.SIGKILL)
                killed.add(victim)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    else:
        raise StepFailed(f"pod processes still run after {CRASH_ROUNDS} rounds of SIGKILL")
    shims = [p for p in node.shims() if p not in spared]
    for shim in shims:
        try:
            os.kill(shim, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return (
        f"kubelet SIGKILLed (systemd: inactive); {len(killed)} process(es) of {len(pods)} pod(s) and "
        f"{len(shims)} shim(s) SIGKILLed; spared: the agent's own pod ({mine})"
    )
