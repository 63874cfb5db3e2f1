"""What chaoskit puts inside pods' network namespaces, and how it finds it again: iptables rules carrying
the fault's comment, tc root qdiscs under the fault's handle, and helper processes tagged with it.

Each is written as a bash snippet that :func:`chaoskit.faults.netns.run_everywhere` runs in every target
namespace, one exec per node; each read (:func:`rules_in`, :func:`root_qdiscs`, :func:`helpers_running`)
raises :class:`~chaoskit.faults.netns.NamespaceUnreadable` rather than take a failed read for "nothing there".
"""

from __future__ import annotations

import hashlib
import re
import shlex
from collections.abc import Iterable
from importlib import resources

from chaoskit.adapters.nodes import NodeShell
from chaoskit.errors import ClusterError, FaultUnsupported
from chaoskit.faults.netns import (
    COMMENT_PREFIX,
    STEP_TIMEOUT,
    NamespaceUnreadable,
    Netns,
    on_nodes,
    run_everywhere,
    tail_of,
    unquote,
)

READ_RULES = "iptables-save -t filter"


def read_rules(table: str = "filter") -> str:
    """Shell: list one iptables table (faults use ``filter``, and ``mangle`` for the latency delayer)."""
    return f"iptables-save -t {table}"


def for_ipv6(snippet: str) -> str:
    """An iptables snippet of this module made to act on the IPv6 tables: every ``iptables`` tool becomes its
    ``ip6tables`` twin (``ip6tables-save``, ``ip6tables-restore``), which read and write the same format."""
    return snippet.replace("iptables", "ip6tables")


def comment_rules(output: str, comment: str) -> list[str]:
    """The ``-A ...`` lines of an ``iptables-save`` listing that carry ``comment``."""
    return [line for line in output.splitlines() if line.startswith("-A ") and comment in unquote(line.split())]


RESTORE_SAFE = re.compile(r"^[A-Za-z0-9_.:/!-]+$")
"""Words ``iptables-restore`` reads as they are (it knows double quotes only, and ours need none)."""


def _restore(lines: list[list[str]], table: str = "filter") -> str | None:
    """Shell: apply iptables lines (``-I ...``/``-D ...``) to a table in one ``iptables-restore``
    transaction, the table kept otherwise (``--noflush``); None when a word would need quoting."""
    if not all(RESTORE_SAFE.match(word) for line in lines for word in line):
        return None
    body = "\n".join([f"*{table}", *(" ".join(line) for line in lines), "COMMIT", ""])
    return f"printf %s {shlex.quote(body)} | iptables-restore -w --noflush"


def insert_snippet(rules: list[list[str]], comment: str, table: str = "filter") -> str:
    """Insert rules (each marked with ``comment``), then list the table so the caller can count them.

    All of a namespace's rules go in as one ``iptables-restore`` transaction: one
    process and one commit however many rules (a client cut from 30 pods has 60),
    where an ``iptables`` process per rule made the cost grow with the pods.
    """
    marked = [["-I", *r, "-m", "comment", "--comment", comment] for r in rules]
    batch = _restore(marked, table)
    if batch is not None:
        return f"set -e; {batch}; {read_rules(table)}"
    inserts = [shlex.join(["iptables", "-w", "-t", table, *r]) for r in marked]
    return "set -e; " + "; ".join([*inserts, read_rules(table)])


def rules_in(
    shell: NodeShell, namespaces: Iterable[Netns], comment: str, table: str = "filter"
) -> dict[Netns, list[str] | None]:
    """The rules carrying ``comment`` in each namespace's ``table``; None where the namespace is gone.

    A listing that fails raises NamespaceUnreadable: an unreadable table is not an empty one.
    """
    listing = read_rules(table)
    outcomes = run_everywhere(shell, [(ns, listing) for ns in namespaces])
    found: dict[Netns, list[str] | None] = {}
    for ns, outcome in outcomes.items():
        if outcome.gone:
            found[ns] = None
        elif outcome.code != 0:
            raise NamespaceUnreadable(f"'{listing}' failed in {ns} (exit {outcome.code}): {tail_of(outcome.output)}")
        else:
            found[ns] = comment_rules(outcome.output, comment)
    return found


