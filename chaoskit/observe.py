"""Recovery measured from the watch API, with client-side monotonic timestamps.

A :class:`RecoveryWatch` follows one workload (a Deployment, StatefulSet,
DaemonSet or ReplicaSet), and the ready endpoints of its Service, in a
background thread each, from the moment it starts. Every change becomes a
timeline event stamped with ``time.monotonic()`` when it arrived, so it lines
up with fault records and load samples.

Recovery is only measured after the loss was *seen*: the workload short of
whole after the fault (after its *last* injection, for a fault that repeats),
then whole again. A check that reads the status right after a kill, before the
controller noticed, would report a system that never broke (a peer tool does
exactly that); here a loss that never shows is reported as such, not as an
instant recovery. Recovery is the moment the workload *and* the Service's
endpoints are both whole again: a Service without its endpoints back is not
serving, whatever the workload's status says.

"Whole" is the workload kind's own notion (see
:func:`~chaoskit.adapters.status.workload_counts`): every desired replica ready
and nothing left to roll out, so a StatefulSet whose pods are all ready but
whose current and update revisions differ is still short. The Service's
endpoints are counted over its EndpointSlices (``discovery.k8s.io/v1``, or
``v1beta1`` on servers before 1.21, decided at the first listing), which is
what current Kubernetes serves; a server that serves no EndpointSlices at all
has the core ``Endpoints`` read instead, and says so once.

Each thread lists its objects, then watches from the listing's version with
the HTTP response in hand (``watch=True, _preload_content=False``), reading
the event lines itself. Leaving the watch shuts down the socket of each
response under way, so a reader blocked on the stream wakes at once instead of
at the server-side timeout. Every list and watch request carries a client-side
timeout, so an API server that stops answering costs a bounded wait and a
retry, never a thread hung for good.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_when_event_set, wait_exponential

from chaoskit.adapters.apiclient import endpoint_slice_list_calls
from chaoskit.adapters.kube import Kube
from chaoskit.adapters.shell import say
from chaoskit.adapters.status import (
    SERVICE_NAME_LABEL,
    WorkloadKind,
    check_workload_kind,
    ready_addresses,
    ready_endpoints,
    workload_counts,
)
from chaoskit.errors import ClusterError

T = TypeVar("T")

LIST_TIMEOUT_S = 10.0
"""Client-side bound on one list request, connection and answer included."""
WATCH_SECONDS = 30
"""Server-side length of one watch (``timeoutSeconds``); then the object is listed and watched afresh."""
WATCH_TIMEOUT_S = (5.0, WATCH_SECONDS + 5.0)
"""Client-side bounds on a watch request: (connect, each read). A server silent past its own timeout is hung."""
PRIME_TIMEOUT_S = 30.0
"""How long entering the watch waits for the first listing of each object."""
JOIN_TIMEOUT_S = 1.0
"""How long leaving the watch waits for each thread once its stream is shut down."""
RECHECK_S = 0.5
"""How often :meth:`RecoveryWatch.wait_until` re-evaluates without a new event (for what the watch cannot see)."""
ENDPOINTS = "endpoints"
"""The source of the Service's events, whichever API they were read from."""
CORE_ENDPOINTS = "v1 Endpoints"
"""The API of the last resort for a Service's endpoints, on servers that serve no EndpointSlices."""

_told_no_slices: set[str] = set()
"""API servers already said to serve no EndpointSlices (said once per server and process)."""


@dataclass(frozen=True)
class Event:
    """One observed change."""

    at: float
    """``time.monotonic()`` when the watch delivered it."""
    source: str
    """The workload's kind in lower case (``deployment``, ``statefulset``, ``daemonset``, ``replicaset``),
    or ``endpoints`` (the Service's)."""
    ready: int
    """Ready replicas (the workload) or ready endpoints (the Service)."""
    desired: int
    """Desired replicas (of the workload, for both)."""
    whole: bool | None = None
    """Whether the workload was whole by its kind's notion; None (the endpoints): ``ready >= desired`` decides."""

    @property
    def short(self) -> bool:
        """Whether this sighting shows a loss: not whole."""
        return not self.whole if self.whole is not None else self.ready < self.desired


