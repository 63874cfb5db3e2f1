"""Docker, as chaoskit uses it: the node containers of kind clusters, through the Docker SDK.

Faults act on kind nodes many times a second (locate a pod's process, insert a
rule, read it back, probe), so this adapter talks to the daemon over its socket
with the Docker SDK instead of starting a ``docker`` CLI process per step: an
exec costs a few HTTP requests on a kept-alive connection, not a Go binary's
start-up. Image builds and the provisioning pipeline still use the CLI
(:mod:`chaoskit.provision`).

Every call is bounded: the client's socket timeout is stated by each caller,
and an exec runs under the node's own ``timeout`` as well, so a hung command is
killed on the node rather than left running. A timeout, or a daemon that does
not answer, is a :class:`~chaoskit.errors.ClusterError` naming what hung.
"""

from __future__ import annotations

import math
import os
import select
import shutil
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import docker
import docker.errors
import requests.exceptions
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from chaoskit.errors import ClusterError, UsageError

KIND_CLUSTER_LABEL = "io.x-k8s.kind.cluster"
KIND_ROLE_LABEL = "io.x-k8s.kind.role"
API_TIMEOUT = 30.0
"""Socket timeout of plain API calls (inspect, list, pause); stop and start add their own wait."""
API_VERSION = "1.41"
"""Docker Engine 20.10 (Debian bookworm's) and every later engine serve this version."""


@dataclass(frozen=True)
class Container:
    """One container as ``docker inspect`` reports it."""

    name: str
    """The container name (for kind, the node name)."""
    image: str
    """The image it was created from."""
    state: str
    """running, exited, paused, created..."""
    labels: dict[str, str]
    """Its labels."""
    volumes: tuple[str, ...]
    """Names of the Docker volumes mounted into it."""
    networks: tuple[str, ...]
    """Names of the Docker networks it is attached to."""
    started_at: float
    """When its process last started (Unix time; 0 if never)."""
    exit_code: int = 0
    """The exit status of its last run (137 after a SIGKILL; 0 while it runs)."""
    published: tuple[tuple[str, int, int], ...] = ()
    """Its published TCP ports as (host address, host port, container port), from its configuration
    (so a stopped container has them too)."""


@dataclass(frozen=True)
class ExecResult:
    """What a command run in a container left."""

    code: int
    """Its exit status (124 when the node's ``timeout`` killed it)."""
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


_clients: dict[float, docker.APIClient] = {}
_clients_lock = threading.Lock()


def _api(timeout: float = API_TIMEOUT) -> docker.APIClient:
    """A low-level client with this socket timeout, kept for the process (its connections are pooled and
    thread-safe: faults exec on several nodes at once)."""
    key = timeout
    with _clients_lock:
        api = _clients.get(key)
        if api is None:
            api = docker.APIClient(base_url=_base_url(), version=API_VERSION, timeout=math.ceil(timeout))
            _clients[key] = api
    return api


def _base_url() -> str:
    return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


def _call(what: str, limit: float, call: Any, *args: Any, **kwargs: Any) -> Any:
    """One API call; Docker's own failures become ClusterError naming ``what``."""
    try:
        return call(*args, **kwargs)
    except docker.errors.NotFound:
        raise
    except requests.exceptions.ReadTimeout:
        raise ClusterError(f"Docker did not answer {what} within {limit:.0f} s") from None
    except (requests.exceptions.ConnectionError, docker.errors.DockerException) as exc:
        raise ClusterError(f"Docker failed {what}: {exc}") from None


def daemon_answers(timeout: float = 20) -> bool:
    """Whether a Docker daemon answers on this machine."""
    if shutil.which("docker") is None:
        return False
    try:
        return bool(_api(timeout).ping())
    except (requests.exceptions.RequestException, docker.errors.DockerException):
        return False


