"""What a load run is asked to do, and what it hands back.

Everything here is plain data and importable anywhere: nothing imports Locust
or gevent. The spec is checked in full when it is made, so a bad number fails
at the line that wrote it, not in a worker process seconds later.

Load goes to this machine unless told otherwise: the host must be
``http://127.0.0.1:PORT`` or ``http://localhost:PORT`` (a kind NodePort, a
port-forward, a test server), or a host allowed on purpose (the spec's
``allow_targets``, or ``--chaos-allow-target``; see :mod:`chaoskit.targets`),
over HTTP or HTTPS.
Every bound is finite, the run time included, so no spec can make a load that
runs away.
"""

from __future__ import annotations

import math
import os
import string
from dataclasses import dataclass
from urllib.parse import urlsplit

from chaoskit import targets
from chaoskit.errors import ChaoskitError, SpecError

LOCAL_HOSTS = ("127.0.0.1", "localhost")
MAX_USERS = 1000
MAX_WORKERS = 64
MAX_RUN_SECONDS = 3600.0
MAX_WARMUP_SECONDS = 600.0
MAX_WAIT_SECONDS = 60.0
MAX_TIMEOUT_SECONDS = 60.0
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
BODY_FIELDS = ("seq", "user", "uuid")
"""What a body template may hold: ``$seq`` (the user's request number, from 1), ``$user`` (the user's
number, from 1) and ``$uuid`` (a fresh random hex); ``$$`` is a dollar sign."""


class LoadError(ChaoskitError):
    """The load could not run: its worker died, hung or never got a request through."""


class WarmupFailed(LoadError):
    """No request succeeded during the warm-up: the target is down or unreachable before any fault."""


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request as the load worker saw it."""

    started: float
    """Unix time (``time.time()``) when the request was sent."""
    name: str
    """The request's name: its path for the built-in user, the locustfile's name otherwise."""
    latency_ms: float
    """Milliseconds from sending until the response was read or the error raised."""
    ok: bool
    """Whether the request succeeded."""
    error: str | None
    """The kind of failure, such as ``"HTTP 503"`` or ``"ConnectionRefusedError"``; None on success."""
    length: int
    """Bytes of the response body (0 when there was none)."""

    @property
    def ended(self) -> float:
        """Unix time when the request completed."""
        return self.started + self.latency_ms / 1000


def _check_number(name: str, value: float, low: float, high: float, *, low_open: bool, fix: str) -> None:
    """Refuse a value outside (low, high] or [low, high], NaN and booleans included."""
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise SpecError(f"{name} must be a number, not {value!r}; {fix}")
    inside = (low < value if low_open else low <= value) and value <= high
    if not inside:
        bracket = "(" if low_open else "["
        raise SpecError(f"{name} must be in {bracket}{low:g}, {high:g}], not {value!r}; {fix}")


CLUSTER_SUFFIXES = (".svc", ".svc.cluster.local")
"""How a host inside the cluster is written for workers that run there: ``SERVICE.NAMESPACE.svc``."""


CONTROL_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease", "chaoskit-system")
"""Namespaces whose Services are the cluster's own machinery: load goes there only when allowed on purpose."""


def in_cluster_host(hostname: str | None) -> bool:
    """Whether ``hostname`` names a Service of a workload inside the cluster
    (``SERVICE.NAMESPACE.svc[.cluster.local]``): not the API server (``kubernetes.default``) and not a
    Service of :data:`CONTROL_NAMESPACES`."""
    if not hostname:
        return False
    for suffix in CLUSTER_SUFFIXES:
        if hostname.endswith(suffix):
            labels = hostname[: -len(suffix)].split(".")
            if len(labels) != 2 or not all(label and label.replace("-", "").isalnum() for label in labels):
                return False
            service, namespace = labels
            return namespace not in CONTROL_NAMESPACES and (service, namespace) != ("kubernetes", "default")
    return False


