"""Which hosts chaoskit may send traffic to from this machine: loopback, and what is allowed on purpose.

Load, probes and the Prometheus client go to ``127.0.0.1``/``localhost`` (a
kind NodePort, a port-forward) unless a target is allowed explicitly: by
``--chaos-allow-target HOST[:PORT]`` for a pytest session (:func:`allow`), or
by a spec's own ``allow_targets`` (``LoadSpec(allow_targets=(...))``, the same
key in an experiment file). A target without a port allows every port of that
host; names are compared case-insensitively and never resolved, so
``staging.example`` does not allow the address it resolves to.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from chaoskit.errors import SpecError

LOOPBACK = ("127.0.0.1", "localhost", "::1")

_allowed: set[tuple[str, int | None]] = set()
_lock = threading.Lock()


def parse(target: str) -> tuple[str, int | None]:
    """``HOST[:PORT]`` (``[v6]:PORT`` for an IPv6 address) as (host, port or None); a bad one is a SpecError."""
    text = target.strip()
    fix = "write HOST or HOST:PORT, such as staging.example:8080"
    if not text or "/" in text or "@" in text:
        raise SpecError(f"allowed target {target!r} is not HOST[:PORT]; {fix}")
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":") if rest.startswith(":") else None
        if rest and port_text is None:
            raise SpecError(f"allowed target {target!r} is not HOST[:PORT]; {fix}")
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, None
    port = None
    if port_text is not None:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise SpecError(f"allowed target {target!r} has a bad port; {fix}")
        port = int(port_text)
    if not host:
        raise SpecError(f"allowed target {target!r} has no host; {fix}")
    return host.lower(), port


def allow(targets: Iterable[str]) -> None:
    """Allow ``targets`` (``HOST[:PORT]``) for the rest of this process (the plugin's ``--chaos-allow-target``)."""
    parsed = [parse(t) for t in targets]
    with _lock:
        _allowed.update(parsed)


def granted() -> list[str]:
    """The targets :func:`allow` granted this process, as ``HOST[:PORT]`` (for a child process's spec)."""
    with _lock:
        parsed = sorted(_allowed, key=lambda t: (t[0], t[1] or 0))
    return [(f"[{h}]" if ":" in h else h) + (f":{p}" if p else "") for h, p in parsed]


def allowed(host: str | None, port: int | None, extra: Iterable[str] = ()) -> bool:
    """Whether traffic to ``host:port`` is allowed: loopback, or a target allowed for the process or in ``extra``."""
    if host is None:
        return False
    name = host.lower()
    if name in LOOPBACK:
        return True
    with _lock:
        granted = set(_allowed)
    granted.update(parse(t) for t in extra)
    return any(name == h and (p is None or p == port) for h, p in granted)
