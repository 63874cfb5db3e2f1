"""The versions the air-gapped build pins, in one place.

Each cache key is derived from these, so changing one rebuilds exactly what
depends on it.
"""

from __future__ import annotations

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