def check_host(host: str, allow_targets: tuple[str, ...] = (), in_cluster: bool = False) -> None:
    """Refuse any target but a port on this machine over plain HTTP, or an allowed host over HTTP(S); with
    ``in_cluster`` (the workers are pods), a Service inside the cluster, and nothing on this machine."""
    fix = (
        "give http://127.0.0.1:PORT or http://localhost:PORT, or allow the host on purpose "
        "(allow_targets HOST:PORT in the load spec, or --chaos-allow-target HOST:PORT)"
    )
    if in_cluster:
        fix = (
            "workers in the cluster send to a Service there: give http://SERVICE.NAMESPACE.svc:PORT, "
            "or allow the host on purpose (allow_targets HOST:PORT)"
        )
    if not isinstance(host, str):
        raise SpecError(f"host must be a string, not {host!r}; {fix}")
    try:
        parts = urlsplit(host)
        port = parts.port
    except ValueError as exc:
        raise SpecError(f"host {host!r} is not a valid URL ({exc}); {fix}") from None
    local = parts.hostname in LOCAL_HOSTS and not in_cluster
    if in_cluster and parts.hostname in LOCAL_HOSTS:
        raise SpecError(f"refusing {host!r}: 127.0.0.1 in a worker pod is the pod itself; {fix}")
    inside = in_cluster and in_cluster_host(parts.hostname)  # traffic between pods, inside the cluster
    schemes = ("http",) if local else ("http", "https")
    if parts.scheme not in schemes or parts.username or parts.password:
        raise SpecError(f"refusing to send load to {host!r}: {fix}")
    if port is None or port == 0:
        raise SpecError(f"host {host!r} has no port; {fix}")
    if not local and not inside and not targets.allowed(parts.hostname, port, allow_targets):
        raise SpecError(f"refusing to send load to {host!r}: {parts.hostname}:{port} is not allowed; {fix}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise SpecError(f"host {host!r} must be scheme, host and port only; put URL paths in paths=(...)")


@dataclass(frozen=True)
class LoadSpec:
    """A bounded HTTP load on a local port: who sends what, how fast, for how long."""

    host: str
    """Where the load goes: ``http://127.0.0.1:PORT`` or ``http://localhost:PORT``, or an allowed host
    (``allow_targets``) over HTTP or HTTPS."""
    run_seconds: float
    """How long the measured run lasts after the warm-up, in (0, 3600]; the worker stops by itself then."""
    paths: tuple[str, ...] = ("/",)
    """URL paths the built-in user requests in turn; each request is named by its path (``POST /path``
    for a method other than GET)."""
    method: str = "GET"
    """The built-in user's HTTP method: GET, POST, PUT, PATCH or DELETE."""
    body: str | None = None
    """The built-in user's request body, a template: ``$seq``, ``$user`` and ``$uuid`` are filled in per
    request (``'{"key": "k-$user-$seq"}'``); not with GET."""
    content_type: str = "application/json"
    """The body's Content-Type."""
    locustfile: str | None = None
    """A user's locustfile to take the user class from, instead of the built-in user. Its users are
    paced by ``rate_per_user`` or ``wait_seconds`` when given (replacing the class's own ``wait_time``)."""
    user_class: str | None = None
    """The class to run from ``locustfile``; may be left out when it defines exactly one."""
    users: int = 10
    """Concurrent users, in [1, 1000]."""
    spawn_rate: float = 10.0
    """Users started per second, > 0."""
    warmup_seconds: float = 2.0
    """Load before the measured run starts, in [0, 600]; at least one request must succeed in it."""
    wait_seconds: float = 0.0
    """Think time of each user between requests (a locustfile's users too); 0 sends as fast as the target
    answers, or as the locustfile's own wait_time says."""
    rate_per_user: float | None = None
    """Requests per second per user (Locust's constant_throughput), instead of ``wait_seconds``; a
    locustfile's users get it too, in place of their own wait_time."""
    timeout_seconds: float = 2.0
    """Connect and read timeout per request, in (0, 60]; applies to the built-in user and to
    FastHttpUser classes that set none of their own."""
    workers: int | None = None
    """Locust workers under one master (Locust's own distributed mode), in [1, 64] and at most ``users``:
    the master hands out the users, each worker sends every request's record to the master in its own
    messages, and ``$user`` numbers stay unique across them. None: the session's ``--chaos-load-workers``
    (see :func:`chaoskit.load.runner.set_default_workers`); when that is 1 too, the load runs in one
    process with no master at all."""
    in_cluster: bool = False
    """Run the workers as pods in the cluster (a Deployment on chaoskit's load image, the locustfile in a
    ConfigMap) rather than as processes on this machine; ``host`` is then a Service inside the cluster,
    ``http://SERVICE.NAMESPACE.svc:PORT``. The master stays here, reached through a port-forward to each
    pod. Needs ``workers`` (default 2 when unset)."""
    allow_targets: tuple[str, ...] = ()
    """Hosts beyond this machine the load may go to, each ``HOST`` or ``HOST:PORT``, allowed on purpose
    (a staging ingress); names are matched as written, never resolved."""

    def __post_init__(self) -> None:
        if isinstance(self.allow_targets, str):
            raise SpecError(f"allow_targets must be a tuple, not the string {self.allow_targets!r}")
        object.__setattr__(self, "allow_targets", tuple(self.allow_targets))
        for target in self.allow_targets:
            targets.parse(target)
        if not isinstance(self.in_cluster, bool):
            raise SpecError(f"in_cluster must be true or false, not {self.in_cluster!r}")
        check_host(self.host, self.allow_targets, self.in_cluster)
        if isinstance(self.paths, str):
            raise SpecError(
                f"paths must be a tuple of paths, not the string {self.paths!r}; write paths=({self.paths!r},)"
            )
        object.__setattr__(self, "paths", tuple(self.paths))
        if not self.paths:
            raise SpecError('paths must name at least one URL path, such as ("/",)')
        for path in self.paths:
            if not isinstance(path, str) or not path.startswith("/") or any(c.isspace() for c in path):
                raise SpecError(f"each path must start with / and hold no whitespace, not {path!r}")
        self._check_request()
        if self.user_class is not None and self.locustfile is None:
            raise SpecError(f"user_class={self.user_class!r} needs locustfile=...: the class is looked up in it")
        if self.user_class is not None and not self.user_class.isidentifier():
            raise SpecError(f"user_class must be a class name, not {self.user_class!r}")
        if self.locustfile is not None:
            if not isinstance(self.locustfile, str):
                raise SpecError(f"locustfile must be a path as a string, not {self.locustfile!r}; use str(path)")
            if not os.path.isfile(self.locustfile):
                raise SpecError(f"locustfile {self.locustfile!r} does not exist or is not a file")
        if isinstance(self.users, bool) or not isinstance(self.users, int) or not 1 <= self.users <= MAX_USERS:
            raise SpecError(f"users must be a whole number in [1, {MAX_USERS}], not {self.users!r}")
        if self.workers is not None:
            if isinstance(self.workers, bool) or not isinstance(self.workers, int):
                raise SpecError(f"workers must be a whole number, not {self.workers!r}")
            if not 1 <= self.workers <= min(MAX_WORKERS, self.users):
                raise SpecError(
                    f"workers must be in [1, {MAX_WORKERS}] and at most users ({self.users}), "
                    f"not {self.workers}: each worker runs at least one user"
                )
        _check_number("spawn_rate", self.spawn_rate, 0, MAX_USERS, low_open=True, fix="give users started per second")
        _check_number(
            "run_seconds", self.run_seconds, 0, MAX_RUN_SECONDS, low_open=True, fix="every load run needs an end"
        )
        _check_number(
            "warmup_seconds", self.warmup_seconds, 0, MAX_WARMUP_SECONDS, low_open=False, fix="0 for no warm-up"
        )
        _check_number("wait_seconds", self.wait_seconds, 0, MAX_WAIT_SECONDS, low_open=False, fix="0 for no think time")
        _check_number(
            "timeout_seconds", self.timeout_seconds, 0, MAX_TIMEOUT_SECONDS, low_open=True, fix="2 is the default"
        )
        if self.rate_per_user is not None:
            _check_number(
                "rate_per_user", self.rate_per_user, 0, 10_000, low_open=True, fix="or None for no fixed rate"
            )
            if self.wait_seconds:
                raise SpecError("give wait_seconds or rate_per_user, not both: each sets the pace between requests")

    def _check_request(self) -> None:
        """The built-in user's method and body; a locustfile's user makes its own requests."""
        if self.method not in METHODS:
            raise SpecError(f"method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if self.body is not None:
            if not isinstance(self.body, str):
                raise SpecError(f"body must be a string template, not {self.body!r}; json.dumps(...) a dict first")
            if self.method == "GET":
                raise SpecError("a body needs a method that sends one: give method='POST' (or PUT, PATCH)")
            template = string.Template(self.body)
            if not template.is_valid():
                raise SpecError(f"body template {self.body!r} has a bad $ placeholder; write $$ for a dollar sign")
            unknown = sorted(set(template.get_identifiers()) - set(BODY_FIELDS))
            if unknown:
                raise SpecError(
                    f"body template {self.body!r} uses ${unknown[0]}; it may use only "
                    f"{', '.join('$' + f for f in BODY_FIELDS)} (and $$ for a dollar sign)"
                )
        if self.locustfile is not None:
            builtin = {"paths": self.paths != ("/",), "method": self.method != "GET", "body": self.body is not None}
            given = [name for name, set_ in builtin.items() if set_]
            if given:
                raise SpecError(
                    f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} for the built-in user, and a "
                    f"locustfile's user makes its own requests: drop {' and '.join(given)}, or the locustfile"
                )

    def render_body(self, seq: int, user: int, uuid_hex: str) -> str | None:
        """The body of one request of the built-in user, or None when it sends none."""
        if self.body is None:
            return None
        return string.Template(self.body).substitute(seq=seq, user=user, uuid=uuid_hex)

    @property
    def warmup_grace_seconds(self) -> float:
        """How long past the warm-up a first success may take before the load gives up."""
        return self.timeout_seconds + 1.0


@dataclass(frozen=True)
class StreamStats:
    """How well the record stream from the worker kept up."""

    received: int
    """Records the parent received."""
    locust_requests: int | None
    """Requests Locust itself counted, from the worker's last word; None if it died without one."""
    locust_failures: int | None
    """Failures Locust itself counted, likewise."""
    max_lag_ms: float
    """The longest time from a request's completion to its record reaching the parent."""
    mean_lag_ms: float
    """The mean of the same."""
    bad_lines: int = 0
    """Lines from the worker that could not be read (each may have been a record), a cut-off last line included."""
    first_bad_line: str | None = None
    """The first of them, with why it could not be read."""
    lost_workers: tuple[str, ...] = ()
    """Locust workers lost during the run, each with when and how: their records end there, and the run with
    them (the master stops the load rather than hand their users to the others)."""

    @property
    def kept_up(self) -> bool:
        """Whether every request Locust counted arrived as a record."""
        return self.locust_requests is not None and self.locust_requests == self.received

    @property
    def complete(self) -> bool:
        """Whether the records are the whole run: every request Locust counted arrived and every line was read."""
        return self.kept_up and not self.bad_lines and not self.lost_workers

    @property
    def shortfall(self) -> str | None:
        """What the records are missing, in words, such as "the load stream lost 12 of 10,400 records";
        None when they are complete."""
        if self.complete:
            return None
        if self.lost_workers:
            return f"the load lost {'; '.join(self.lost_workers)}, so its records are not the whole run"
        unreadable = f"sent {self.bad_lines:,} unreadable line{'s' if self.bad_lines != 1 else ''}"
        if self.locust_requests is None:
            text = (
                f"the load worker ended without its own request count, so records lost from the "
                f"{self.received:,} received cannot be ruled out"
            )
            return f"{text}, and the load stream {unreadable}" if self.bad_lines else text
        clauses = []
        if self.locust_requests > self.received:
            clauses.append(f"lost {self.locust_requests - self.received:,} of {self.locust_requests:,} records")
        elif self.locust_requests < self.received:
            clauses.append(f"carried {self.received:,} records where Locust counted {self.locust_requests:,}")
        if self.bad_lines:
            clauses.append(unreadable)
        return "the load stream " + " and ".join(clauses)


@dataclass(frozen=True)
class LoadResult:
    """A finished (or stopped) load run: every record, the marks and the run's times."""

    spec: LoadSpec
    records: tuple[RequestRecord, ...]
    """Every request, warm-up included, in the order they completed."""
    marks: tuple[tuple[float, str], ...]
    """(Unix time, label) for each :meth:`Load.mark`."""
    started_at: float
    """Unix time when the first user started."""
    warmup_ended_at: float
    """Unix time when the warm-up ended and the measured run began."""
    ended_at: float
    """Unix time when the load stopped."""
    stream: StreamStats

    def measured(self) -> list[RequestRecord]:
        """The records of the measured run: those started after the warm-up."""
        return [r for r in self.records if r.started >= self.warmup_ended_at]