def delete_rules(
    shell: NodeShell, namespaces: Iterable[Netns], comment: str, table: str = "filter"
) -> dict[Netns, int | None]:
    """Delete every rule carrying ``comment``; how many per namespace (None: gone). Idempotent.

    One exec per node, the nodes in parallel: each namespace lists, deletes and lists again in one go
    (:func:`delete_rules_snippet`). A listing that fails, or a rule still there after the delete, raises
    NamespaceUnreadable naming the namespace.
    """
    outcomes = run_everywhere(shell, [(ns, delete_rules_snippet(comment, table)) for ns in namespaces])
    deleted: dict[Netns, int | None] = {}
    for ns, outcome in outcomes.items():
        if outcome.gone:
            deleted[ns] = None
            continue
        if outcome.code != 0:
            raise NamespaceUnreadable(f"deleting rules in {ns} failed (exit {outcome.code}): {tail_of(outcome.output)}")
        counts = [line.split()[1] for line in outcome.output.splitlines() if line.startswith(MATCHED_MARK)]
        deleted[ns] = int(counts[-1]) if counts and counts[-1].isdigit() else 0
    return deleted


MATCHED_MARK = "chaoskit-matched "


def delete_rules_snippet(comment: str, table: str = "filter") -> str:
    """Shell, for inside one namespace: delete every rule of ``table`` carrying ``comment``, then list the
    table again and fail (naming what is left) if one is still there, or if a listing fails. Prints
    ``chaoskit-matched N`` first. Needs only iptables.

    The listed rules go back to ``iptables-restore`` as ``-D`` lines, all in one transaction, or one at a
    time if that fails: it parses the quoting itself, so nothing from a rule (a comment a pod wrote into its
    own table) ever reaches a shell. A delete that fails is not an error by itself: another undo of the
    same fault may run at once (``chaoskit abort`` beside the run's own); the listing after it decides.
    """
    match = shlex.quote(f'--comment "?{literal_ere(comment)}"?( |$)')
    restore = "iptables-restore -w --noflush 2>/dev/null"
    return (
        f"rules=$(iptables-save -t {table}) || {{ echo 'iptables-save -t {table} failed: no rule read'; exit 1; }}; "
        f"found=$(printf '%s\\n' \"$rules\" | grep '^-A ' | grep -E -- {match}); "
        f"echo \"{MATCHED_MARK}$(printf '%s' \"$found\" | grep -c '^-A ')\"; "
        'if [ -n "$found" ]; then '
        f"{{ printf '*{table}\\n'; printf '%s\\n' \"$found\" | sed 's/^-A /-D /'; printf 'COMMIT\\n'; }} | {restore} "
        f"|| printf '%s\\n' \"$found\" | sed 's/^-A /-D /' | while IFS= read -r rule; do "
        f"printf '*{table}\\n%s\\nCOMMIT\\n' \"$rule\" | {restore}; done; fi; "
        f"left=$(iptables-save -t {table}) || {{ echo 'iptables-save -t {table} failed after the delete'; exit 1; }}; "
        f"if printf '%s\\n' \"$left\" | grep -E -- {match}; then echo 'chaoskit: still in place after the delete'; "
        "exit 1; fi"
    )


def literal_ere(text: str) -> str:
    """``text`` as a POSIX extended regular expression matching it literally (``re.escape`` also escapes
    ``-`` and ``:``, which grep warns about)."""
    return "".join(f"\\{c}" if c in ".^$*+?()[]{}|\\" else c for c in text)


def dropped_snippet(comment: str) -> str:
    """Print the packets dropped so far by the rules carrying ``comment`` (every chain of the filter table).

    Exits non-zero when the table cannot be listed: a count that cannot be read is not zero."""
    return (
        'out=$(iptables -w -L -v -n -x) || exit 3; echo "$out" | '
        f"awk -v c={shlex.quote(comment)} 'index($0, c) {{ s += $1 }} END {{ print s + 0 }}'"
    )


def dropped(shell: NodeShell, namespaces: Iterable[Netns], comment: str) -> dict[Netns, int]:
    """Packets dropped so far by the rules carrying ``comment``, per namespace; unreadable or gone raises."""
    counts: dict[Netns, int] = {}
    for ns, outcome in run_everywhere(shell, [(ns, dropped_snippet(comment)) for ns in namespaces]).items():
        words = outcome.output.split()
        if outcome.gone or outcome.code != 0 or not words or not words[-1].isdigit():
            why = "its namespace is gone" if outcome.gone else f"exit {outcome.code}: {tail_of(outcome.output)}"
            raise NamespaceUnreadable(f"the drop counters in {ns} could not be read ({why})")
        counts[ns] = int(words[-1])
    return counts


# --- helper processes in pods' namespaces ----------------------------------------------------

HELPER_TAG = "--tag="
"""A helper's argument naming its fault (``--tag=chaoskit:<fault id>``): one argv word, how it is found."""


HELPER_LIB = "helperlib.py"
_LIB_IMPORT = re.compile(r"^from chaoskit\.agent\.helperlib import .*$", re.MULTILINE)


