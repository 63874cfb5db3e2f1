"""The Docker CLI, as chaoskit uses it: node containers of kind clusters."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chaoskit.adapters.shell import run
from chaoskit.errors import UsageError

KIND_CLUSTER_LABEL = "io.x-k8s.kind.cluster"
KIND_ROLE_LABEL = "io.x-k8s.kind.role"


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


def daemon_answers() -> bool:
    """Whether a Docker daemon answers on this machine."""
    if shutil.which("docker") is None:
        return False
    return run(["docker", "info", "--format", "{{.ServerVersion}}"], check=False, timeout=20).returncode == 0


def require_daemon() -> None:
    """Fail with what to do when no Docker daemon answers."""
    if shutil.which("docker") is None:
        raise UsageError("Docker is not installed: run 'chaoskit cluster up' as root to install it, or install Docker")
    if not daemon_answers():
        raise UsageError(
            "the Docker daemon is not running: start it (for example 'dockerd &' or "
            "'systemctl start docker'), or run 'chaoskit cluster up', which starts it"
        )


def containers(label: str) -> list[Container]:
    """All containers (running or not) carrying ``label`` (``key`` or ``key=value``)."""
    names = run(["docker", "ps", "-a", "--filter", f"label={label}", "--format", "{{.Names}}"]).stdout.split()
    return [inspect(name) for name in names]


def inspect(name: str) -> Container:
    """Inspect one container."""
    data: dict[str, Any] = json.loads(run(["docker", "inspect", name]).stdout)[0]
    state = data["State"]
    status = "paused" if state.get("Paused") else state["Status"]
    volumes = tuple(m["Name"] for m in data.get("Mounts", []) if m.get("Type") == "volume")
    networks = tuple((data.get("NetworkSettings", {}).get("Networks") or {}).keys())
    started = state.get("StartedAt") or ""
    started_at = 0.0 if started.startswith("0001-") or not started else datetime.fromisoformat(started).timestamp()
    return Container(
        started_at=started_at,
        name=data["Name"].lstrip("/"),
        image=data["Config"]["Image"],
        state=status,
        labels=data["Config"].get("Labels") or {},
        volumes=volumes,
        networks=networks,
    )


def start(name: str) -> None:
    run(["docker", "start", name])


def stop(name: str, timeout: int = 10) -> None:
    run(["docker", "stop", "-t", str(timeout), name])


def pause(name: str) -> None:
    run(["docker", "pause", name])


def unpause(name: str) -> None:
    run(["docker", "unpause", name])


def volume_exists(name: str) -> bool:
    return run(["docker", "volume", "inspect", name], check=False).returncode == 0


def network_exists(name: str) -> bool:
    return run(["docker", "network", "inspect", name], check=False).returncode == 0


def remove_network(name: str) -> None:
    run(["docker", "network", "rm", name], check=False)


def exec_in(name: str, *command: str, input: str | None = None) -> str:
    """Run a command in a container and return its output."""
    args = ["docker", "exec"] + (["-i"] if input is not None else []) + [name, *command]
    return run(args, input=input).stdout
