"""Where expensive artefacts live between runs, keyed by version.

The cache sits outside the repository (``$CHAOSKIT_CACHE``, default
``~/.cache/chaoskit``) so a fresh clone on a warm machine skips the Kubernetes
build and the image builds, while a cold machine rebuilds them. Each artefact
is a directory whose name carries its version; a ``.done`` stamp written last
marks it complete, so an interrupted build is redone rather than trusted.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def root() -> Path:
    """The cache directory, created on first use."""
    base = os.environ.get("CHAOSKIT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "chaoskit"
    )
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def entry(name: str) -> Path:
    """The directory of one cached artefact (``name`` includes its version)."""
    return root() / name


def is_done(path: Path) -> bool:
    """Whether the artefact at ``path`` was completed."""
    return (path / ".done").is_file()


def mark_done(path: Path) -> None:
    """Record that the artefact at ``path`` is complete."""
    path.mkdir(parents=True, exist_ok=True)
    (path / ".done").write_text("ok\n")


def reset(path: Path) -> None:
    """Remove a partial artefact so its step starts clean."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
