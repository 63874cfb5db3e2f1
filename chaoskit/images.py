"""Your own system's images: build a directory into an image, load images into a cluster's nodes.

What ``chaoskit image build`` / ``chaoskit image load`` and the plugin's
``cluster_image`` fixture do, in one place. A directory is built on chaoskit's
base image (its Dockerfile says ``ARG BASE`` then ``FROM $BASE``), so it needs
no registry; the image is then loaded into every node of a kind cluster, where
pods use it with ``imagePullPolicy: IfNotPresent`` (or ``Never``). A node that
already holds the same image (same name, same image ID) is skipped, so loading
twice costs two listings, not two copies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from chaoskit.adapters.shell import say
from chaoskit.cluster.base import Cluster, ClusterSpec
from chaoskit.errors import UsageError

DEFAULT_CLUSTER = "chaoskit"

_REFERENCE = re.compile(
    r"^(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?"  # a registry host, optionally with a port
    r"[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*"  # the repository path
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$"  # the tag
)


@dataclass(frozen=True)
class ImageLoad:
    """What loading one image into a cluster did."""

    image: str
    """The image's name, as a manifest names it."""
    cluster: str
    """The cluster it was loaded into."""
    loaded_into: tuple[str, ...]
    """The nodes it was copied to; empty when every node had it already."""


def image_name(text: str) -> str:
    """``text`` as a full image name: a name without a tag gets ``:latest``, as Docker reads it.

    Raises UsageError for what Docker would not take as an image name.
    """
    if not _REFERENCE.match(text):
        raise UsageError(
            f"{text!r} is not an image name: use lower-case letters, digits, '.', '_', '-' and '/', "
            "then ':TAG' (for example myapp:1 or chaoskit/myapp:dev)"
        )
    last = text.rsplit("/", 1)[-1]
    return text if ":" in last else f"{text}:latest"


def build(directory: Path, tag: str | None = None) -> str:
    """Build the image of ``directory`` (it holds a Dockerfile) and return its name.

    Without ``tag`` the name is ``chaoskit/<dirname>:<digest of its files>``
    and an image already built from the same files is reused.
    """
    from chaoskit.adapters import docker
    from chaoskit.provision import userimages

    if not directory.exists():
        raise UsageError(f"there is no directory {directory}: give the directory that holds your Dockerfile")
    if not directory.is_dir():
        raise UsageError(f"{directory} is not a directory: give the directory that holds your Dockerfile")
    if not (directory / "Dockerfile").is_file():
        raise UsageError(
            f"{directory} has no Dockerfile: write one that starts with 'ARG BASE' and 'FROM $BASE' "
            "(chaoskit's base image, a minimal Debian with python3)"
        )
    name = image_name(tag) if tag is not None else None
    docker.require_daemon()
    return userimages.build_image(directory, name)


def require_local(images: list[str]) -> None:
    """Fail, naming them, unless Docker has every one of ``images``."""
    from chaoskit.adapters import docker, kind

    docker.require_daemon()
    absent = [image for image in images if kind.local_image_id(image) is None]
    if absent:
        raise UsageError(
            f"there is no local image {', '.join(absent)}: build it with 'chaoskit image build DIR' "
            f"or 'docker pull {absent[0]}' first"
        )


def kind_cluster(name: str = DEFAULT_CLUSTER) -> Cluster:
    """A handle on the running kind cluster ``name``, to load images into."""
    from chaoskit.adapters import docker, kind
    from chaoskit.cluster import get_provider

    docker.require_daemon()
    if name not in kind.clusters():
        options = "" if name == DEFAULT_CLUSTER else f" --name {name}"
        raise UsageError(f"there is no kind cluster named {name}: create it with 'chaoskit cluster up{options}'")
    return get_provider("kind", provision=False).attach(ClusterSpec(name=name))


def not_loadable(provider: str, image: str) -> UsageError:
    """The error for images meant for a cluster chaoskit cannot load them into (not kind)."""
    return UsageError(
        f"cannot load {image} into an {provider} cluster: chaoskit loads images only into kind clusters; "
        "push it to a registry the cluster pulls from and use that name in your manifests"
    )


def load(cluster: Cluster, image: str) -> ImageLoad:
    """Load one local image into every node of ``cluster`` that lacks it, saying what it did."""
    name = image_name(image)
    loaded = cluster.load_image(name)
    if loaded:
        say(f"image {name}: loaded into {len(loaded)} node(s) of {cluster.name} ({', '.join(loaded)})")
    else:
        say(f"image {name}: already on every node of {cluster.name}, skipped")
    return ImageLoad(name, cluster.name, loaded)


def is_directory_source(source: str | Path) -> bool:
    """Whether ``cluster_image(source)`` means a directory to build rather than an image name.

    A ``Path`` always does; a string does when it is a directory or is written
    as a path (``/...``, ``./...``, ``../...``, ``~...``), so a path that does
    not exist is reported as a missing directory, not as an unknown image.
    """
    if isinstance(source, Path):
        return True
    return Path(source).expanduser().is_dir() or source.startswith(("/", ".", "~"))


class ClusterImages:
    """The ``cluster_image`` fixture's factory: a directory or an image name in, a loaded image's name out.

    Each directory is built and each image loaded once per instance (once per
    pytest session): the second ``cluster_image(same)`` returns at once.
    """

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._built: dict[Path, str] = {}
        self._loaded: set[str] = set()

    def __call__(self, source: str | Path) -> str:
        if not self.cluster.is_kind:  # before a build that could not be used
            raise not_loadable(self.cluster.provider, str(source))
        if is_directory_source(source):
            directory = Path(source).expanduser().resolve()
            image = self._built.get(directory)
            if image is None:
                image = self._built[directory] = build(directory)
        else:
            image = image_name(str(source))
        if image not in self._loaded:
            load(self.cluster, image)
            self._loaded.add(image)
        return image