def require_daemon() -> None:
    """Fail with what to do when no Docker daemon answers."""
    if shutil.which("docker") is None:
        raise UsageError("Docker is not installed: run 'chaoskit cluster up' as root to install it, or install Docker")
    if not daemon_answers():
        raise UsageError(
            "the Docker daemon is not running: start it (for example 'dockerd &' or "
            "'systemctl start docker'), or run 'chaoskit cluster up', which starts it"
        )


def containers(label: str, timeout: float = API_TIMEOUT) -> list[Container]:
    """All containers (running or not) carrying ``label`` (``key`` or ``key=value``)."""
    api = _api(timeout)
    listed = _call(f"listing containers labelled {label}", timeout, api.containers, all=True, filters={"label": label})
    names = [c["Names"][0].lstrip("/") for c in listed]
    return [c for c in (find(name, timeout) for name in names) if c is not None]


def find(name: str, timeout: float = API_TIMEOUT) -> Container | None:
    """Inspect one container; None if there is no such container."""
    try:
        data: dict[str, Any] = _call(f"inspecting {name}", timeout, _api(timeout).inspect_container, name)
    except docker.errors.NotFound:
        return None
    state = data["State"]
    status = "paused" if state.get("Paused") else state["Status"]
    volumes = tuple(m["Name"] for m in data.get("Mounts", []) if m.get("Type") == "volume")
    networks = tuple((data.get("NetworkSettings", {}).get("Networks") or {}).keys())
    started = state.get("StartedAt") or ""
    published = []
    for key, bindings in ((data.get("HostConfig") or {}).get("PortBindings") or {}).items():
        port, _, protocol = key.partition("/")
        if protocol == "tcp" and port.isdigit():
            for binding in bindings or []:
                if str(binding.get("HostPort", "")).isdigit():
                    published.append((binding.get("HostIp") or "0.0.0.0", int(binding["HostPort"]), int(port)))
    return Container(
        published=tuple(sorted(published)),
        started_at=_timestamp(started),
        exit_code=int(state.get("ExitCode") or 0),
        name=data["Name"].lstrip("/"),
        image=data["Config"]["Image"],
        state=status,
        labels=data["Config"].get("Labels") or {},
        volumes=volumes,
        networks=networks,
    )


def inspect(name: str, timeout: float = API_TIMEOUT) -> Container:
    """Inspect one container that must exist."""
    container = find(name, timeout)
    if container is None:
        raise ClusterError(f"there is no container named {name}")
    return container


def state(name: str, timeout: float = API_TIMEOUT) -> str:
    """The container's state, or ``missing`` when there is no such container."""
    container = find(name, timeout)
    return "missing" if container is None else container.state


def _timestamp(text: str) -> float:
    if not text or text.startswith("0001-"):
        return 0.0
    # Docker gives nanoseconds (2026-12-01T08:45:24.123456789Z); Python parses up to microseconds.
    head, dot, rest = text.rstrip("Z").partition(".")
    fraction = rest[:6] if dot else "0"
    return datetime.fromisoformat(f"{head}.{fraction}+00:00").timestamp()


def start(name: str, timeout: float = API_TIMEOUT) -> None:
    _call(f"starting {name}", timeout, _api(timeout).start, name)


def stop(name: str, grace: int = 10, timeout: float = API_TIMEOUT) -> None:
    """Stop a container: SIGTERM, then SIGKILL after ``grace`` seconds."""
    _call(f"stopping {name}", timeout + grace, _api(timeout + grace).stop, name, timeout=grace)


def kill(name: str, timeout: float = API_TIMEOUT) -> None:
    """SIGKILL a container's init: every process in it dies at once, nothing shuts down."""
    _call(f"killing {name}", timeout, _api(timeout).kill, name, signal="SIGKILL")


def pause(name: str, timeout: float = API_TIMEOUT) -> None:
    _call(f"pausing {name}", timeout, _api(timeout).pause, name)


def unpause(name: str, timeout: float = API_TIMEOUT) -> None:
    _call(f"unpausing {name}", timeout, _api(timeout).unpause, name)


