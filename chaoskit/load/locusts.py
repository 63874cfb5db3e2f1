"""What every load process shares, on Locust's side: the users, the record stream, the run's phases.

Imported only by the load's own processes (:mod:`chaoskit.load.worker`,
:mod:`chaoskit.load.distributed`), which import Locust, and so gevent, first:
the functions here import Locust inside themselves, never at import time.

Records are written from Locust's ``request`` event as they happen, collected
and written in batches (every 20 ms, or sooner once 1,000 are waiting), so the
stream keeps up at thousands of requests a second. A failure's kind is
``"HTTP <status>"`` when the server answered with an error status, else the
class name of the exception, unwrapped down to the operating system's error
when a client library wraps it (``ConnectionRefusedError``, ``TimeoutError``).
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from chaoskit.errors import ChaoskitError
from chaoskit.load.spec import LoadSpec
from chaoskit.load.wire import RecordEncoder, WorkerEvent

if TYPE_CHECKING:
    from locust import User

FLUSH_SECONDS = 0.02
FLUSH_RECORDS = 1000

EXIT_OK = 0
EXIT_BAD_CONFIG = 2
EXIT_WARMUP_FAILED = 3
EXIT_WORKER_LOST = 4


def error_kind(exception: BaseException | None, response: Any) -> str | None:
    """A short name for why a request failed; None when it did not."""
    if exception is None:
        return None
    status = getattr(response, "status_code", None)
    if isinstance(status, int) and status >= 400:
        return f"HTTP {status}"
    # Clients wrap the error a reader wants to see: requests three deep (ConnectionError >
    # MaxRetryError.reason > NewConnectionError > ConnectionRefusedError), geventhttpclient
    # in RetriesExceeded.original. Take the builtin OSError at the bottom when there is one.
    seen: set[int] = set()
    cause: BaseException | None = exception
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError) and type(cause).__module__ == "builtins" and type(cause) is not OSError:
            return type(cause).__name__
        wrapped = [cause.__cause__, cause.__context__, getattr(cause, "reason", None), getattr(cause, "original", None)]
        cause = next((w for w in wrapped if isinstance(w, BaseException)), None)
    return type(exception).__name__


def request_fields(
    request_type: str,
    name: str,
    response_time: float,
    response_length: int | None,
    response: Any = None,
    exception: BaseException | None = None,
    start_time: float | None = None,
    **kwargs: Any,
) -> tuple[float, str, float, bool, str | None, int]:
    """A request from Locust's ``request`` event as a record's fields: started, name, latency, ok, error, length."""
    latency_ms = float(response_time or 0.0)
    if start_time is None:  # a custom client firing the event without it
        start_time = time.time() - latency_ms / 1000
    error = error_kind(exception, response)
    return float(start_time), str(name), latency_ms, error is None, error, int(response_length or 0)


class RecordStream:
    """Collects request lines from Locust's request event and writes them to the parent's pipe in batches."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.encoder = RecordEncoder()
        self.pending: list[str] = []
        self.succeeded = 0
        self.failures: collections.Counter[str] = collections.Counter()
        """Failures by kind, for the warm-up's error message."""
        self.broken = False
        """The parent stopped reading: the run must end."""

    def on_request(self, **kwargs: Any) -> None:
        """Locust's ``request`` event: the request as a record."""
        self.add(*request_fields(**kwargs))

    def add(self, started: float, name: str, latency_ms: float, ok: bool, error: str | None, length: int) -> None:
        """One request's record, written with the next batch."""
        if ok:
            self.succeeded += 1
        else:
            self.failures[error or "unknown"] += 1
        self.pending.append(self.encoder.encode(started, name, latency_ms, ok, error, length))
        if len(self.pending) >= FLUSH_RECORDS:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        data = "".join(self.pending).encode()
        self.pending.clear()
        self._write(data)

    def event(self, event: WorkerEvent) -> None:
        """Write an event, after the records before it."""
        self.flush()
        self._write(event.encode())

    def _write(self, data: bytes) -> None:
        if self.broken:
            return
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.fd, view) :]
        except BrokenPipeError:
            self.broken = True

    def top_failures(self) -> str:
        if not self.failures:
            return "no request completed at all"
        counts = ", ".join(f"{kind} x{n}" for kind, n in self.failures.most_common(3))
        return f"{sum(self.failures.values())} failed ({counts})"


def pacing(spec: LoadSpec) -> Any:
    """The spec's wait_time for a user, or None when it sets none (``wait_seconds`` 0, no ``rate_per_user``)."""
    from locust import constant, constant_throughput

    if spec.rate_per_user:
        return constant_throughput(spec.rate_per_user)
    if spec.wait_seconds:
        return constant(spec.wait_seconds)
    return None


