"""HTTP faults at a pod's port: a share of requests aborted with a status, or delayed.

A proxy (:mod:`chaoskit.agent.httpfault`, a python3 helper copied to the
node) starts in each chosen pod's network namespace, and a ``nat
PREROUTING`` rule there redirects the port's incoming connections to it. The
port's established connections are reset once (``ss -K``), so clients that
keep connections alive come back through the proxy instead of bypassing it.

Proof of effect, from each pod's node: of 40-400 requests to the pod's port
(more for a smaller share), about the given share gets the injected status
(marked ``X-Chaoskit-Fault``), and about the delayed share comes the delay
late (within three standard deviations, plus two points; a sample outside is drawn once more, and both are
said in the proof). Undo deletes the rule and ends the proxies (which stop
injecting at once and relay what they hold for a moment); proven by the
``nat`` table and the node's processes.
"""

from __future__ import annotations

import hashlib
import math
import shlex
import statistics
import time
from dataclasses import dataclass
from typing import Any

from chaoskit.adapters.nodes import NodeShell
from chaoskit.errors import FaultNotEffective, SpecError
from chaoskit.faults.base import FaultRecord
from chaoskit.faults.netns import PodProcess, on_node, on_nodes
from chaoskit.faults.netrules import (
    comment_rules,
    helpers_running,
    insert_snippet,
    refuse_if_held,
    rules_in,
    start_helper_snippet,
    write_helpers,
)
from chaoskit.faults.network import (
    _check_count,
    _check_port,
    _HelperFault,
)
from chaoskit.faults.safety import check_selector

PROXY = "httpfault.py"
TABLE = "nat"
MIN_DELAY_MS = 50
MIN_PROBES = 40
MAX_PROBES = 400

REQUESTS = r"""
import socket, sys, time, threading
ip, port, count, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
lock = threading.Lock()
left = list(range(count))
def one():
    start = time.perf_counter()
    try:
        s = socket.create_connection((ip, port), timeout=timeout)
        s.sendall(b"GET / HTTP/1.1\r\nHost: chaoskit\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        status = head.split(" ", 2)[1] if head.startswith("HTTP/") else "none"
        marked = "x-chaoskit-fault:" in head.lower()
        line = f"req {status} {int(marked)} {(time.perf_counter() - start) * 1000:.1f}"
    except OSError as exc:
        line = f"req error {type(exc).__name__} {(time.perf_counter() - start) * 1000:.1f}"
    with lock:
        print(line, flush=True)
def worker():
    while True:
        with lock:
            if not left:
                return
            left.pop()
        one()
threads = [threading.Thread(target=worker) for _ in range(min(10, count))]
for t in threads:
    t.start()
for t in threads:
    t.join()
"""
"""Python for the node: ``count`` requests to the pod, 10 at a time, each printed ``req STATUS MARKED MS``."""


@dataclass(frozen=True)
class HttpSpec:
    """Which pods' port, and what happens to its requests."""

    namespace: str
    selector: str
    port: int
    """The pod's HTTP port (its containerPort)."""
    abort_percent: float = 0.0
    """Share of requests answered by chaoskit with ``status`` instead of the application, in 0-100."""
    status: int = 503
    delay_ms: int = 0
    """How late the delayed requests reach the application."""
    delay_percent: float = 100.0
    """Share of all requests that are delayed, when ``delay_ms`` is given (at most 100 - ``abort_percent``)."""
    count: int | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        check_selector(self.selector)
        _check_port(self.port)
        _check_count(self.count)
        if not 0 <= self.abort_percent <= 100:
            raise SpecError(f"abort_percent must be in 0-100, not {self.abort_percent}")
        if not 400 <= self.status <= 599:
            raise SpecError(f"status must be an HTTP error status, 400-599, not {self.status}")
        if self.delay_ms and not MIN_DELAY_MS <= self.delay_ms <= 60000:
            raise SpecError(
                f"delay_ms must be 0 or in {MIN_DELAY_MS}-60000, not {self.delay_ms} (a shorter delay cannot be "
                "told from a busy node's own jitter, so it could not be proven)"
            )
        if not 0 <= self.delay_percent <= 100:
            raise SpecError(f"delay_percent must be in 0-100, not {self.delay_percent}")
        if self.delay_ms and self.abort_percent + self.delay_percent > 100:
            object.__setattr__(self, "delay_percent", 100 - self.abort_percent)
        if self.delay_ms and not self.delay_percent:
            raise SpecError(
                f"delay_ms {self.delay_ms} delays no request: abort_percent {self.abort_percent:g} leaves none"
            )
        if not self.abort_percent and not self.delay_ms:
            raise SpecError("nothing to inject: give abort_percent, delay_ms, or both")


