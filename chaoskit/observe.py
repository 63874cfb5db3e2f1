"""Recovery measured from the watch API, with client-side monotonic timestamps.

A :class:`RecoveryWatch` follows one Deployment's ready count, and the ready
addresses of its Service, in a background thread each, from the moment it
starts. Every change becomes a timeline event stamped with ``time.monotonic()``
when it arrived, so it lines up with fault records and load samples.

Recovery is only measured after the loss was *seen*: the ready count below
the desired count after the fault (after its *last* injection, for a fault
that repeats), then whole again. A check that reads the status right after a
kill, before the controller noticed, would report a system that never broke (a
peer tool does exactly that); here a loss that never shows is reported as
such, not as an instant recovery. Recovery is the moment the Deployment *and*
the Service's endpoints are both whole again: a Service without its endpoints
back is not serving, whatever the Deployment's status says.

Each thread lists its object, then watches from the listing's version with the
HTTP response in hand (``watch=True, _preload_content=False``), reading the
event lines itself. Leaving the watch shuts down the socket of each response
under way, so a reader blocked on the stream wakes at once instead of at the
server-side timeout. Every list and watch request carries a client-side
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

from chaoskit.adapters.kube import Kube
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


@dataclass(frozen=True)
class Event:
    """One observed change."""

    at: float
    """``time.monotonic()`` when the watch delivered it."""
    source: str
    """``deployment`` or ``endpoints``."""
    ready: int
    """Ready replicas (deployment) or ready addresses (endpoints)."""
    desired: int
    """Desired replicas."""


@dataclass(frozen=True)
class Recovery:
    """The recovery from a fault, in seconds after the fault's start.

    The loss is looked for from the last injection on (``last_injection``): for
    a fault that repeats, the recovery is the one after its last round.
    """

    loss_seen: float | None
    """When the ready count was first seen below desired after the last injection (None: never)."""
    whole: float | None
    """When the ready count was whole again after that loss (None: not yet)."""
    endpoints_loss_seen: float | None
    """Likewise for the Service's ready addresses (None: never seen lost, or no Service watched)."""
    endpoints_whole: float | None
    """When the ready addresses were whole again after their loss (None: not yet)."""
    last_injection: float = 0.0
    """The last injection, in seconds after the fault's start; losses are looked for from it on."""

    @property
    def recovered(self) -> bool:
        """Whether the workload is whole again: see :attr:`seconds`."""
        return self.seconds is not None

    @property
    def seconds(self) -> float | None:
        """Fault start to the moment the ready count and the endpoints are both whole again.

        None until both are: endpoints seen lost and not yet whole mean no
        recovery, whatever the Deployment says. Endpoints never seen lost (or
        not watched) leave the Deployment's time to stand alone.
        """
        if self.whole is None:
            return None
        if self.endpoints_loss_seen is None:
            return self.whole
        if self.endpoints_whole is None:
            return None
        return max(self.whole, self.endpoints_whole)


@dataclass(frozen=True)
class _Source:
    """One object a watch follows: how to list it and how to read its counts from its JSON."""

    kind: str
    """``deployment`` or ``endpoints``."""
    name: str
    list_call: Callable[..., Any]
    read: Callable[[dict[str, Any]], tuple[int | None, int]]
    """(desired or None, ready) of one object as the API serves it."""


def _deployment_counts(obj: dict[str, Any]) -> tuple[int | None, int]:
    return (obj.get("spec") or {}).get("replicas") or 0, (obj.get("status") or {}).get("readyReplicas") or 0


def _endpoint_counts(obj: dict[str, Any]) -> tuple[int | None, int]:
    return None, sum(len(s.get("addresses") or []) for s in obj.get("subsets") or [])


