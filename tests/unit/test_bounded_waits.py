"""Every wait is bounded: an API server that accepts connections and never answers is a clear error."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaoskit.adapters import docker, shell
from chaoskit.adapters import kube as kube_adapter
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


@pytest.fixture
def stalling_docker(tmp_path, monkeypatch) -> Iterator[None]:
    """A Docker daemon on a unix socket that creates an exec, starts it, and then never sends a byte
    (as a node paused while its command runs would)."""
    path = tmp_path / "docker.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(8)
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    def answer(conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while request := conn.recv(65536):
                head = request.split(b"\r\n", 1)[0]
                if b"/exec/e1/start" in head:
                    conn.sendall(b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
                                 b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n")  # fmt: skip
                    return  # and then silence, the connection held open
                body = b'{"Id": "e1"}'
                conn.sendall(
                    b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: "
                    + str(len(body)).encode()
                    + b"\r\n\r\n"
                    + body
                )

    threading.Thread(target=serve, daemon=True).start()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    monkeypatch.setattr(docker, "_clients", {})
    yield
    for api in docker._clients.values():
        api.close()
    server.close()
    for conn in held:
        conn.close()


def test_an_exec_whose_output_never_comes_is_bounded(stalling_docker):
    started = time.monotonic()
    with pytest.raises(ClusterError, match=r"'iptables-save' in chaoskit-worker did not finish within its deadline"):
        docker.run_in("chaoskit-worker", ["iptables-save"], timeout=0.5)
    assert time.monotonic() - started < 10