def helper_source(module: str) -> str:
    """A helper's code: a stdlib-only module of :mod:`chaoskit.agent`, copied to nodes as one file, with
    :mod:`chaoskit.agent.helperlib`'s code written where it imports it (nothing of chaoskit is on the node)."""
    agent = resources.files("chaoskit.agent")
    text = agent.joinpath(module).read_text()
    lib = agent.joinpath(HELPER_LIB).read_text()
    return _LIB_IMPORT.sub(lambda _: f"# --- {HELPER_LIB}, bundled by chaoskit ---\n{lib}", text, count=1)


def helper_path(module: str) -> str:
    """Where a helper is written on a node (or in the agent's pod): its name carries a digest of its code."""
    digest = hashlib.sha256(helper_source(module).encode()).hexdigest()[:12]
    return f"/tmp/chaoskit-{module.removesuffix('.py')}-{digest}.py"


def write_helper_script(module: str) -> str:
    """Shell for a node: write the helper where :func:`helper_path` says, once (atomically); exit 5 without
    python3."""
    path = helper_path(module)
    return (
        "command -v python3 >/dev/null || { echo 'no python3 here' >&2; exit 5; }; "
        f"[ -s {path} ] || {{ printf %s {shlex.quote(helper_source(module))} > {path}.$$ && mv {path}.$$ {path}; }}"
    )


def write_helpers(shell: NodeShell, module: str, where: list[str], what: str) -> None:
    """Write the helper on each node, in parallel; a node without python3 (a stock kind node) cannot run it,
    which is a FaultUnsupported naming the way out (the injector agent carries python3)."""
    script = ["bash", "-c", write_helper_script(module)]
    outcomes = on_nodes({n: n for n in where}, lambda n, _: shell.run(n, script, timeout=STEP_TIMEOUT))
    failed = {node: outcome for node, outcome in outcomes.items() if outcome.code != 0}
    if any(o.code == 5 for o in failed.values()):
        raise FaultUnsupported(
            f"{what} runs a chaoskit helper ({module}) that needs python3 on the node ({', '.join(sorted(failed))} "
            "has none: stock kind images lack it); inject through the injector agent (pytest --chaos-injector agent, "
            "chaoskit --injector agent, or open_session(..., injector='agent')), "
            "which carries it; nothing was injected"
        )
    if failed:
        detail = "; ".join(f"{n}: exit {o.code}: {tail_of(o.output)}" for n, o in failed.items())
        raise ClusterError(f"writing the helper {module} failed ({detail})")


def refuse_if_held(table: str, pattern: str, message: str) -> str:
    """Shell, inside a pod's namespace, to put before a fault's rules: exit 6 with ``message`` when ``table``
    already holds a chaoskit rule matching ``pattern`` (a grep expression after the comment's prefix: the
    fault kind, say ``dns-``), so that two faults of a kind never stack in one pod."""
    match = shlex.quote(f'--comment "\\?{COMMENT_PREFIX}{pattern}')
    return (
        f"held=$(iptables-save -t {table}) || exit 1; "
        f"if printf '%s\\n' \"$held\" | grep -q -- {match}; then echo {shlex.quote(message)} >&2; exit 6; fi; "
    )


def start_helper_snippet(module: str, args: list[str], comment: str, prefix: list[str] | None = None) -> str:
    """Shell, inside a pod's namespace (or on its node, with a ``prefix`` such as ``nsenter ...``): start the
    helper in a session of its own, tagged with ``comment``, and wait (up to 5 s) until it prints ``ready``;
    its output, if it exits instead, and exit 4."""
    log = f"/tmp/chaoskit-{comment.removeprefix(COMMENT_PREFIX)}-$$.log"
    command = [*(prefix or []), "python3", helper_path(module), *args, f"{HELPER_TAG}{comment}"]
    start = shlex.join(["setsid", *command])
    return (
        f"{start} </dev/null >{log} 2>&1 & "
        f"i=0; while [ $i -lt 200 ]; do grep -q '^ready' {log} && break; "
        f"kill -0 $! 2>/dev/null || {{ cat {log}; exit 4; }}; sleep 0.025; i=$((i + 1)); done; "
        f"grep -q '^ready' {log} || {{ cat {log}; exit 4; }}"
    )