@dataclass
class RecoveryWatch:
    """Watches a Deployment (and optionally its Service's endpoints) in the background."""

    kube: Kube
    namespace: str
    deployment: str
    service: str | None = None
    events: list[Event] = field(default_factory=list)
    prime_timeout_s: float = PRIME_TIMEOUT_S
    """How long entering waits for each object's first listing before raising ClusterError."""

    def __post_init__(self) -> None:
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

    def _sources(self) -> list[_Source]:
        sources = [
            _Source("deployment", self.deployment, self.kube.apps.list_namespaced_deployment, _deployment_counts)
        ]
        if self.service:
            sources.append(
                _Source("endpoints", self.service, self.kube.core.list_namespaced_endpoints, _endpoint_counts)
            )
        return sources

    def __enter__(self) -> RecoveryWatch:
        try:
            # The Deployment first: the endpoints' events carry its desired count.
            for source in self._sources():
                self._start(source)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self, source: _Source) -> None:
        primed = self._primed[source.kind] = threading.Event()
        thread = threading.Thread(
            target=self._follow, args=(source,), name=f"chaoskit-watch-{source.kind}-{source.name}", daemon=True
        )
        self._threads.append(thread)
        thread.start()
        if not primed.wait(timeout=self.prime_timeout_s):
            failure = self._failures.get(source.kind, "no answer")
            raise ClusterError(
                f"the recovery watch got no listing of {source.kind} {self.namespace}/{source.name} within "
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

    def _list_and_watch(self, source: _Source) -> None:
        """List the object, then watch it until the server ends the watch (or the watch is left)."""
        if self._stop.is_set():
            return
        selector = f"metadata.name={source.name}"
        listing = source.list_call(  # at most 10 s, connection and answer
            self.namespace, field_selector=selector, _request_timeout=LIST_TIMEOUT_S, _preload_content=False
        )
        try:
            body = json.loads(listing.data)
        finally:
            listing.release_conn()
        for item in body.get("items") or []:
            self._observe(source.kind, source.read(item))
        self._primed[source.kind].set()
        response = source.list_call(
            self.namespace,
            field_selector=selector,
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
                if event.get("type") in ("ADDED", "MODIFIED"):
                    self._observe(source.kind, source.read(event["object"]))
                elif event.get("type") == "ERROR":
                    return  # 410 Gone (the listing's version expired): list again
        finally:
            with self._lock:
                self._responses.pop(source.kind, None)
            response.close()
            response.release_conn()

    def _observe(self, source: str, values: tuple[int | None, int]) -> None:
        desired, ready = values
        with self._changed:
            if desired is not None:
                self._desired = desired
            last = next((e for e in reversed(self.events) if e.source == source), None)
            changed = last is None or last.ready != ready or (desired is not None and last.desired != desired)
            # A short workload is recorded every time it is seen so: each sighting after a fault is
            # evidence of its loss, even when the count did not move (a repeated kill of a pod not yet ready).
            if changed or ready < self._desired:
                self.events.append(Event(time.monotonic(), source, ready, self._desired))
                self._changed.notify_all()

    def recovery(self, since: float, last_injection: float | None = None) -> Recovery:
        """Recovery after a fault that started at ``since`` and was last injected at ``last_injection``.

        Both are ``time.monotonic()``; ``last_injection`` defaults to ``since``
        (a fault injected once). The loss must be seen at or after the last
        injection; every time in the result is in seconds after ``since``.
        """
        after = since if last_injection is None else max(since, last_injection)
        with self._lock:
            events = list(self.events)
        dep_loss, dep_whole = _loss_and_whole([e for e in events if e.source == "deployment"], since, after)
        ep_loss, ep_whole = _loss_and_whole([e for e in events if e.source == "endpoints"], since, after)
        return Recovery(dep_loss, dep_whole, ep_loss, ep_whole, after - since)

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
    """When the workload was first seen short at or after ``after``, and whole after that; seconds after ``since``."""
    start = since if after is None else after
    loss = whole = None
    for event in events:
        if event.at < start:
            continue
        if loss is None and event.ready < event.desired:
            loss = event.at - since
        elif loss is not None and event.ready >= event.desired:
            whole = event.at - since
            break
    return loss, whole
