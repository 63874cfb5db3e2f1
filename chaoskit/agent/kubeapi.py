"""A minimal in-cluster Kubernetes API client, standard library only.

The agents run in a small Debian image with nothing but python3, so they
cannot use the official client. They need three verbs: list a collection,
watch it from a resource version, and nothing else.
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.request
from collections.abc import Iterator
from typing import Any

SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"

Obj = dict[str, Any]


class KubeApi:
    """Talks to the API server with the pod's service-account token."""

    def __init__(self) -> None:
        host = os.environ["KUBERNETES_SERVICE_HOST"]
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        self.base = f"https://{host}:{port}"
        self.context = ssl.create_default_context(cafile=f"{SERVICE_ACCOUNT}/ca.crt")

    def _request(self, path: str, timeout: float) -> Any:
        with open(f"{SERVICE_ACCOUNT}/token") as handle:
            token = handle.read().strip()
        request = urllib.request.Request(self.base + path, headers={"Authorization": f"Bearer {token}"})
        return urllib.request.urlopen(request, context=self.context, timeout=timeout)

    def list(self, path: str) -> Obj:
        """GET a collection, e.g. ``/api/v1/nodes``."""
        with self._request(path, timeout=30) as response:
            result: Obj = json.load(response)
            return result

    def watch(self, path: str, resource_version: str, seconds: int) -> Iterator[Obj]:
        """Yield watch events of a collection for at most ``seconds``."""
        query = f"?watch=1&resourceVersion={resource_version}&timeoutSeconds={seconds}&allowWatchBookmarks=false"
        with self._request(path + query, timeout=seconds + 15) as response:
            for line in response:
                if line.strip():
                    yield json.loads(line)
