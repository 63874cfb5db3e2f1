"""Every wait is bounded: an API server that accepts connections and never answers is a clear error."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaoskit.adapters import kube as kube_adapter
from chaoskit.adapters import shell
from chaoskit.adapters.kube import Kube
from chaoskit.errors import ClusterError, CommandTimedOut


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port on 127.0.0.1 that accepts connections and never sends a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(timeout=2)
    for conn in held:
        conn.close()
    server.close()


def kubeconfig(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters: [{{name: silent, cluster: {{server: "http://127.0.0.1:{port}"}}}}]
users: [{{name: nobody, user: {{}}}}]
contexts: [{{name: silent, context: {{cluster: silent, user: nobody}}}}]
current-context: silent
"""
    )
    return path


def test_a_request_without_a_timeout_of_its_own_is_bounded(tmp_path, silent_server, monkeypatch):
    monkeypatch.setattr(kube_adapter, "REQUEST_TIMEOUT", 0.5)
    with Kube(kubeconfig(tmp_path, silent_server), "silent") as kube:
        started = time.monotonic()
        with pytest.raises(CommandTimedOut, match=r"the API server did not answer GET .*/api/v1/nodes within 0.5 s"):
            kube.nodes()
    assert time.monotonic() - started < 5
    assert issubclass(CommandTimedOut, ClusterError)


def test_a_host_command_states_its_timeout_and_is_killed_past_it():
    started = time.monotonic()
    with pytest.raises(CommandTimedOut, match=r"'sleep 30' did not finish within 0.3 s and was killed"):
        shell.run(["sleep", "30"], timeout=0.3)
    assert time.monotonic() - started < 5
    with pytest.raises(TypeError):
        shell.run(["true"])  # type: ignore[call-arg]  # no default: every caller says how long
