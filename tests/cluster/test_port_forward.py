"""A Service's port on 127.0.0.1 through the API server (kubectl port-forward), on the real cluster: requests
reach the web tier's pods, a bad target is one clear error, and the port is closed when the block ends."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest
from workloads import Web

from chaoskit.errors import SpecError

REQUESTS = 30


def test_a_service_port_forwarded_to_the_host_serves_its_pods_and_closes_with_the_block(
    chaoskit_port_forward: Callable[[str, str, int], AbstractContextManager[int]], web: Web
) -> None:
    started = time.monotonic()
    pods = set()
    with chaoskit_port_forward(web.namespace, "service/web", 80) as port:
        for _ in range(REQUESTS):  # bounded: 30 requests
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                assert response.status == 200
                pods.add(json.loads(response.read())["pod"])
    took = time.monotonic() - started
    # One ready pod behind the Service, as kubectl picks one.
    assert len(pods) == 1 and next(iter(pods)).startswith("web-"), pods
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass  # nothing listens on the port once the block ended
    with (
        pytest.raises(SpecError, match=r"service .*/nothing does not exist"),
        chaoskit_port_forward(web.namespace, "service/nothing", 80),
    ):
        pass
    with (
        pytest.raises(SpecError, match=r"has no port 81 \(it has 80\)"),
        chaoskit_port_forward(web.namespace, "service/web", 81),
    ):
        pass
    print(f"{REQUESTS} requests through a port-forward to {pods}: {took / REQUESTS * 1000:.0f} ms each, bounded")
