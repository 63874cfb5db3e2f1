"""The versions the air-gapped build pins, in one place.

Each cache key is derived from these, so changing one rebuilds exactly what
depends on it.
"""

from __future__ import annotations

from dataclasses import dataclass

KUBERNETES_VERSION = "v1.20.2"
"""The Kubernetes release built from Debian bookworm's source package."""
KUBERNETES_BUILD = "2"
"""Bump when chaoskit's changes to that source change; 2: the node lifecycle controller's NoExecute taint fix."""
KUBERNETES_DEBIAN_SOURCE = "kubernetes/bookworm"
"""The apt source spec of that package (the only Kubernetes source with vendor/ here)."""
GO_ROOT = "/usr/lib/go-1.19"
"""The Go toolchain from Debian's golang-1.19-go that builds it."""
KIND_BASE_SOURCE = "kind=0.27.0-1"
"""The Debian source of kind whose images/base/files make the node's init setup."""
SUITE = "bookworm"
"""The Debian suite every image rootfs is bootstrapped from."""

ETCD_IMAGE = "k8s.gcr.io/etcd:3.4.13-0"
PAUSE_IMAGE = "k8s.gcr.io/pause:3.2"
CONTROL_PLANE_IMAGES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
"""Static binaries that run from an image holding only themselves."""

# Bump when the node or base image recipe changes, so caches rebuild.
IMAGE_RECIPE = "3"

BASE_IMAGE = f"chaoskit/base:{SUITE}-r{IMAGE_RECIPE}"
"""A small Debian image (python3, iptables, dnsmasq) for kube-proxy, etcd and the cluster agents."""
STOCK_NODE_IMAGE = "kindest/node:v1.37.0"
"""kind 0.33's default node image, used where a registry can be reached."""


@dataclass(frozen=True)
class Line:
    """A Kubernetes line chaoskit builds a node image of, and how.

    ``1.20`` is built from Debian bookworm's source package with Debian's
    containerd, runc and etcd (:mod:`.kubernetes`); ``1.37`` and every other
    line from Go modules, the node's runtime included (:mod:`.gomodules`).
    """

    minor: str
    version: str
    build: str
    """Bump when chaoskit's recipe for these binaries changes."""
    registry: str
    """Where kubeadm of this line looks for its images (the names they are preloaded under)."""
    etcd_tag: str
    pause_tag: str
    coredns_tag: str | None
    """The CoreDNS image kubeadm asks for, when the node holds one (None: chaoskit-dns serves DNS)."""

    @property
    def from_modules(self) -> bool:
        return self.minor != "1.20"

    @property
    def pause_image(self) -> str:
        return f"{self.registry}/pause:{self.pause_tag}"

    @property
    def etcd_image(self) -> str:
        return f"{self.registry}/etcd:{self.etcd_tag}"

    @property
    def coredns_image(self) -> str | None:
        return f"{self.registry}/coredns/coredns:{self.coredns_tag}" if self.coredns_tag else None


LINES = {
    "1.20": Line("1.20", KUBERNETES_VERSION, KUBERNETES_BUILD, "k8s.gcr.io", "3.4.13-0", "3.2", None),
    # kubeadm v1.37.2 asks for etcd 3.7.0-0 (its DefaultEtcdVersion): the image under that name holds v3.7.3.
    "1.37": Line("1.37", "v1.37.2", "1", "registry.k8s.io", "3.7.0-0", "3.10.2", "v1.14.6"),
}
"""The Kubernetes lines ``chaoskit cluster up --kubernetes`` builds, by minor version."""
DEFAULT_LINE = "1.37"
"""The line a cluster gets when none is asked for."""


def tag_version(image: str) -> str:
    """The Kubernetes version a chaoskit node image's tag starts with (``chaoskit/node:v1.37.2-b1-...`` ->
    ``v1.37.2``)."""
    return image.split(":", 1)[1].split("-", 1)[0]


def minor_of(version: str) -> str:
    """A Kubernetes version's minor line: ``v1.37.2``, ``1.37.2`` and ``1.37`` give ``1.37``."""
    return ".".join(version.removeprefix("v").split(".")[:2])


def line(minor: str | None) -> Line:
    """The line of ``minor`` (``1.37``, ``v1.37``, ``1.37.2``; None: the default)."""
    from chaoskit.errors import UsageError

    wanted = (minor or DEFAULT_LINE).removeprefix("v")
    found = LINES.get(minor_of(wanted))
    if found is None or (wanted.count(".") == 2 and found.version != f"v{wanted}"):
        have = ", ".join(f"{k} ({v.version})" for k, v in LINES.items())
        raise UsageError(f"chaoskit builds no Kubernetes {minor}: it builds {have}")
    return found