@dataclass(frozen=True)
class Recovery:
    """The recovery from a fault, in seconds after the fault's start.

    The loss is looked for from the last injection on (``last_injection``): for
    a fault that repeats, the recovery is the one after its last round.
    """

    loss_seen: float | None
    """When the workload was first seen short of whole after the last injection (None: never)."""
    whole: float | None
    """When the workload was whole again after that loss (None: not yet)."""
    endpoints_loss_seen: float | None
    """Likewise for the Service's ready endpoints (None: never seen lost, or no Service watched)."""
    endpoints_whole: float | None
    """When the ready endpoints were whole again after their loss (None: not yet)."""
    last_injection: float = 0.0
    """The last injection, in seconds after the fault's start; losses are looked for from it on."""

    @property
    def recovered(self) -> bool:
        """Whether the workload is whole again: see :attr:`seconds`."""
        return self.seconds is not None

    @property
    def seconds(self) -> float | None:
        """Fault start to the moment the workload and the endpoints are both whole again.

        None until both are: endpoints seen lost and not yet whole mean no
        recovery, whatever the workload says. Endpoints never seen lost (or
        not watched) leave the workload's time to stand alone.
        """
        if self.whole is None:
            return None
        if self.endpoints_loss_seen is None:
            return self.whole
        if self.endpoints_whole is None:
            return None
        return max(self.whole, self.endpoints_whole)


Counts = tuple[int | None, int, bool | None]
"""(desired or None, ready, whole or None) read from the objects a source follows."""


@dataclass(frozen=True)
class _Api:
    """One way to list and watch what a source follows, and to read its counts from the objects' JSON."""

    version: str
    """The API it reads (``apps/v1``, ``discovery.k8s.io/v1``, ...), for messages."""
    list_call: Callable[..., Any]
    selector: dict[str, str]
    """``field_selector=`` or ``label_selector=`` of the objects."""
    read: Callable[[list[dict[str, Any]]], Counts | None]
    """The counts over every object listed and watched (None: nothing to record)."""


@dataclass(frozen=True)
class _Source:
    """What one thread of a watch follows."""

    kind: str
    """The events' source: the workload's kind in lower case, or ``endpoints``."""
    what: str
    """What it is, for messages: ``StatefulSet shop/web``, ``endpoints of Service shop/web``."""
    apis: tuple[_Api, ...]
    """Tried in this order at the first listing: one the server does not serve (404) gives way to the next."""


