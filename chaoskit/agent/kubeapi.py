"""A minimal in-cluster Kubernetes API client, standard library only.

The agents run in a small Debian image with nothing but python3, so they
cannot use the official client. They need a few verbs: list a collection,
watch it from a resource version, and get, create, patch and delete one object.
Every request is bounded by a timeout; an answer outside 2xx raises
:class:`ApiError` carrying the HTTP status, so callers can tell "already
exists" (409) and "already gone" (404) from a real failure.
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
REQUEST_TIMEOUT = 15.0
"""Seconds a single get, create or delete may take."""

Obj = dict[str, Any]


class ApiError(Exception):
    """The API server answered with a status outside 2xx."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status}: {reason}")
        self.status = status


class KubeApi:
    """Talks to the API server with the pod's service-account token."""

    def __init__(self) -> None:
        host = os.environ["KUBERNETES_SERVICE_HOST"]
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        self.base = f"https://{host}:{port}"
        self.context = ssl.create_default_context(cafile=f"{SERVICE_ACCOUNT}/ca.crt")

    def _request(
        self, path: str, timeout: float, method: str = "GET", body: Obj | None = None, content_type: str = ""
    ) -> Any:
        with open(f"{SERVICE_ACCOUNT}/token") as handle:
            token = handle.read().strip()
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type or "application/json"
        request = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        try:
            return urllib.request.urlopen(request, context=self.context, timeout=timeout)
        except urllib.error.HTTPError as exc:
            try:
                reason = json.loads(exc.read()).get("message", exc.reason)
            except ValueError:
                reason = exc.reason
            finally:
                exc.close()
            raise ApiError(exc.code, f"{method} {path}: {reason}") from None

    def _call(self, path: str, method: str = "GET", body: Obj | None = None, content_type: str = "") -> Obj:
        with self._request(path, REQUEST_TIMEOUT, method, body, content_type) as response:
            result: Obj = json.load(response)
            return result

    def list(self, path: str) -> Obj:
        """GET a collection, e.g. ``/api/v1/nodes``."""
        with self._request(path, timeout=30) as response:
            result: Obj = json.load(response)
            return result

    def watch(self, path: str, resource_version: str, seconds: int, bookmarks: bool = False) -> Iterator[Obj]:
        """Yield watch events of a collection for at most ``seconds`` (with ``bookmarks``, BOOKMARK events
        too, which carry only a newer resourceVersion)."""
        join = "&" if "?" in path else "?"
        marks = str(bookmarks).lower()
        query = f"{join}watch=1&resourceVersion={resource_version}&timeoutSeconds={seconds}&allowWatchBookmarks={marks}"
        with self._request(path + query, timeout=seconds + 15) as response:
            for line in response:
                if line.strip():
                    yield json.loads(line)

    def get(self, path: str) -> Obj:
        """GET one object, e.g. ``/api/v1/persistentvolumes/pvc-1``."""
        return self._call(path)

    def create(self, path: str, body: Obj) -> Obj:
        """POST ``body`` to a collection; returns the object as created."""
        return self._call(path, "POST", body)

    def patch(self, path: str, body: Obj) -> Obj:
        """Merge-patch one object (RFC 7386: maps are merged, a null removes a key)."""
        return self._call(path, "PATCH", body, "application/merge-patch+json")

    def delete(self, path: str, uid: str | None = None) -> Obj:
        """DELETE one object; with ``uid``, only if it is still that object (else ApiError 409)."""
        options: Obj = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if uid:
            options["preconditions"] = {"uid": uid}
        return self._call(path, "DELETE", options)
