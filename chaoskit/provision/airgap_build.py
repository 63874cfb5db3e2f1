"""The whole air-gapped build, from a bare Debian machine to a kind node image.

Steps, each skipped when its cached result exists (see :mod:`.cache`):

1. host packages (Docker Engine, kind from sid, Go 1.19, debootstrap...) and a
   running Docker daemon, with the capability workaround where needed;
2. in parallel: Kubernetes v1.20.2 built from Debian's source package (the
   long pole, about 10 min on 2 cores) and the two Debian root filesystems;
3. the component images and the node image with everything preloaded.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from chaoskit.adapters.shell import say
from chaoskit.provision import host, images, kubernetes


def build_all() -> str:
    """Build whatever is missing; return the node image name."""
    started = time.monotonic()
    host.ensure_packages()
    host.ensure_docker()
    name = images.node_image()
    if images.image_exists(name):
        say(f"node image {name}: present")
        return name
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="chaoskit-build") as pool:
        jobs = [
            pool.submit(kubernetes.build),
            pool.submit(images.rootfs, "base", images.BASE_PACKAGES),
            pool.submit(images.rootfs, images.NODE_ROOTFS, images.NODE_PACKAGES, True),
        ]
        for job in jobs:
            job.result()
    images.build_node_image()
    say(f"air-gapped build finished in {time.monotonic() - started:.0f} s")
    return name