@dataclass
class RecoveryWatch:
    """Watches a workload (and optionally its Service's ready endpoints) in the background.

    ``kind`` is ``Deployment``, ``StatefulSet``, ``DaemonSet`` or
    ``ReplicaSet``; anything else is a SpecError naming them.
    """

    kube: Kube
    namespace: str
    name: str
    """The workload's name."""
    service: str | None = None
    """The Service whose ready endpoints must be back too (None: none watched)."""
    kind: WorkloadKind = "Deployment"
    events: list[Event] = field(default_factory=list)
    prime_timeout_s: float = PRIME_TIMEOUT_S
    """How long entering waits for each object's first listing before raising ClusterError."""

    def __post_init__(self) -> None:
        self.kind = check_workload_kind(self.kind)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._desired = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        """Notified (under ``_lock``) with every new event and when the watch stops."""
        self._responses: dict[str, Any] = {}
        """The HTTP response of each watch under way, by source, so leaving can shut its socket."""
        self._primed: dict[str, threading.Event] = {}
        self._failures: dict[str, str] = {}
        """The last error of each source, for the message when priming fails."""
        self._served: dict[str, _Api] = {}
        """The API each source reads, decided at its first listing."""

    @property
    def deployment(self) -> str:
        """The workload's name, by the name it had when only Deployments were watched."""
        return self.name

    @property
    def workload_source(self) -> str:
        """The source of the workload's events: its kind in lower case."""
        return self.kind.lower()

    @property
    def endpoints_api(self) -> str | None:
        """The API the Service's endpoints are read from: ``discovery.k8s.io/v1``, ``discovery.k8s.io/v1beta1``,
        or ``v1 Endpoints`` where the server serves no EndpointSlices (None: no Service, or not listed yet)."""
        api = self._served.get(ENDPOINTS)
        return api.version if api is not None else None

    def _sources(self) -> list[_Source]:
        kind = self.kind

        def read_workload(items: list[dict[str, Any]]) -> Counts | None:
            return workload_counts(items[0], kind) if items else None

        by_name = {"field_selector": f"metadata.name={self.name}"}
        sources = [
            _Source(
                self.workload_source,
                f"{kind} {self.namespace}/{self.name}",
                (_Api("apps/v1", _workload_list_call(self.kube, kind), by_name, read_workload),),
            )
        ]
        if self.service:
            slices = {"label_selector": f"{SERVICE_NAME_LABEL}={self.service}"}
            apis = [_Api(v, call, slices, _slice_counts) for v, call in endpoint_slice_list_calls(self.kube.api_client)]
            core = {"field_selector": f"metadata.name={self.service}"}
            apis.append(_Api(CORE_ENDPOINTS, self.kube.core.list_namespaced_endpoints, core, _endpoint_counts))
            sources.append(_Source(ENDPOINTS, f"endpoints of Service {self.namespace}/{self.service}", tuple(apis)))
        return sources

    def __enter__(self) -> RecoveryWatch:
        try:
            # The workload first: the endpoints' events carry its desired count.
            for source in self._sources():
                self._start(source)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self, source: _Source) -> None:
        primed = self._primed[source.kind] = threading.Event()
        thread = threading.Thread(
            target=self._follow, args=(source,), name=f"chaoskit-watch-{source.what}", daemon=True
        )
        self._threads.append(thread)
        thread.start()
        if not primed.wait(timeout=self.prime_timeout_s):
            failure = self._failures.get(source.kind, "no answer")
            raise ClusterError(
                f"the recovery watch got no listing of the {source.what} within "
                f"{self.prime_timeout_s:g} s ({failure}): is the API server answering?"
            )

    def __exit__(self, *exc: object) -> None:
        with self._changed:
            self._stop.set()
            responses = list(self._responses.values())
            self._changed.notify_all()
        for response in responses:
            _shut(response)
        for thread in self._threads:
            thread.join(timeout=JOIN_TIMEOUT_S)

    def _follow(self, source: _Source) -> None:
        retrying = Retrying(
            stop=stop_when_event_set(self._stop),
            wait=wait_exponential(multiplier=0.2, max=5),
            sleep=self._pause,
            retry=retry_if_exception_type(Exception),
            before_sleep=lambda state: self._note_failure(source, state),
            retry_error_callback=lambda state: None,
        )
        while not self._stop.is_set():
            retrying(self._list_and_watch, source)

    def _pause(self, seconds: float) -> None:
        """Wait between retries; leaving the watch cuts the wait short."""
        self._stop.wait(seconds)

    def _note_failure(self, source: _Source, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        if exc is not None:
            self._failures[source.kind] = _describe(exc)

    def _list(self, source: _Source) -> tuple[_Api, dict[str, Any]]:
        """List what ``source`` follows (at most 10 s, connection and answer); return the API used and the list.

        At the first listing each of the source's APIs is tried in turn until
        one is served; that one is kept for good. Only a 404 (the server does
        not serve that version) moves on: any other error is retried as it is.
        """
        served = self._served.get(source.kind)
        for api in (served,) if served is not None else source.apis:
            try:
                listing = api.list_call(
                    self.namespace, **api.selector, _request_timeout=LIST_TIMEOUT_S, _preload_content=False
                )
            except Exception as exc:
                if served is None and getattr(exc, "status", None) == 404 and api is not source.apis[-1]:
                    continue
                raise
            try:
                body: dict[str, Any] = json.loads(listing.data)
            finally:
                listing.release_conn()
            if served is None:
                self._served[source.kind] = api
                if api.version == CORE_ENDPOINTS and len(source.apis) > 1:
                    self._tell_no_slices(source)
            return api, body
        raise AssertionError("a source has at least one API")

    def _tell_no_slices(self, source: _Source) -> None:
        host = str(getattr(getattr(self.kube.api_client, "configuration", None), "host", ""))
        if host not in _told_no_slices:
            _told_no_slices.add(host)
            tried = " or ".join(api.version for api in source.apis[:-1])
            say(
                f"the API server {host} serves no EndpointSlices ({tried}): the recovery watch reads Services' "
                "ready endpoints from the core v1 Endpoints instead"
            )

    def _list_and_watch(self, source: _Source) -> None:
        """List the objects, then watch them until the server ends the watch (or the watch is left)."""
        if self._stop.is_set():
            return
        api, body = self._list(source)
        objects = {_name(item): item for item in body.get("items") or []}
        self._record(source, api, objects)
        self._primed[source.kind].set()
        response = api.list_call(
            self.namespace,
            **api.selector,
            resource_version=body["metadata"]["resourceVersion"],
            watch=True,
            timeout_seconds=WATCH_SECONDS,  # the server ends the watch after 30 s
            _request_timeout=WATCH_TIMEOUT_S,  # 5 s to connect, 35 s for any one read: a silent server is hung
            _preload_content=False,  # the response itself, so leaving can shut its socket
        )
        with self._lock:
            stopped = self._stop.is_set()
            if not stopped:
                self._responses[source.kind] = response
        try:
            if stopped:
                return
            for line in _lines(response):
                event = json.loads(line)
                change = event.get("type")
                if change in ("ADDED", "MODIFIED"):
                    objects[_name(event["object"])] = event["object"]
                elif change == "DELETED":
                    objects.pop(_name(event["object"]), None)
                elif change == "ERROR":
                    return  # 410 Gone (the listing's version expired): list again
                else:
                    continue  # a BOOKMARK: nothing changed
                self._record(source, api, objects)
        finally:
            with self._lock:
                self._responses.pop(source.kind, None)
            response.close()
            response.release_conn()

    def _record(self, source: _Source, api: _Api, objects: dict[str, dict[str, Any]]) -> None:
        counts = api.read(list(objects.values()))
        if counts is not None:
            self._observe(source.kind, *counts)

    def _observe(self, source: str, desired: int | None, ready: int, whole: bool | None = None) -> None:
        with self._changed:
            if desired is not None:
                self._desired = desired
            last = next((e for e in reversed(self.events) if e.source == source), None)
            changed = (
                last is None
                or last.ready != ready
                or last.whole != whole
                or (desired is not None and last.desired != desired)
            )
            event = Event(time.monotonic(), source, ready, self._desired, whole)
            # A short workload is recorded every time it is seen so: each sighting after a fault is
            # evidence of its loss, even when the count did not move (a repeated kill of a pod not yet ready).
            if changed or event.short:
                self.events.append(event)
                self._changed.notify_all()

    def recovery(self, since: float, last_injection: float | None = None, until: float | None = None) -> Recovery:
        """Recovery after a fault that started at ``since`` and was last injected at ``last_injection``.

        All are ``time.monotonic()``; ``last_injection`` defaults to ``since``
        (a fault injected once). The loss must be seen at or after the last
        injection; every time in the result is in seconds after ``since``.
        ``until``: only what was seen before it counts (the next fault's
        injection, so that its loss is never taken for this one's).
        """
        after = since if last_injection is None else max(since, last_injection)
        with self._lock:
            events = [e for e in self.events if until is None or e.at < until]
        workload = self.workload_source
        loss, whole = _loss_and_whole([e for e in events if e.source == workload], since, after)
        ep_loss, ep_whole = _loss_and_whole([e for e in events if e.source == ENDPOINTS], since, after)
        return Recovery(loss, whole, ep_loss, ep_whole, after - since)

    def wait_until(self, measure: Callable[[], T | None], timeout: float) -> T | None:
        """Evaluate ``measure`` now and after every new event until it gives a value; None after ``timeout``.

        It is also evaluated every :data:`RECHECK_S` without an event, for what
        the watch cannot see (another round of a repeated fault), and once more
        when the watch has been left.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                seen = len(self.events)
            value = measure()
            remaining = deadline - time.monotonic()
            if value is not None or remaining <= 0 or self._stop.is_set():
                return value
            with self._changed:
                if len(self.events) == seen and not self._stop.is_set():  # else: news since measure() ran
                    self._changed.wait(min(RECHECK_S, remaining))

    def wait_recovered(self, since: float, last_injection: float | None = None, timeout: float = 60.0) -> Recovery:
        """Block until :meth:`recovery` says whole again (or ``timeout`` passes); return it."""
        recovered = self.wait_until(lambda: self._if_recovered(since, last_injection), timeout)
        return recovered if recovered is not None else self.recovery(since, last_injection)

    def _if_recovered(self, since: float, last_injection: float | None) -> Recovery | None:
        recovery = self.recovery(since, last_injection)
        return recovery if recovery.recovered else None


_WORKLOAD_LISTS = {
    "Deployment": "list_namespaced_deployment",
    "StatefulSet": "list_namespaced_stateful_set",
    "DaemonSet": "list_namespaced_daemon_set",
    "ReplicaSet": "list_namespaced_replica_set",
}
"""The ``apps/v1`` list call of each kind of workload."""


def _workload_list_call(kube: Kube, kind: WorkloadKind) -> Callable[..., Any]:
    call: Callable[..., Any] = getattr(kube.apps, _WORKLOAD_LISTS[kind])
    return call


def _slice_counts(slices: list[dict[str, Any]]) -> Counts:
    """The ready endpoints over every EndpointSlice of the Service (none: none ready)."""
    return None, ready_endpoints(slices), None


def _endpoint_counts(items: list[dict[str, Any]]) -> Counts | None:
    """The ready addresses of the Service's core Endpoints object (none listed: nothing to record)."""
    return (None, ready_addresses(items[0]), None) if items else None


def _name(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def _describe(exc: BaseException) -> str:
    """An error of a list or watch call on one line: an API error's status and message, else its first line."""
    status = getattr(exc, "status", None)
    if isinstance(status, int) and status:
        message = ""
        with contextlib.suppress(Exception):
            message = json.loads(getattr(exc, "body", None) or "{}").get("message") or ""
        reason = getattr(exc, "reason", None) or ""
        return f"HTTP {status} {reason}{': ' + message if message else ''}".strip()
    first = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {first[0]}" if first else type(exc).__name__


def _lines(response: Any) -> Iterator[bytes]:
    """The lines of a streamed HTTP response (a watch sends one JSON event per line)."""
    rest = b""
    for chunk in response.stream(amt=None, decode_content=False):
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        yield from (line for line in lines if line.strip())


def _shut(response: Any) -> None:
    """Shut down the socket under a streamed response, so the thread blocked reading it wakes now."""
    with contextlib.suppress(Exception):  # already released or closed: nothing is blocked on it
        response.shutdown()  # urllib3 >= 2.3
        return
    with contextlib.suppress(Exception):
        response.connection.sock.shutdown(socket.SHUT_RDWR)


def _loss_and_whole(events: list[Event], since: float, after: float | None = None) -> tuple[float | None, float | None]:
    """When the workload was first seen short at or after ``after``, and whole after that; seconds after ``since``.

    Short and whole are each event's own (:attr:`Event.short`): the workload
    kind's notion of whole, or ready against desired for the endpoints.
    """
    start = since if after is None else after
    loss = whole = None
    for event in events:
        if event.at < start:
            continue
        if loss is None and event.short:
            loss = event.at - since
        elif loss is not None and not event.short:
            whole = event.at - since
            break
    return loss, whole