def _requests(
    shell: NodeShell, process: PodProcess, port: int, count: int, timeout: float = 10.0
) -> list[tuple[str, bool, float]]:
    """``count`` requests from the pod's node to its port (10 at a time): (status, marked by chaoskit, ms)."""
    script = f"python3 -c {shlex.quote(REQUESTS)} {process.ip} {port} {count} {timeout}"
    output = on_node(shell, process.node, script, timeout=(count // 10 + 1) * (timeout + 2) + 10)
    found = []
    for line in output.splitlines():
        words = line.split()
        if len(words) == 4 and words[0] == "req":
            found.append((words[1], words[2] == "1", float(words[3])))
    return found


class OffShare(FaultNotEffective):
    """A sample whose share of requests showing the fault was outside the bounds: its numbers, for the proof
    that draws again (:meth:`HttpFault._judged`)."""

    def __init__(self, seen: int, count: int, percent: float, what: str, where: str) -> None:
        super().__init__(
            f"http: {seen} of {count} requests to {where} {what} ({seen / count:.0%}), not about {percent:g} %"
        )
        self.seen, self.count, self.percent = seen, count, percent

    def numbers(self) -> str:
        return f"{self.seen} of {self.count}, {self.seen / self.count:.0%}, asked {self.percent:g} %"


def in_share(seen: int, count: int, percent: float, what: str, where: str) -> str:
    """``seen`` of ``count`` requests to ``where`` showed ``what``: within three standard deviations (plus 2
    points) of ``percent``, said as a proof; otherwise :class:`OffShare`."""
    share = percent / 100
    slack = 3 * math.sqrt(share * (1 - share) / count) + 0.02
    if abs(seen / count - share) > slack:
        raise OffShare(seen, count, percent, what, where)
    return f"{seen}/{count} {what} ({seen / count:.0%}, asked {percent:g} %)"


class HttpFault(_HelperFault):
    helper_table = TABLE
    helpers_are = "HTTP proxies"
    kind = "http"
    spec: HttpSpec
    _pods: list[PodProcess]
    _before_ms: float

    @property
    def proxy_port(self) -> int:
        """The proxy's port in the pod's network namespace: 61000-65499, above Linux's ephemeral ports (to
        60999), which the pod's own connections and the probes' take (20000-39999 met one: EADDRINUSE on
        33726 in a CI run on 1.37)."""
        return 61000 + int(hashlib.sha256(self.fault_id.encode()).hexdigest()[:8], 16) % 4500

    def plan(self) -> list[str]:
        spec = self.spec
        self._pods = self._locate(spec.namespace, spec.selector, spec.count, spec.seed)
        write_helpers(self.cluster.node_shell, PROXY, sorted({p.node for p in self._pods}), "an HTTP fault")
        before = _requests(self.cluster.node_shell, self._pods[0], spec.port, 5)
        answered = [r for r in before if r[0] != "error" and r[0] != "none"]
        if len(answered) < 5:
            raise SpecError(
                f"{self._pods[0].pod} does not answer HTTP on port {spec.port} before the fault ({before}): "
                "nothing to prove against"
            )
        self._before_ms = statistics.median(r[2] for r in answered)
        return [p.pod for p in self._pods]

    def undo_data(self, targets: list[str]) -> dict[str, Any] | None:
        return {**self._undo(self._pods), "table": TABLE}

    def inject(self, targets: list[str]) -> None:
        spec = self.spec
        args = [f"--port={self.proxy_port}", f"--abort-percent={spec.abort_percent}", f"--status={spec.status}"]
        if spec.delay_ms:
            args += [f"--delay-ms={spec.delay_ms}", f"--delay-percent={spec.delay_percent}"]
        rule = [  # not from loopback: the proxy's own connection to the application
            "PREROUTING",
            "!",
            "-i",
            "lo",
            "-p",
            "tcp",
            "--dport",
            str(spec.port),
            "-j",
            "REDIRECT",
            "--to-ports",
            str(self.proxy_port),
        ]
        reset = f"ss -K state established '( sport = :{spec.port} )' >/dev/null 2>&1 || true"
        snippet = (
            refuse_if_held(TABLE, "http-", "another HTTP fault already holds this pod")
            + f"{start_helper_snippet(PROXY, args, self.comment)}; "
            f"{insert_snippet([rule], self.comment, TABLE)} && {reset}"
        )
        outputs = self._apply({p: snippet for p in self._pods}, "starting the HTTP proxy in")
        for p, output in outputs.items():
            if len(comment_rules(output, self.comment)) != 1:
                raise FaultNotEffective(f"http: the redirect rule {self.comment} is not in {p.netns}")
        self._in_place_mono = time.monotonic()

    def verify(self, targets: list[str], record: FaultRecord) -> str:
        record.effect_mono = self._in_place_mono
        spec = self.spec
        shares = [spec.abort_percent / 100, spec.delay_percent / 100 if spec.delay_ms else 0.0]
        smallest = min(x for x in shares if x > 0)
        count = min(MAX_PROBES, max(MIN_PROBES, math.ceil(20 / smallest)))
        timeout = spec.delay_ms / 1000 + 10
        work = {p.node: [q for q in self._pods if q.node == p.node] for p in self._pods}
        found = on_nodes(
            work,
            lambda node, pods: [(p, _requests(self.cluster.node_shell, p, spec.port, count, timeout)) for p in pods],
        )
        return "; ".join(self._judged(p, results, count, timeout) for pairs in found.values() for p, results in pairs)

    def _judged(self, target: PodProcess, results: list[tuple[str, bool, float]], count: int, timeout: float) -> str:
        """The proof for one pod; a sample outside its share is drawn once more, and both are said. A second
        sample outside too is FaultNotEffective, with what the pod's namespace holds of this fault."""
        try:
            return self._proof(target, results, count)
        except FaultNotEffective as first:
            again = _requests(self.cluster.node_shell, target, self.spec.port, count, timeout)
            try:
                # Said in numbers only: a proof names each pod's share once (callers count those phrases).
                said = first.numbers() if isinstance(first, OffShare) else str(first)
                return f"{self._proof(target, again, count)} [drawn twice: the first sample was {said}]"
            except FaultNotEffective as second:
                rules = rules_in(self.cluster.node_shell, [target.netns], self.comment, TABLE).get(target.netns)
                running = helpers_running(self.cluster.node_shell, [target.netns], self.comment) or "none"
                raise FaultNotEffective(
                    f"{second} (and before it: {first}); {target.netns} holds {len(rules or [])} rule(s) "
                    f"{self.comment} and these proxies of it: {running}"
                ) from None

    def _proof(self, target: PodProcess, results: list[tuple[str, bool, float]], count: int) -> str:
        """What ``count`` requests to one pod showed: the injected status and the delay, each in its share."""
        spec = self.spec
        if len(results) != count:
            raise FaultNotEffective(f"http: {len(results)} of {count} probe requests to {target.pod} ran")
        where = f"{target.pod}:{spec.port}"
        parts = []
        if spec.abort_percent:
            aborted = sum(1 for status, marked, _ in results if marked and status == str(spec.status))
            parts.append(in_share(aborted, count, spec.abort_percent, f"got the injected {spec.status}", where))
        if spec.delay_ms:
            late = self._before_ms + 0.8 * spec.delay_ms
            delayed = sum(1 for status, marked, ms in results if not marked and status != "error" and ms >= late)
            parts.append(in_share(delayed, count, spec.delay_percent, f"came {spec.delay_ms} ms late", where))
        return f"{where} from {target.node}: " + ", ".join(parts)