def builtin_user(spec: LoadSpec, next_user: Callable[[], int] | None = None) -> type[User]:
    """A FastHttpUser that requests each of the spec's paths in turn, naming each request by its path; each
    user takes its number (``$user``) from ``next_user``, by default 1, 2, 3... (a Locust worker of several
    numbers its users so that no two workers share one)."""
    import itertools
    import uuid

    from locust import FastHttpUser, constant, task

    paths = spec.paths
    method = spec.method
    headers = {"Content-Type": spec.content_type} if spec.body is not None else None
    numbers = itertools.count(1)
    numbering = next_user or (lambda: next(numbers))

    class PathsUser(FastHttpUser):
        host = spec.host
        wait_time = pacing(spec) or constant(0)
        network_timeout = spec.timeout_seconds
        connection_timeout = spec.timeout_seconds

        def on_start(self) -> None:
            self.user_number = numbering()
            self.sent = 0

        @task
        def request_next_path(self) -> None:
            path = paths[self.sent % len(paths)]
            self.sent += 1
            if method == "GET":
                self.client.get(path, name=path)
                return
            body = spec.render_body(self.sent, self.user_number, uuid.uuid4().hex)
            self.client.request(method, path, name=f"{method} {path}", data=body, headers=headers)

    return PathsUser


def user_class(spec: LoadSpec, next_user: Callable[[], int] | None = None) -> type[User]:
    """The spec's user: the built-in one, or its locustfile's."""
    return builtin_user(spec, next_user) if spec.locustfile is None else user_from_locustfile(spec)


def user_from_locustfile(spec: LoadSpec) -> type[User]:
    """The spec's user class from its locustfile; a FastHttpUser with no timeouts of its own gets the spec's."""
    from locust import FastHttpUser
    from locust.util.load_locustfile import load_locustfile

    assert spec.locustfile is not None
    classes, _shapes = load_locustfile(os.path.abspath(spec.locustfile))
    candidates = ", ".join(sorted(classes)) or "none"
    if spec.user_class is not None:
        if spec.user_class not in classes:
            raise ChaoskitError(
                f"{spec.locustfile} has no runnable user class {spec.user_class!r}; its user classes: {candidates}"
            )
        user = classes[spec.user_class]
    elif len(classes) == 1:
        (user,) = classes.values()
    else:
        raise ChaoskitError(
            f"{spec.locustfile} defines {len(classes)} runnable user classes ({candidates}): "
            "choose one with user_class=..."
        )
    if issubclass(user, FastHttpUser):
        own = user.__mro__[: user.__mro__.index(FastHttpUser)]
        if not any("network_timeout" in c.__dict__ or "connection_timeout" in c.__dict__ for c in own):
            user.network_timeout = user.connection_timeout = spec.timeout_seconds
    paced = pacing(spec)
    if paced is not None:
        user.wait_time = paced  # the spec's pace replaces the class's own: what the experiment asked for
    return user


def run_phases(spec: LoadSpec, stream: RecordStream, stop: Any, first_success: Any) -> tuple[int, str]:
    """The warm-up (and its grace for a first success), then the measured run, as events on the stream;
    return the exit status and why the run ended. ``stop`` and ``first_success`` are gevent Events."""
    import gevent  # type: ignore[import-untyped]

    status, reason = EXIT_OK, "run time over"
    stop.wait(spec.warmup_seconds)
    if not stop.is_set():
        gevent.wait([stop, first_success], timeout=spec.warmup_grace_seconds, count=1)
    if stop.is_set():
        reason = "stopped during warm-up"
    elif first_success.is_set():
        warmup_ended = time.time()
        stream.event(WorkerEvent("warmup_ended", warmup_ended))
        if stop.wait(max(0.0, warmup_ended + spec.run_seconds - time.time())):
            reason = "asked to stop"
    else:
        status, reason = EXIT_WARMUP_FAILED, "no success in warm-up"
        message = (
            f"no request to {spec.host} succeeded in the {spec.warmup_seconds:g} s warm-up "
            f"and {spec.warmup_grace_seconds:g} s grace: {stream.top_failures()}"
        )
        stream.event(WorkerEvent("warmup_failed", time.time(), message))
    return status, reason


def at_stdin_eof(then: Callable[[], object]) -> None:
    """In a greenlet: wait until stdin reaches end of file (the parent that holds it is gone), then ``then()``."""
    import sys

    import gevent.os  # type: ignore[import-untyped]

    fd = sys.stdin.fileno()
    gevent.os.make_nonblocking(fd)
    while gevent.os.nb_read(fd, 4096):
        pass
    then()


def flush_forever(stream: RecordStream, stop: Any) -> None:
    """In a greenlet: write the stream's waiting records every :data:`FLUSH_SECONDS`; set ``stop`` (a gevent
    Event) once the parent stops reading."""
    import gevent

    while True:
        gevent.sleep(FLUSH_SECONDS)
        stream.flush()
        if stream.broken:
            stop.set()
