"""DNS faults: chosen names answered wrongly (NXDOMAIN, SERVFAIL, a wrong address, late) for chosen pods.

A responder (:mod:`chaoskit.agent.dnsfault`, a python3 helper copied to the
node) starts in each pod's network namespace, and two ``nat`` rules there
redirect the pod's queries to it (UDP and TCP port 53, carrying the comment
``chaoskit:<fault id>``). It answers the fault's names (and their search-path
expansions) with the fault's answer and forwards every other query to the
pod's own nameserver, from sockets whose mark the rules let pass. Nothing
outside the chosen pods changes: the cluster's DNS and every other pod resolve
as before.

Proof of effect, from inside the pod's namespace (so through the rules, as the
pod's own resolver goes): a lookup of the first name, as the pod's resolver
would first expand it, gives the fault's answer where it gave another before,
and a control name (``kubernetes.default.svc.<cluster domain>``) still
resolves. Undo deletes the rules by comment and ends the responders; proven by
listing the ``nat`` table and the node's processes again.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import shlex
import time
from dataclasses import dataclass
from typing import Any

from chaoskit.adapters.nodes import NodeShell
from chaoskit.errors import FaultNotEffective, SpecError
from chaoskit.faults.base import FaultRecord
from chaoskit.faults.netns import PodProcess, in_namespaces, on_node
from chaoskit.faults.netrules import comment_rules, insert_snippet, refuse_if_held, start_helper_snippet, write_helpers
from chaoskit.faults.network import (
    _check_count,
    _HelperFault,
)
from chaoskit.faults.safety import check_selector

DNS_ANSWERS = ("nxdomain", "servfail", "address", "delay")
RESPONDER = "dnsfault.py"
TABLE = "nat"
NAME = re.compile(r"^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$")


@dataclass(frozen=True)
class DnsSpec:
    """Which names the selected pods get wrong answers for, and which answer."""

    namespace: str
    selector: str
    names: tuple[str, ...]
    """Names to answer wrongly (one alone may be a string): each matches itself and any name that begins
    with it and a dot (search-path expansions: ``backend`` covers ``backend.shop.svc.cluster.local``)."""
    answer: str = "nxdomain"
    """``nxdomain`` (no such name), ``servfail`` (the server failed), ``address`` (``address=`` instead of
    the true one) or ``delay`` (the true answer, ``delay_ms`` late)."""
    address: str | None = None
    delay_ms: int | None = None
    count: int | None = None
    """How many of the matching pods (default: all of them)."""
    seed: int | None = None
    """Seed of the pick when ``count`` is given."""

    def __post_init__(self) -> None:
        check_selector(self.selector)
        _check_count(self.count)
        names = (self.names,) if isinstance(self.names, str) else tuple(self.names)
        if not names:
            raise SpecError("names must name at least one DNS name")
        cleaned = tuple(str(n).lower().rstrip(".") for n in names)
        bad = [n for n in cleaned if not NAME.match(n)]
        if bad:
            raise SpecError(f"not DNS names: {', '.join(map(repr, bad))} (letters, digits, '-', '_' and dots)")
        object.__setattr__(self, "names", cleaned)
        if self.answer not in DNS_ANSWERS:
            raise SpecError(f"answer must be one of {', '.join(DNS_ANSWERS)}, not {self.answer!r}")
        if self.answer == "address":
            try:
                ipaddress.IPv4Address(self.address or "")
            except ValueError:
                raise SpecError(f"answer 'address' needs address= an IPv4 address, not {self.address!r}") from None
        elif self.address is not None:
            raise SpecError(f"address= goes with answer 'address', not {self.answer!r}")
        if self.answer == "delay":
            if self.delay_ms is None or not 0 < self.delay_ms <= 30000:
                raise SpecError(f"answer 'delay' needs delay_ms= in 1-30000, not {self.delay_ms!r}")
        elif self.delay_ms is not None:
            raise SpecError(f"delay_ms= goes with answer 'delay', not {self.answer!r}")


@dataclass(frozen=True)
class Resolver:
    """A pod's resolver configuration, from its own ``/etc/resolv.conf``."""

    nameserver: str
    search: tuple[str, ...]
    ndots: int

    def expand(self, name: str) -> str:
        """The first name the pod's resolver asks for ``name``."""
        if name.count(".") >= self.ndots or not self.search:
            return name
        return f"{name}.{self.search[0]}"

    @property
    def domain(self) -> str:
        for entry in self.search:
            if entry.startswith("svc."):
                return entry[4:]
        return "cluster.local"


