"""Images of the systems under test, built from a user's directory: on chaoskit's base image where the
Dockerfile asks for it (``ARG BASE`` / ``FROM $BASE``), so no registry is needed, and named by a digest of the
directory's files, so an unchanged directory is never rebuilt."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from chaoskit import cache
from chaoskit.adapters.shell import run_logged, say
from chaoskit.errors import ProvisionError
from chaoskit.provision.images import build_base_image, image_exists
from chaoskit.provision.versions import BASE_IMAGE
from chaoskit.state import locks

BUILD_TIMEOUT = 900.0
"""How long one ``docker build`` of a system under test may take."""


def image_tag(directory: Path) -> str:
    """The default name of the image built from ``directory``: ``chaoskit/<dirname>:<digest of its files>``.

    The tag is a digest of every file under the directory (``__pycache__`` aside),
    so an unchanged directory is never rebuilt and a changed one always is. A
    directory name Docker would refuse as a repository (upper case, spaces) is
    lower-cased and its other characters become ``-``.
    """
    directory = directory.resolve()
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(directory)).encode() + b"\0" + path.read_bytes() + b"\0")
    repository = re.sub(r"[^a-z0-9._-]+", "-", directory.name.lower()).strip("._-") or "image"
    return f"chaoskit/{repository}:{digest.hexdigest()[:12]}"


def build_image(directory: Path, tag: str | None = None) -> str:
    """Build the image of ``directory`` on chaoskit's base image; return its name.

    The directory holds a Dockerfile that starts with ``ARG BASE`` and ``FROM
    $BASE``: the build passes ``--build-arg BASE=`` :data:`BASE_IMAGE`, a
    minimal Debian with python3, so it needs no registry. Without ``tag`` the
    name is :func:`image_tag` and an image already built from the same files
    is used as it is; with one, the image is built every time (Docker's layer
    cache makes an unchanged build quick). The build's output goes to its own
    log under the cache's ``logs/``; a failed build raises ProvisionError on
    one line with the log's last lines and its path.
    """
    dockerfile = directory / "Dockerfile"
    if not dockerfile.is_file():
        raise ProvisionError(f"{directory} has no Dockerfile")
    name = tag or image_tag(directory)
    with locks.machine_lock("images", "build"):  # pytest -n workers build the same images at once
        return _build_image(directory, dockerfile, name, tag)


def uses_base(dockerfile: Path) -> bool:
    """Whether the Dockerfile builds on chaoskit's base image (it declares ``ARG BASE``)."""
    return bool(re.search(r"^\s*ARG\s+BASE\b", dockerfile.read_text(errors="replace"), re.MULTILINE | re.IGNORECASE))


def _build_image(directory: Path, dockerfile: Path, name: str, tag: str | None) -> str:
    if tag is None and image_exists(name):
        say(f"image {name}: present (built from the same files)")
        return name
    on_base = uses_base(dockerfile)
    if on_base:  # a Dockerfile FROM python:3.12 or the like needs no base of chaoskit's built first
        build_base_image()
    log = cache.root() / "logs" / f"build-{re.sub(r'[^A-Za-z0-9._-]+', '_', name)}.log"
    log.unlink(missing_ok=True)  # the log holds this build alone, so its tail is this build's
    base = ["--build-arg", f"BASE={BASE_IMAGE}"] if on_base else []
    try:
        run_logged(  # --force-rm: a failed step's container goes too, not only those of steps that passed
            ["docker", "build", "--force-rm", *base, "-t", name, str(directory)],
            log,
            what=f"building image {name} from {directory}",
            env={"DOCKER_BUILDKIT": "0"},
            timeout=BUILD_TIMEOUT,
        )
    except ProvisionError:  # a timeout is a CommandTimedOut, which names the log already
        tail = " | ".join(line.strip()[:200] for line in _tail_lines(log, 3))
        hint = ""
        if not on_base:
            hint = (
                " (where no registry can be reached, start the Dockerfile with 'ARG BASE' and 'FROM $BASE', "
                "chaoskit's base image)"
            )
        raise ProvisionError(f"docker build of {directory} failed: {tail}; full log: {log}{hint}") from None
    return name


def _tail_lines(log: Path, count: int) -> list[str]:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return []
    return lines[-count:]


def build_fixture_image(directory: Path) -> str:
    """Build the image of a system under test in ``fixtures/`` (see :func:`build_image`)."""
    return build_image(directory)
