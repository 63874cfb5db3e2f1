"""The whole air-gapped build, from a bare Debian machine to a kind node image.

Steps, each skipped when its cached result exists (see :mod:`.cache`):

1. host packages (Docker Engine, Go 1.19, debootstrap...), Debian's source and
   sid/trixie lists, and a running Docker daemon, with the capability workaround where needed;
2. in parallel: Kubernetes built (the long pole: v1.20.2 from Debian's source
   package, about 10 min on 2 cores; a later line and its node runtime from Go
   modules, :mod:`.gomodules`) and the two Debian root filesystems;
3. the component images and the node image with everything preloaded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial

from chaoskit.adapters.shell import say
from chaoskit.provision import gomodules, host, images, kubernetes
from chaoskit.provision.versions import Line


def build_all(line: Line = images.DEFAULT) -> str:
    """Build whatever is missing for ``line``; return the node image name."""
    started = time.monotonic()
    host.ensure_packages({**host.RUN_PACKAGES, **host.BUILD_PACKAGES}, kind=False, sources=True)
    host.ensure_docker()
    name = images.node_image(line)
    if images.image_exists(name):
        say(f"node image {name}: present")
        return name
    binaries: Callable[[], object] = kubernetes.build
    if line.from_modules:
        binaries = partial(gomodules.build, gomodules.release(line.minor))
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="chaoskit-build") as pool:
        jobs: list[Future[object]] = [
            pool.submit(binaries),
            pool.submit(images.rootfs, "base", images.BASE_PACKAGES),
            pool.submit(images.rootfs, images.node_rootfs(line), images.node_packages(line), True, line),
        ]
        for job in jobs:
            job.result()
    images.build_node_image(line)
    say(f"air-gapped build finished in {time.monotonic() - started:.0f} s")
    return name