def parse_resolv_conf(text: str) -> Resolver:
    servers = []
    search: tuple[str, ...] = ()
    ndots = 1
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith(("#", ";")):
            continue
        if words[0] == "nameserver" and len(words) > 1:
            servers.append(words[1])
        elif words[0] in ("search", "domain"):
            search = tuple(w.rstrip(".") for w in words[1:])
        elif words[0] == "options":
            for option in words[1:]:
                if option.startswith("ndots:") and option[6:].isdigit():
                    ndots = int(option[6:])
    ipv4 = [s for s in servers if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", s)]
    if not ipv4:
        raise SpecError(f"the pod's resolv.conf names no IPv4 nameserver: {servers or 'none'}")
    return Resolver(ipv4[0], search, ndots)


LOOKUP = r"""
import random, socket, struct, sys, time
name, server = sys.argv[1], sys.argv[2]
ident = random.randrange(65536)
query = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0)
query += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack("!HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
start = time.perf_counter()
try:
    s.connect((server, 53))  # as a resolver does: only an answer from the server's address counts
    s.send(query)
    data = s.recv(65535)
except OSError as exc:
    print("lookup error", type(exc).__name__, round((time.perf_counter() - start) * 1000, 1))
    sys.exit(0)
ms = round((time.perf_counter() - start) * 1000, 1)
rcode = data[3] & 15
count = struct.unpack_from("!H", data, 6)[0]
def skip(at):
    while not data[at] & 0xC0 and data[at]:
        at += 1 + data[at]
    return at + (2 if data[at] & 0xC0 else 1)
at = skip(12) + 4
found = []
for _ in range(count):
    at = skip(at)
    rtype, _c, _t, size = struct.unpack_from("!HHIH", data, at)
    if rtype == 1 and size == 4:
        found.append(socket.inet_ntoa(data[at + 10 : at + 14]))
    at += 10 + size
print("lookup", rcode, ms, ",".join(found) or "-")
"""
"""Python, run in a pod's namespace: one A query over UDP; prints ``lookup RCODE MS ADDRESSES``."""


@dataclass(frozen=True)
class Lookup:
    rcode: int | None
    """None: no answer (a timeout)."""
    ms: float
    addresses: tuple[str, ...]

    def __str__(self) -> str:
        if self.rcode is None:
            return f"no answer in {self.ms:.0f} ms"
        what = {0: "NOERROR", 2: "SERVFAIL", 3: "NXDOMAIN"}.get(self.rcode, f"rcode {self.rcode}")
        return f"{what} {','.join(self.addresses) or ''} in {self.ms:.1f} ms".replace("  ", " ")


def lookup(shell: NodeShell, process: PodProcess, name: str, server: str) -> Lookup:
    """Resolve ``name`` from inside the pod's namespace, as its resolver would (UDP to its nameserver)."""
    snippet = f"python3 -c {shlex.quote(LOOKUP)} {shlex.quote(name)} {shlex.quote(server)}"
    (outcome,) = in_namespaces(shell, process.node, [(process.netns, snippet)])
    words = outcome.output.split()
    if outcome.gone or "lookup" not in words:
        raise FaultNotEffective(f"the DNS lookup of {name} from {process.pod} did not run: {outcome.output[-200:]}")
    words = words[words.index("lookup") :]
    if words[1] == "error":
        return Lookup(None, float(words[3]), ())
    addresses = () if words[3] == "-" else tuple(words[3].split(","))
    return Lookup(int(words[1]), float(words[2]), addresses)


def _number(fault_id: str, modulo: int) -> int:
    return int(hashlib.sha256(fault_id.encode()).hexdigest()[:8], 16) % modulo


class DnsFault(_HelperFault):
    helper_table = TABLE
    helpers_are = "DNS responders"
    kind = "dns"
    spec: DnsSpec
    _pods: list[PodProcess]
    _resolvers: dict[PodProcess, Resolver]
    _probe_name: str
    _control: str
    _before: Lookup

    @property
    def port(self) -> int:
        """The responder's port in each pod's namespace (free ones are checked when it binds)."""
        return 20000 + _number(self.fault_id, 20000)

    @property
    def mark(self) -> int:
        """The mark of the responder's own queries, which its rules let pass."""
        return 0x10000 + _number(self.fault_id, 0xFFFF)

    def plan(self) -> list[str]:
        spec = self.spec
        self._pods = self._locate(spec.namespace, spec.selector, spec.count, spec.seed)
        write_helpers(self.cluster.node_shell, RESPONDER, sorted({p.node for p in self._pods}), "a DNS fault")
        self._resolvers = {
            p: parse_resolv_conf(
                on_node(self.cluster.node_shell, p.node, f"cat /proc/{p.pid}/root/etc/resolv.conf", timeout=30)
            )
            for p in self._pods
        }
        first = self._pods[0]
        resolver = self._resolvers[first]
        self._control = f"kubernetes.default.svc.{resolver.domain}"
        if any(self._control == n or self._control.startswith(n + ".") for n in spec.names):
            raise SpecError(f"the fault's names cover {self._control}, the control name that must still resolve")
        control = lookup(self.cluster.node_shell, first, self._control, resolver.nameserver)
        if control.rcode != 0 or not control.addresses:
            raise SpecError(f"nothing to prove the DNS fault against: {self._control} gives {control} already")
        # The proof asks for the first name that does not give the fault's answer yet, as the pod would ask.
        tried = []
        for name in spec.names:
            self._probe_name = resolver.expand(name)
            self._before = lookup(self.cluster.node_shell, first, self._probe_name, resolver.nameserver)
            if self._differs(self._before, before=True):
                break
            tried.append(f"{self._probe_name} gives {self._before}")
        else:
            raise SpecError(
                f"nothing to prove the DNS fault against: from {first.pod}, {'; '.join(tried)} already, the answer "
                "the fault would give; name what the pods resolve (a StatefulSet pod: pod.service)"
            )
        return [p.pod for p in self._pods]

    def _differs(self, result: Lookup, before: bool = False) -> bool:
        """Whether ``result`` is not (before) or is (during) the fault's answer."""
        spec = self.spec
        if spec.answer == "nxdomain":
            hit = result.rcode == 3
        elif spec.answer == "servfail":
            hit = result.rcode == 2
        elif spec.answer == "address":
            hit = result.rcode == 0 and result.addresses == (spec.address,)
        else:
            assert spec.delay_ms is not None
            hit = result.rcode == 0 and (before or result.ms >= self._before.ms + 0.8 * spec.delay_ms)
            return hit
        return not hit if before else hit

    def undo_data(self, targets: list[str]) -> dict[str, Any] | None:
        return {**self._undo(self._pods), "table": TABLE}

    def inject(self, targets: list[str]) -> None:
        spec = self.spec
        args = [f"--port={self.port}", f"--answer={spec.answer}", f"--mark={self.mark:#x}"]
        args += [f"--name={n}" for n in spec.names]
        if spec.address:
            args.append(f"--address={spec.address}")
        if spec.delay_ms:
            args.append(f"--delay-ms={spec.delay_ms}")
        passes = ["-m", "mark", "!", "--mark", f"{self.mark:#x}"]
        to = ["-j", "REDIRECT", "--to-ports", str(self.port)]
        rules = [["OUTPUT", "-p", proto, "--dport", "53", *passes, *to] for proto in ("udp", "tcp")]
        snippets = {}
        for p in self._pods:
            start = start_helper_snippet(
                RESPONDER, [*args, f"--upstream={self._resolvers[p].nameserver}"], self.comment
            )
            snippets[p] = (
                refuse_if_held(TABLE, "dns-", "another DNS fault already answers for this pod")
                + f"{start}; "
                + insert_snippet(rules, self.comment, TABLE)
            )
        outputs = self._apply(snippets, "starting the DNS responder in")
        for p, output in outputs.items():
            if len(comment_rules(output, self.comment)) != len(rules):
                raise FaultNotEffective(f"dns: the redirect rules {self.comment} are not all in {p.netns}")
        self._in_place_mono = time.monotonic()

    def verify(self, targets: list[str], record: FaultRecord) -> str:
        record.effect_mono = self._in_place_mono
        first = self._pods[0]
        server = self._resolvers[first].nameserver
        during = lookup(self.cluster.node_shell, first, self._probe_name, server)
        if not self._differs(during):
            raise FaultNotEffective(
                f"dns {self.spec.answer}: {self._probe_name} gives {during} from {first.pod} with the fault "
                f"in place ({self._before} before)"
            )
        control = lookup(self.cluster.node_shell, first, self._control, server)
        if control.rcode != 0 or not control.addresses:
            raise FaultNotEffective(f"dns: the control name {self._control} gives {control} with the fault in place")
        return (
            f"{self._probe_name} from {first.pod}: {self._before} before, {during} during; "
            f"{self._control} still resolves ({control}); responders in {len(targets)} pod(s)"
        )