def volume_exists(name: str, timeout: float = API_TIMEOUT) -> bool:
    return _exists(f"volume {name}", timeout, _api(timeout).inspect_volume, name)


def network_exists(name: str, timeout: float = API_TIMEOUT) -> bool:
    return _exists(f"network {name}", timeout, _api(timeout).inspect_network, name)


def _exists(what: str, timeout: float, inspect_call: Any, name: str) -> bool:
    try:
        _call(f"inspecting {what}", timeout, inspect_call, name)
    except docker.errors.NotFound:
        return False
    return True


def remove_network(name: str, timeout: float = API_TIMEOUT) -> None:
    try:
        _call(f"removing network {name}", timeout, _api(timeout).remove_network, name)
    except docker.errors.NotFound:
        pass


def run_in(name: str, command: list[str], timeout: float) -> ExecResult:
    """Run ``command`` in a running container, killed by the container's ``timeout`` after ``timeout`` s.

    The output is read from the exec's socket against a deadline of our own
    (the SDK's reader polls without one: a node paused while the command runs
    would hang it forever, freezing the node's ``timeout`` too). Raises
    ClusterError when the container is missing, not running (a paused node
    cannot exec), Docker does not answer, or the deadline passes; a command that
    ran and failed is returned with its exit status, for the caller to judge.
    """
    api = _api(timeout + 10)
    bounded = ["timeout", "-k", "2", f"{timeout:g}", *command]
    what = f"'{' '.join(command)[:80]}' in {name}"
    try:
        created = _call(f"starting {what}", timeout, api.exec_create, name, bounded)
        raw = _call(f"running {what}", timeout, api.exec_start, created["Id"], socket=True)
        out, err = _demux(_read_until_eof(raw, time.monotonic() + timeout + 3, what))
        code = _exit_code(api, created["Id"], what)
    except docker.errors.NotFound:
        raise ClusterError(f"there is no container {name} to run {what}") from None
    except docker.errors.APIError as exc:  # 409: the container is paused or stopped
        raise ClusterError(f"cannot run {what}: {exc.explanation or exc}") from None
    return ExecResult(code, out.decode(errors="replace"), err.decode(errors="replace"))


def _read_until_eof(raw: Any, deadline: float, what: str) -> bytes:
    sock = getattr(raw, "_sock", raw)
    data = bytearray()
    try:
        while True:
            remaining = deadline - time.monotonic()
            ready = select.select([sock], [], [], max(0.0, remaining))[0] if remaining > 0 else []
            if not ready:
                raise ClusterError(f"{what} did not finish within its deadline (is the node paused or hung?)")
            chunk = sock.recv(1 << 16)
            if not chunk:
                return bytes(data)
            data += chunk
    finally:
        raw.close()
        sock.close()  # an upgraded connection is never reused: close it, not just its file object


def _demux(stream: bytes) -> tuple[bytes, bytes]:
    """Split Docker's multiplexed exec stream (8-byte frame headers: stream, 0, 0, 0, size) into stdout, stderr."""
    out, err = bytearray(), bytearray()
    at = 0
    while at + 8 <= len(stream):
        size = int.from_bytes(stream[at + 4 : at + 8], "big")
        (err if stream[at] == 2 else out).extend(stream[at + 8 : at + 8 + size])
        at += 8 + size
    return bytes(out), bytes(err)


def _exit_code(api: docker.APIClient, exec_id: str, what: str) -> int:
    """The exec's exit status; Docker may report it a moment after the stream ended, so ask until it has."""
    retrying = Retrying(
        stop=stop_after_delay(5),
        wait=wait_fixed(0.02),
        retry=retry_if_result(lambda state: state.get("Running") or state.get("ExitCode") is None),
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else {},
    )
    state: dict[str, Any] = retrying(_call, f"reading the status of {what}", API_TIMEOUT, api.exec_inspect, exec_id)
    code = state.get("ExitCode")
    if code is None:
        raise ClusterError(f"Docker gave no exit status for {what}")
    return int(code)