def helpers_snippet(comment: str, stop: bool = False) -> str:
    """Shell for a node: print ``helpers=N``, the number of helper processes of this fault; with ``stop``,
    first end them (SIGTERM, which lets them release what they hold; SIGKILL after 3 s), remove their logs,
    and fail if one is left.

    They are found by their ``--tag=`` argument, a whole argv word: the script itself (whose text holds
    the tag inside one long word) is never among them, nor is the grep that looks (its pattern is not the
    word)."""
    pattern = shlex.quote(f"{HELPER_TAG}({literal_ere(comment)})")
    find = f"grep -lzxE -- {pattern} /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3"
    count = f"n=$({find} | wc -l); echo helpers=$n"
    if not stop:
        return count
    return (
        f'p=$({find}); [ -z "$p" ] || kill -TERM $p 2>/dev/null; '
        f'i=0; while [ $i -lt 60 ] && [ -n "$({find})" ]; do sleep 0.05; i=$((i + 1)); done; '
        f'p=$({find}); [ -z "$p" ] || kill -KILL $p 2>/dev/null; sleep 0.1; '
        f"rm -f /tmp/chaoskit-{comment.removeprefix(COMMENT_PREFIX)}-*.log; "
        f'{count}; [ "$n" = 0 ]'
    )


def helpers_running(shell: NodeShell, namespaces: Iterable[Netns], comment: str) -> str:
    """Where helper processes of this fault still run ("" when nowhere), counted from each namespace's
    node. A namespace that is gone holds none: a helper in it would have kept it."""
    running = set()
    for ns, outcome in run_everywhere(shell, [(ns, helpers_snippet(comment)) for ns in namespaces]).items():
        if outcome.gone:
            continue
        found = re.search(r"helpers=(\d+)", outcome.output)
        if outcome.code != 0 or found is None:
            raise NamespaceUnreadable(
                f"the helpers of {comment} could not be counted from {ns}: {tail_of(outcome.output)}"
            )
        if int(found.group(1)):
            running.add(f"{found.group(1)} on node {ns.node}")
    return ", ".join(sorted(running))


# --- qdiscs --------------------------------------------------------------------------------------

SHOW_ROOT = "tc qdisc show dev eth0 root"


def qdisc_handle(fault_id: str) -> str:
    """A qdisc handle (``major:``) derived from a fault id, clear of the kernel's own (0:, 8001: and up)."""
    digest = int(hashlib.sha256(fault_id.encode()).hexdigest()[:8], 16)
    return f"{0x100 + digest % 0x7E00:x}:"


def parse_root_qdisc(output: str) -> tuple[str, str] | None:
    """The kind and handle from ``tc qdisc show dev eth0 root``; None if it shows no qdisc line."""
    words = output.split()
    if len(words) < 3 or words[0] != "qdisc":
        return None
    return words[1], words[2]


def root_qdiscs(shell: NodeShell, namespaces: Iterable[Netns]) -> dict[Netns, tuple[str, str] | None]:
    """The root qdisc of eth0 in each namespace; None where the namespace is gone.

    A listing that fails raises NamespaceUnreadable.
    """
    found: dict[Netns, tuple[str, str] | None] = {}
    for ns, outcome in run_everywhere(shell, [(ns, SHOW_ROOT) for ns in namespaces]).items():
        if outcome.gone:
            found[ns] = None
            continue
        qdisc = parse_root_qdisc(outcome.output)
        if outcome.code != 0 or qdisc is None:
            raise NamespaceUnreadable(f"'{SHOW_ROOT}' failed in {ns} (exit {outcome.code}): {tail_of(outcome.output)}")
        found[ns] = qdisc
    return found


def delete_qdisc_snippet(handle: str) -> str:
    """Delete eth0's root qdisc only while it bears ``handle``, then show what is there now."""
    return f'cur=$({SHOW_ROOT}); case "$cur" in "qdisc "*" {handle} "*) tc qdisc del dev eth0 root;; esac; {SHOW_ROOT}'


NETEM_MISSING = ("Specified qdisc kind is unknown", "Unknown qdisc", "No such file or directory")
"""What tc says when the kernel has no netem (``sch_netem`` neither built in nor loadable)."""


def netem_available(shell: NodeShell, node: str) -> tuple[bool, str]:
    """Whether the kernel has the netem qdisc, tried in a throwaway network namespace of the node.

    Only tc's own "unknown qdisc" answer means no; any other failure of the try
    is an error, not a reason to skip."""
    command = ["unshare", "-n", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"]
    result = shell.run(node, command, timeout=STEP_TIMEOUT)
    detail = result.output.strip()
    if result.code == 0:
        return True, detail
    if any(text in detail for text in NETEM_MISSING):
        return False, detail
    raise ClusterError(f"could not tell whether node {node}'s kernel has netem (exit {result.code}): {tail_of(detail)}")


# --- probes --------------------------------------------------------------------------------------
