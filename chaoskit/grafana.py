"""Each fault as an annotation in Grafana, where SREs look: a region from its injection to its undo.

Through Grafana's HTTP API (``POST /api/annotations`` once the fault is injected and its effect seen, then
``PATCH /api/annotations/ID`` with the end once its undo is over), tagged ``chaoskit``, the fault's kind and
``fault:<id>``, the text saying what it hit and what was seen. The token is read from the environment
(``CHAOSKIT_GRAFANA_TOKEN``, a service account token with the Annotation Writer role), never from a command
line. The URL is held to the same rule as load and Prometheus: ``127.0.0.1``/``localhost`` (a port-forward),
or a host allowed on purpose (``--chaos-allow-target``, ``--allow-target``).

An annotation is a side effect for people, not a step of the fault: Grafana down, a refused token or a slow
answer (each request bounded by :data:`TIMEOUT`) costs one warning line and the fault goes on, undone as
ever. Used by ``--chaos-grafana-url`` (pytest) and ``chaoskit run --grafana-url``.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from chaoskit import targets
from chaoskit.adapters.shell import warn
from chaoskit.errors import SpecError
from chaoskit.faults.base import FaultHooks, FaultRecord

TOKEN_ENV = "CHAOSKIT_GRAFANA_TOKEN"
"""Where the API token comes from (sent as ``Authorization: Bearer``); without it, requests go unauthenticated."""
TIMEOUT = 5.0
"""Seconds one request to Grafana may take."""


def check_url(url: str) -> str:
    """``url`` without a trailing slash, when it is HTTP(S) to this machine or an allowed host; else SpecError."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SpecError(f"Grafana URL {url!r} is not http(s)://HOST[:PORT]; give one such as http://127.0.0.1:3000")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if not targets.allowed(parts.hostname, port):
        raise SpecError(
            f"refusing to send annotations to {url!r}: {parts.hostname}:{port} is not allowed; port-forward Grafana "
            "to 127.0.0.1, or allow the host on purpose (--chaos-allow-target / --allow-target HOST:PORT)"
        )
    return url.rstrip("/")


def _annotation(record: FaultRecord, injected_at: float, outcome: str | None = None) -> dict[str, Any]:
    """A fault's annotation as Grafana takes it: from its injection, its tags, and what it hit and showed."""
    text = f"chaoskit {record.kind} {record.fault_id} on {', '.join(record.targets) or 'nothing'}: "
    text += record.effect or "injected"
    return {
        "time": int(injected_at * 1000),
        "tags": ["chaoskit", record.kind, f"fault:{record.fault_id}"],
        "text": f"{text}; {outcome}" if outcome else text,
    }


class GrafanaAnnotations(FaultHooks):
    """Fault hooks that annotate Grafana; ``then`` (another :class:`FaultHooks`) is called first at each step."""

    def __init__(self, url: str, then: FaultHooks | None = None, token: str | None = None) -> None:
        self.url = check_url(url)
        self.then = then or FaultHooks()
        self.token = token if token is not None else os.environ.get(TOKEN_ENV)
        self.ids: dict[str, int] = {}
        """The annotation of each fault injected, by fault id."""

    def planned(self, record: FaultRecord) -> str | None:
        return self.then.planned(record)

    def injected(self, record: FaultRecord) -> None:
        self.then.injected(record)
        if record.dry_run or record.injected_at is None:
            return
        answer = self._send("POST", "/api/annotations", _annotation(record, record.injected_at))
        if answer is not None and isinstance(answer.get("id"), int):
            self.ids[record.fault_id] = answer["id"]

    def undone(self, record: FaultRecord) -> None:
        self.then.undone(record)
        annotation = self.ids.pop(record.fault_id, None)
        if annotation is None or record.injected_at is None:
            return
        end = record.reverted_at or record.injected_at
        if not record.undoable:
            outcome = "ended (nothing to undo)"
        else:
            outcome = "undone, proven" if record.reverted else f"NOT undone: {record.undo_error}"
        body = _annotation(record, record.injected_at, outcome)
        self._send("PATCH", f"/api/annotations/{annotation}", {**body, "timeEnd": int(end * 1000)})

    def _send(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                answer = json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            warn(f"Grafana refused the annotation ({method} {path}: HTTP {exc.code} {exc.reason}); the fault goes on")
            return None
        except (OSError, ValueError) as exc:
            warn(f"no annotation in Grafana at {self.url} ({method} {path}: {exc}); the fault goes on")
            return None
        return answer if isinstance(answer, dict) else None
