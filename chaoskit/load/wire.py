"""The line format the load worker streams to its parent.

The worker writes to a pipe of its own (not stdout, which a locustfile may
print to), UTF-8, one JSON value per line, in batches a few milliseconds
apart. A line is one of two things:

* a request, as a JSON array ``[started, name, latency_ms, ok, error, length]``:
  ``[1718000000.123456, "/bad", 0.84, false, "HTTP 503", 21]``;
* an event, as a JSON object with an ``"event"`` key: ``started``,
  ``warmup_ended``, ``warmup_failed``, ``worker_lost`` (one of the master's
  Locust workers went), ``stopped`` (with Locust's own request and failure
  counts, to check the stream against) or ``error``.

Arrays rather than objects keep a line short and cheap to write at thousands
of requests a second; the worker formats them by hand with the JSON text of
names and error kinds cached, since both repeat endlessly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from chaoskit.load.spec import RequestRecord

TUNNEL_PORT = 5557
"""The port a worker pod listens on, on its own 127.0.0.1, for the tunnel from the master
(:mod:`chaoskit.load.distributed`); the runner port-forwards to it."""
POD_MASTER_PORT = 5558
"""The port the pod's Locust worker dials as its master, on the pod's 127.0.0.1."""

EVENTS = ("started", "warmup_ended", "warmup_failed", "stopped", "error", "worker_lost")


@dataclass(frozen=True)
class WorkerEvent:
    """A line from the worker about the run rather than a request."""

    kind: str
    """One of :data:`EVENTS`."""
    at: float
    """Unix time when it happened."""
    message: str | None = None
    """What went wrong, for ``warmup_failed`` and ``error``; why it stopped, for ``stopped``."""
    requests: int | None = None
    """Requests Locust counted, on ``stopped``."""
    failures: int | None = None
    """Failures Locust counted, on ``stopped``."""

    def encode(self) -> bytes:
        fields = {"event": self.kind, "at": self.at, "message": self.message}
        if self.requests is not None:
            fields |= {"requests": self.requests, "failures": self.failures}
        return json.dumps(fields).encode() + b"\n"


class RecordEncoder:
    """Formats request lines, caching the JSON text of the strings that repeat."""

    def __init__(self) -> None:
        self._strings: dict[str | None, str] = {None: "null"}

    def _json(self, text: str | None) -> str:
        cached = self._strings.get(text)
        if cached is None:
            if len(self._strings) > 10_000:  # a locustfile naming every request uniquely
                return json.dumps(text)
            cached = self._strings[text] = json.dumps(text)
        return cached

    def encode(self, started: float, name: str, latency_ms: float, ok: bool, error: str | None, length: int) -> str:
        return (
            f"[{started!r},{self._json(name)},{latency_ms!r},{'true' if ok else 'false'},"
            f"{self._json(error)},{length}]\n"
        )


class LineDecoder:
    """Parses lines back, sharing one string object per distinct name and error kind."""

    def __init__(self) -> None:
        self._strings: dict[str, str] = {}

    def _shared(self, text: str) -> str:
        if len(self._strings) > 10_000:
            return self._strings.get(text, text)
        return self._strings.setdefault(text, text)

    def decode(self, line: bytes) -> RequestRecord | WorkerEvent:
        value = json.loads(line)
        if isinstance(value, list):
            started, name, latency_ms, ok, error, length = value
            name = self._shared(name)
            if error is not None:
                error = self._shared(error)
            return RequestRecord(float(started), name, float(latency_ms), bool(ok), error, int(length))
        if isinstance(value, dict) and value.get("event") in EVENTS:
            return WorkerEvent(
                value["event"], float(value["at"]), value.get("message"), value.get("requests"), value.get("failures")
            )
        raise ValueError(f"not a load worker line: {line[:200]!r}")
