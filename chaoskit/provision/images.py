"""Building every image the air-gapped cluster needs, from Debian packages.

No image can be pulled here, so each one is made locally:

* two Debian root filesystems from ``debootstrap``: the kind *node* (systemd,
  containerd, runc, CNI plugins and kind's own init files) and a small *base*
  (python3, iptables, dnsmasq) that kube-proxy, etcd and chaoskit's agents
  run on;
* the control-plane images kubeadm 1.20 asks for, under the exact names it
  asks for (``k8s.gcr.io/...``), from the binaries built by
  :mod:`chaoskit.provision.kubernetes` and Debian's ``etcd-server``;
* the node image itself, with all of the above preloaded into its containerd
  so no node ever tries to pull.

Three traps of this machine are handled in the node image (see
``shared/docs/airgap-kind.md``): a runc wrapper that drops ``CAP_SYS_RESOURCE``
where the bounding set lacks it (it is a no-op elsewhere), containerd's
``restrict_oom_score_adj``, and kind's entrypoint without the self bind mount
of the kubelet cgroup that kubelet 1.20 mistakes for the controller's mount.

The rootfs steps do not need the Kubernetes binaries (they are copied in when
the node image is assembled), so they run while Kubernetes is still building.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from chaoskit import cache
from chaoskit.adapters.shell import run, run_logged, say
from chaoskit.errors import ProvisionError
from chaoskit.provision import gomodules, host, kubernetes
from chaoskit.provision.debs import deb_binary, tag_safe
from chaoskit.provision.versions import (
    BASE_IMAGE,
    CONTROL_PLANE_IMAGES,
    DEFAULT_LINE,
    IMAGE_RECIPE,
    KIND_BASE_SOURCE,
    LINES,
    SUITE,
    Line,
    tag_version,
)

MIRROR = "http://deb.debian.org/debian"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

NODE_PACKAGES = (
    "systemd systemd-sysv dbus conntrack iptables nftables iproute2 ethtool util-linux mount "
    "kmod libseccomp2 pigz bash ca-certificates curl jq procps containerd runc "
    "containernetworking-plugins socat e2fsprogs python3"
).split()
"""The node's packages; python3 runs user-space fault helpers in pods' namespaces (the latency delayer)."""
BASE_PACKAGES = "iptables nftables conntrack iproute2 python3 dnsmasq-base ca-certificates procps".split()
KIND_MODULE = "sigs.k8s.io/kind@v0.33.0"
"""The kind module whose images/base/files make the init setup of nodes built from Go modules: the host's kind."""
PROMETHEUS_RELEASE = "trixie"
"""The Debian release whose ``prometheus`` package chaoskit runs (see :func:`build_prometheus_image`)."""


INJECTOR_MODULES = ("injector.py", "actions.py")
"""Agent modules that run in the injector image only, not in the node image's agent image."""
COPIED_MODULES = ("nfqdelay.py", "dnsfault.py", "stress.py", "helperlib.py", "httpfault.py")
"""Agent modules in no image: a fault copies them to the node (or the agent's pod) when it needs them."""
RUNNER_MODULES = ("records.py",)
"""Agent modules the runner alone uses (the record's definition, which it installs): in no image."""
INJECTOR_PACKAGES = [*BASE_PACKAGES, "socat", "util-linux"]
"""The injector's tools: those of the base image, and socat for the bandwidth probe."""


def _agent_sources(injector: bool = False) -> dict[str, str]:
    agent = resources.files("chaoskit.agent")
    return {
        f"chaoskit/agent/{p.name}": p.read_text()
        for p in agent.iterdir()
        if p.name.endswith(".py")
        and p.name not in COPIED_MODULES + RUNNER_MODULES
        and (injector or p.name not in INJECTOR_MODULES)
    }


def agent_image() -> str:
    """The agent image's name; its tag is a digest of the agent's code, so edits rebuild it."""
    digest = hashlib.sha256()
    for name, text in sorted(_agent_sources().items()):
        digest.update(name.encode() + b"\0" + text.encode() + b"\0")
    return f"chaoskit/agent:r{IMAGE_RECIPE}-{digest.hexdigest()[:12]}"


def packages_digest(packages: list[str]) -> str:
    """A short digest of a package list: rootfs caches and image tags carry it, so a list's edit rebuilds."""
    return hashlib.sha256(" ".join(packages).encode()).hexdigest()[:8]


MODULE_RUNTIME = ("containerd", "runc", "containernetworking-plugins")
"""Debian's runtime packages, left out of a node whose containerd, runc and CNI plugins are built from Go
modules: a second runc would be the one the runc wrapper finds first."""
DEFAULT = LINES[DEFAULT_LINE]


def node_packages(line: Line = DEFAULT) -> list[str]:
    """The node rootfs's Debian packages for ``line``."""
    return [p for p in NODE_PACKAGES if p not in MODULE_RUNTIME] if line.from_modules else list(NODE_PACKAGES)


def node_rootfs(line: Line = DEFAULT) -> str:
    """The node rootfs's cache name: a new package list, or another line's init files, bootstraps a new one."""
    suffix = f"-k{line.minor}" if line.from_modules else ""
    return f"node-{packages_digest(node_packages(line))}{suffix}"


def node_image(line: Line = DEFAULT) -> str:
    """The air-gapped node image's name (it embeds the agent image and the node's packages, hence its tag)."""
    agent, packages = agent_image().rsplit("-", 1)[1], packages_digest(node_packages(line))
    return f"chaoskit/node:{line.version}-b{line.build}-r{IMAGE_RECIPE}-{agent}-{packages}"


def preload_images(line: Line = DEFAULT) -> list[str]:
    """The images every node's containerd holds before kubeadm runs."""
    return [
        *(f"{line.registry}/{name}:{line.version}" for name in CONTROL_PLANE_IMAGES),
        f"{line.registry}/kube-proxy:{line.version}",
        line.etcd_image,
        line.pause_image,
        *([line.coredns_image] if line.coredns_image else []),
        agent_image(),
    ]


def image_exists(name: str) -> bool:
    """Whether the local Docker daemon has an image by that name."""
    return run(["docker", "image", "inspect", name], check=False, timeout=600).returncode == 0


BUILD_LABEL = "io.chaoskit.kubernetes-build"
"""On images made from the Kubernetes binaries, whose tags (kubeadm's names) cannot say which build they hold."""


def _current_build(name: str, line: Line = DEFAULT) -> bool:
    """Whether the image exists and holds this Kubernetes build's binaries."""
    result = run(
        ["docker", "image", "inspect", "--format", f'{{{{index .Config.Labels "{BUILD_LABEL}"}}}}', name],
        check=False,
        timeout=600,
    )
    return result.returncode == 0 and result.stdout.strip() == line.build


def _log() -> Path:
    return cache.root() / "logs" / f"images-r{IMAGE_RECIPE}.log"


def _files(name: str) -> str:
    return resources.files("chaoskit.provision").joinpath(f"files/{name}").read_text()


# --- root filesystems -------------------------------------------------------------


def rootfs(kind: str, packages: list[str], prepare: bool = False, line: Line = DEFAULT) -> Path:
    """Bootstrap (or reuse) a Debian rootfs tarball; ``kind`` names it."""
    out = cache.entry(f"rootfs-{kind}-{SUITE}-r{IMAGE_RECIPE}")
    tarball = out / "rootfs.tar"
    if cache.is_done(out):
        say(f"{kind} rootfs: cached in {tarball}")
        return tarball
    cache.reset(out)
    tree = out / "tree"
    run_logged(
        ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", SUITE, str(tree), MIRROR],
        out / "debootstrap.log",
        what=f"bootstrapping the {kind} rootfs from Debian {SUITE} (about 2 min)",
        timeout=1800,
    )
    if prepare:
        _prepare_node_tree(tree, line)
    _slim(tree)
    run_logged(
        ["tar", "--numeric-owner", "--xattrs", "-C", str(tree), "-cf", str(tarball), "."],
        _log(),
        what=f"packing the {kind} rootfs",
        timeout=600,
    )
    shutil.rmtree(tree)
    cache.mark_done(out)
    return tarball


def _slim(tree: Path) -> None:
    for sub in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/locale"):
        path = tree / sub
        if path.is_dir():
            shutil.rmtree(path)
            path.mkdir()


def _kind_base_files() -> Path:
    """kind's images/base/files from Debian's kind source (entrypoint, units)."""
    out = cache.entry(f"kind-source-{KIND_BASE_SOURCE.split('=')[1]}")
    files = out / "images" / "base" / "files"
    if cache.is_done(out):
        return files
    cache.reset(out)
    # The .dsc and debian.tar may be gone from the archive; the orig tarball is what matters.
    run(["apt-get", "source", "--download-only", KIND_BASE_SOURCE], cwd=out, check=False, timeout=600)
    tarballs = sorted(out.glob("kind_*.orig.tar.gz"))
    if not tarballs:
        raise ProvisionError(
            f"could not download the Debian source of {KIND_BASE_SOURCE} "
            "(needs a deb-src line for trixie; 'chaoskit cluster up' adds it)"
        )
    run(["tar", "-xzf", str(tarballs[0]), "-C", str(out), "--strip-components=1"], timeout=600)
    if not (files / "usr" / "local" / "bin" / "entrypoint").is_file():
        raise ProvisionError(f"{tarballs[0]} has no images/base/files/usr/local/bin/entrypoint")
    cache.mark_done(out)
    return files


def _kind_module_files() -> Path:
    """kind's images/base/files from the kind Go module of the host's kind CLI (v0.33.0)."""
    files = gomodules.module_dir(KIND_MODULE) / "images" / "base" / "files"
    if not (files / "usr" / "local" / "bin" / "entrypoint").is_file():
        raise ProvisionError(f"{KIND_MODULE} has no images/base/files/usr/local/bin/entrypoint")
    return files


def _prepare_node_tree(tree: Path, line: Line = DEFAULT) -> None:
    """Do in the rootfs what kind's base-image Dockerfile does, with Debian's binaries (1.20) or with none
    yet (the runtime built from Go modules is copied in when the node image is assembled)."""
    say(f"preparing the node rootfs for Kubernetes {line.minor} (kind's init files, containerd config, runc wrapper)")
    files = _kind_module_files() if line.from_modules else _kind_base_files()
    etc = files / "etc"
    (tree / "kind" / "bin").mkdir(parents=True, exist_ok=True)
    for script in (files / "kind" / "bin").iterdir():
        shutil.copy2(script, tree / "kind" / "bin" / script.name)
        (tree / "kind" / "bin" / script.name).chmod(0o755)
    units = tree / "etc" / "systemd" / "system"
    for unit in ("containerd.service", "kubelet.service", "kubelet.slice", "undo-mount-hacks.service"):
        shutil.copy2(etc / "systemd" / "system" / unit, units / unit)
    shutil.copytree(etc / "systemd" / "system" / "kubelet.service.d", units / "kubelet.service.d")
    for sub in (
        "sysctl.d/10-network-magic.conf",
        "sysctl.d/10-network-security.conf",
        "default/kubelet",
        "crictl.yaml",
    ):
        (tree / "etc" / sub).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(etc / sub, tree / "etc" / sub)

    entrypoint = (files / "usr" / "local" / "bin" / "entrypoint").read_text()
    if not line.from_modules:
        bind = 'mount --bind "${subsystem}/${cgroup_root}" "${subsystem}/${cgroup_root}"'
        if bind not in entrypoint:
            raise ProvisionError("kind's entrypoint changed: the kubelet cgroup bind mount line was not found")
        # kubelet 1.20's libcontainer takes that self bind mount for the controller's mount point.
        entrypoint = entrypoint.replace(bind, ": # chaoskit: no self bind mount (kubelet 1.20 mistakes it)")
    _write(tree / "usr" / "local" / "bin" / "entrypoint", entrypoint, 0o755)
    _write(tree / "usr" / "local" / "sbin" / "runc-nosysresource", _files("runc-nosysresource"), 0o755)
    config = f"containerd-config-{line.minor}.toml" if line.from_modules else "containerd-config.toml"
    _write(tree / "etc" / "containerd" / "config.toml", _files(config), 0o644)

    for pattern in (
        "lib/systemd/system/multi-user.target.wants/*",
        "etc/systemd/system/*.wants/*",
        "lib/systemd/system/local-fs.target.wants/*",
        "lib/systemd/system/sockets.target.wants/*udev*",
        "lib/systemd/system/sockets.target.wants/*initctl*",
        "lib/systemd/system/basic.target.wants/*",
        "lib/systemd/system/sysinit.target.wants/systemd-tmpfiles-setup.service",
    ):
        for path in tree.glob(pattern):
            path.unlink()
    with (tree / "etc" / "systemd" / "journald.conf").open("a") as conf:
        conf.write("ReadKMsg=no\n")
    run(
        [
            "chroot",
            str(tree),
            "systemctl",
            "enable",
            "kubelet.service",
            "containerd.service",
            "undo-mount-hacks.service",
        ],
        timeout=600,
    )
    run(["chroot", str(tree), "systemctl", "mask", "systemd-binfmt.service"], timeout=600)
    (tree / "etc" / "kubernetes" / "manifests").mkdir(parents=True, exist_ok=True)
    _write(tree / "kind" / "version", f"{line.version}\n", 0o644)
    if line.from_modules:
        # containerd, ctr, runc and the CNI plugins come with the node's assembly, and cri-base.json too; docker cp
        # makes no parent directories.
        (tree / "opt" / "cni" / "bin").mkdir(parents=True, exist_ok=True)
        return

    _write(
        tree / "etc" / "containerd" / "cri-base.json",
        cri_base_spec(run(["ctr", "oci", "spec"], timeout=600).stdout),
        0o644,
    )
    for name in ("containerd", "ctr"):
        _link(tree / "usr" / "local" / "bin" / name, f"/usr/bin/{name}")
    _link(tree / "opt" / "cni" / "bin", "/usr/lib/cni")


def cri_base_spec(default_spec: str) -> str:
    """containerd's base OCI spec for pods, from ``ctr oci spec``: kind's product-files hook added, and no
    rlimits (so pods inherit the node's)."""
    spec = json.loads(default_spec)
    spec.setdefault("hooks", {}).setdefault("createContainer", []).append({"path": "/kind/bin/mount-product-files.sh"})
    spec["process"].pop("rlimits", None)
    return json.dumps(spec, indent=2) + "\n"


def _write(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _link(path: Path, target: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.exists():
        path.unlink()
    path.symlink_to(target)


# --- images --------------------------------------------------------------------


def _docker_build(tag: str, dockerfile: str, context_files: dict[str, Path | str], timeout: float = 600) -> None:
    """Build ``tag`` from a Dockerfile and a few files (a directory is copied whole, caches left out), with
    the classic builder."""
    with tempfile.TemporaryDirectory(prefix="chaoskit-build-") as tmp:
        ctx = Path(tmp)
        for name, source in context_files.items():
            dest = ctx / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(source, Path) and source.is_dir():
                shutil.copytree(source, dest, ignore=shutil.ignore_patterns("bin", "__pycache__", ".done"))
            elif isinstance(source, Path):
                shutil.copy2(source, dest)
            else:
                dest.write_text(source)
                dest.chmod(0o755)
        (ctx / "Dockerfile").write_text(dockerfile)
        run_logged(
            ["docker", "build", "-q", "-t", tag, str(ctx)],
            _log(),
            what=f"building image {tag}",
            env={"DOCKER_BUILDKIT": "0"},
            timeout=timeout,
        )


def _import(tarball: Path, tag: str, *changes: str) -> None:
    args = ["docker", "import"]
    for change in changes:
        args += ["-c", change]
    run_logged([*args, str(tarball), tag], _log(), what=f"importing {tag}", timeout=600)


def build_base_image() -> None:
    """The small Debian image that kube-proxy, etcd and the agents run on."""
    if image_exists(BASE_IMAGE):
        return
    tarball = rootfs("base", BASE_PACKAGES)
    _import(tarball, BASE_IMAGE, f"ENV {PATH_ENV}")


def line_binaries(line: Line = DEFAULT) -> dict[str, Path]:
    """Every binary of ``line`` built here, by name: Kubernetes' and pause (1.20), and the node's runtime,
    etcd and CoreDNS too for a line built from Go modules (built now if missing)."""
    if line.from_modules:
        return gomodules.build(gomodules.release(line.minor))
    bins = kubernetes.binaries_dir()
    binaries = {name: bins / name for name in (*kubernetes.BINARIES, "pause")}
    return {**binaries, "etcd": _etcd_binary()}


def build_component_images(line: Line = DEFAULT) -> dict[str, Path]:
    """The control-plane, etcd, pause, kube-proxy, CoreDNS (where the line has it) and agent images; return the
    line's binaries (:func:`line_binaries`), which the node image is assembled from too."""
    bins = line_binaries(line)
    for name in CONTROL_PLANE_IMAGES:
        tag = f"{line.registry}/{name}:{line.version}"
        if not _current_build(tag, line):
            _docker_build(
                tag,
                f"FROM scratch\nENV {PATH_ENV}\nLABEL {BUILD_LABEL}={line.build}\n"
                f"COPY {name} /usr/local/bin/{name}\n"
                f'ENTRYPOINT ["/usr/local/bin/{name}"]\n',
                {name: bins[name]},
            )
    if not image_exists(line.pause_image):
        _docker_build(
            line.pause_image, 'FROM scratch\nCOPY pause /pause\nENTRYPOINT ["/pause"]\n', {"pause": bins["pause"]}
        )
    build_base_image()
    proxy = f"{line.registry}/kube-proxy:{line.version}"
    if not _current_build(proxy, line):
        _docker_build(
            proxy,
            f"FROM {BASE_IMAGE}\nLABEL {BUILD_LABEL}={line.build}\n"
            "COPY kube-proxy /usr/local/bin/kube-proxy.real\n"
            "COPY kube-proxy-wrapper /usr/local/bin/kube-proxy\n",
            {"kube-proxy": bins["kube-proxy"], "kube-proxy-wrapper": _files("kube-proxy-wrapper")},
        )
    # The 1.20 line's etcd image is Debian's etcd, made before images carried the build label: present is current.
    etcd_current = _current_build(line.etcd_image, line) if line.from_modules else image_exists(line.etcd_image)
    if not etcd_current:
        _docker_build(
            line.etcd_image,
            f"FROM {BASE_IMAGE}\nLABEL {BUILD_LABEL}={line.build}\nCOPY etcd /usr/local/bin/etcd\n",
            {"etcd": bins["etcd"]},
        )
    if line.coredns_image and not _current_build(line.coredns_image, line):
        # As upstream's image: the static binary alone, run as root with NET_BIND_SERVICE (kubeadm's Deployment).
        _docker_build(
            line.coredns_image,
            f"FROM scratch\nLABEL {BUILD_LABEL}={line.build}\nCOPY coredns /coredns\nEXPOSE 53 53/udp\n"
            'ENTRYPOINT ["/coredns"]\n',
            {"coredns": bins["coredns"]},
        )
    build_agent_image()
    return bins


def build_agent_image() -> str:
    """chaoskit's in-cluster agents (pod networking, cluster DNS); return the image name."""
    tag = agent_image()
    if image_exists(tag):
        return tag
    # The agents use the standard library only: the image has python3 and nothing else.
    _docker_build(
        tag,
        f"FROM {BASE_IMAGE}\nCOPY chaoskit /opt/chaoskit/chaoskit\nENV PYTHONPATH=/opt/chaoskit PYTHONUNBUFFERED=1\n",
        {"chaoskit/__init__.py": "", **_agent_sources()},
    )
    return tag


def injector_image() -> str:
    """The injector agent's image name; its tag is a digest of its recipe and code."""
    digest = hashlib.sha256(" ".join(INJECTOR_PACKAGES).encode())
    for name, text in sorted(_agent_sources(injector=True).items()):
        digest.update(name.encode() + b"\0" + text.encode() + b"\0")
    return f"chaoskit/injector:r{IMAGE_RECIPE}-{digest.hexdigest()[:12]}"


def build_injector_image() -> str:
    """The injector agent (:mod:`chaoskit.agent.injector`) on a Debian rootfs with its tools; return its name.

    Not preloaded into the node image: ``chaoskit agent install`` loads it into
    a kind cluster, and other clusters pull it from a registry it was pushed to.
    """
    tag = injector_image()
    if image_exists(tag):
        return tag
    base = injector_base_image()
    _docker_build(
        tag,
        f"FROM {base}\nCOPY chaoskit /opt/chaoskit/chaoskit\nENV PYTHONPATH=/opt/chaoskit PYTHONUNBUFFERED=1\n",
        {"chaoskit/__init__.py": "", **_agent_sources(injector=True)},
    )
    _prune_superseded("chaoskit/injector", tag)
    return tag


def injector_base_image() -> str:
    """The injector's Debian rootfs with its tools (:data:`INJECTOR_PACKAGES`) as an image, built if missing;
    deploy/agent/Dockerfile builds on it offline (``--build-arg BASE=``)."""
    packages = packages_digest(INJECTOR_PACKAGES)
    base = f"chaoskit/injector-base:{SUITE}-r{IMAGE_RECIPE}-{packages}"
    if not image_exists(base):
        _import(rootfs(f"injector-{packages}", INJECTOR_PACKAGES), base, f"ENV {PATH_ENV}")
    return base


def _etcd_binary() -> Path:
    return deb_binary("etcd-server", SUITE, "usr/bin/etcd")[0]


def build_prometheus_image() -> str:
    """Prometheus from Debian's ``prometheus`` package on the base image; return the image name.

    The package comes from PROMETHEUS_RELEASE, not bookworm: bookworm's
    Prometheus (2.42) is built without Kubernetes service discovery
    (``kubernetes_sd_configs`` is an unknown field there), trixie's (2.53) has
    it. Its binary is linked against glibc alone (2.34 or later), which the
    bookworm base image has; the build checks that it starts. The package's
    web UI files are left out: the HTTP API is all chaoskit uses. The tag
    carries the package version and a digest of the recipe, so a new package
    or a changed recipe is a new image, and an unchanged one is never rebuilt.
    """
    host.ensure_packages({}, kind=False, sources=True)  # trixie's list: a machine that built nothing lacks it
    binary, version = deb_binary("prometheus", PROMETHEUS_RELEASE, "usr/bin/prometheus")
    dockerfile = (
        f"FROM {BASE_IMAGE}\n"
        "COPY prometheus /usr/local/bin/prometheus\n"
        "USER 65534:65534\n"
        'ENTRYPOINT ["/usr/local/bin/prometheus"]\n'
    )
    tag = f"chaoskit/prometheus:{tag_safe(version)}-{hashlib.sha256(dockerfile.encode()).hexdigest()[:8]}"
    if image_exists(tag):
        return tag
    build_base_image()
    _docker_build(tag, dockerfile, {"prometheus": binary})
    check = run(["docker", "run", "--rm", tag, "--version"], check=False, timeout=600)
    if check.returncode != 0 or "prometheus, version" not in check.stdout + check.stderr:
        run(["docker", "rmi", tag], check=False, timeout=600)
        raise ProvisionError(
            f"Debian's prometheus {version} does not run on {BASE_IMAGE}: {(check.stderr or check.stdout).strip()}"
        )
    return tag


NODE_RUNTIME = {
    "containerd": "/usr/local/bin/containerd",
    "ctr": "/usr/local/bin/ctr",
    "containerd-shim-runc-v2": "/usr/local/bin/containerd-shim-runc-v2",
    "crictl": "/usr/local/bin/crictl",
    "runc": "/usr/local/sbin/runc",
    **{plugin: f"/opt/cni/bin/{plugin}" for plugin in ("host-local", "bridge", "loopback", "ptp", "portmap")},
}
"""Where a node built from Go modules holds its runtime's binaries (kind's own places)."""


def build_node_image(line: Line = DEFAULT) -> str:
    """The kind node image with every cluster image preloaded; return its name."""
    name = node_image(line)
    if image_exists(name):
        say(f"node image {name}: present")
        return name
    bins = build_component_images(line)
    tarball = rootfs(node_rootfs(line), node_packages(line), prepare=True, line=line)
    staging = f"chaoskit/node-rootfs:{SUITE}-r{IMAGE_RECIPE}-{node_rootfs(line).removeprefix('node-')}"
    if not image_exists(staging):
        _import(tarball, staging)
    container = "chaoskit-node-build"
    run(["docker", "rm", "-f", container], check=False, timeout=600)
    # Created, filled, then started: a node of Go-module binaries has no containerd until they are copied in.
    run(
        ["docker", "create", "--privileged", "--name", container, "--entrypoint", "/usr/local/bin/containerd", staging],
        timeout=600,
    )
    try:
        copies = {binary: f"/usr/bin/{binary}" for binary in ("kubelet", "kubeadm", "kubectl")}
        if line.from_modules:
            copies.update(NODE_RUNTIME)
        for binary, path in copies.items():
            run(["docker", "cp", str(bins[binary]), f"{container}:{path}"], timeout=600)
        run(["docker", "start", container], timeout=600)
        if line.from_modules:  # the base spec of pods, from this containerd's own ctr
            spec = cri_base_spec(run(["docker", "exec", container, "ctr", "oci", "spec"], timeout=600).stdout)
            run(
                ["docker", "exec", "-i", container, "sh", "-c", "cat > /etc/containerd/cri-base.json"],
                input=spec,
                timeout=600,
            )
        # Pinned (containerd 2, as kind does), kubelet's image GC never removes a preloaded image.
        pinned = " --label=io.cri-containerd.pinned=pinned" if line.from_modules else ""
        for image in preload_images(line):
            say(f"preloading {image} into the node image")
            run(
                [
                    "bash",
                    "-c",
                    'set -o pipefail; docker save "$1" | docker exec -i "$2" '
                    f"ctr -n k8s.io images import{pinned} --no-unpack --all-platforms -",
                    "preload",
                    image,
                    container,
                ],
                timeout=600,
            )
        run(["docker", "stop", container], timeout=600)
        run(
            [
                "docker",
                "commit",
                "-c",
                'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]',
                "-c",
                "ENV container=docker",
                container,
                f"{name}-unsigned",
            ],
            timeout=600,
        )
    finally:
        run(["docker", "rm", "-f", container], check=False, timeout=600)
    # docker commit cannot set a stop signal; systemd as PID 1 shuts down cleanly on SIGRTMIN+3.
    _docker_build(name, f"FROM {name}-unsigned\nSTOPSIGNAL SIGRTMIN+3\n", {})
    run(["docker", "rmi", f"{name}-unsigned"], check=False, timeout=600)
    say(f"node image {name}: built")
    _prune_superseded("chaoskit/node", name, keep_lines=True)
    _prune_superseded("chaoskit/agent", agent_image())
    return name


def _prune_superseded(repository: str, keep: str, keep_lines: bool = False) -> None:
    """Remove older tags of ``repository`` (about 1 GB each for nodes); images in use stay. With
    ``keep_lines``, only tags of the same Kubernetes version as ``keep`` go: each line keeps its node image."""
    tags = run(["docker", "images", repository, "--format", "{{.Repository}}:{{.Tag}}"], timeout=600).stdout.split()
    version = tag_version(keep)
    for tag in tags:
        if keep_lines and tag_version(tag) != version:
            continue
        if tag != keep and run(["docker", "rmi", tag], check=False, timeout=600).returncode == 0:
            say(f"removed superseded image {tag}")


LOAD_SOURCES = (
    "errors.py",
    "targets.py",
    "load/spec.py",
    "load/wire.py",
    "load/locusts.py",
    "load/distributed.py",
    "load/worker.py",
)
"""chaoskit's modules in the load worker image: a worker pod runs ``python3 -m chaoskit.load.worker``."""
LOAD_PYTHON = "3.11"
"""The Python of the base image (Debian 12's python3), which the load image's wheels are chosen for."""


def _load_sources() -> dict[str, str]:
    package = resources.files("chaoskit")
    sources = {f"chaoskit/{name}": package.joinpath(name).read_text() for name in LOAD_SOURCES}
    return {"chaoskit/__init__.py": "", "chaoskit/load/__init__.py": "", **sources}


def load_image() -> str:
    """The load worker image's name: its tag is a digest of the Locust version and chaoskit's load code."""
    from importlib.metadata import version

    digest = hashlib.sha256(f"locust=={version('locust')} python{LOAD_PYTHON}".encode())
    for name, text in sorted(_load_sources().items()):
        digest.update(name.encode() + b"\0" + text.encode() + b"\0")
    return f"chaoskit/load-worker:r{IMAGE_RECIPE}-{digest.hexdigest()[:12]}"


def _load_site() -> Path:
    """Locust and its dependencies for the base image's Python, installed once into chaoskit's cache.

    The same Locust version as this machine's (a master and its workers must agree), as binary wheels for
    CPython 3.11 on this machine's architecture (the kind nodes'), from the package index pip is set up for.
    """
    import platform
    import sys
    from importlib.metadata import version

    locust = version("locust")
    arch = platform.machine()
    site = cache.entry(f"load-site-locust{locust}-cp{LOAD_PYTHON.replace('.', '')}-{arch}")
    if cache.is_done(site):
        return site
    cache.reset(site)
    platforms: list[str] = []
    for tag in ("manylinux_2_36", "manylinux_2_28", "manylinux_2_17", "manylinux2014"):
        platforms += ["--platform", f"{tag}_{arch}"]
    say(f"installing Locust {locust} for the load worker image (python {LOAD_PYTHON}, {arch})")
    abi = f"cp{LOAD_PYTHON.replace('.', '')}"
    wheels = ["--only-binary=:all:", "--python-version", LOAD_PYTHON, "--implementation", "cp", "--abi", abi]
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(site)]
    run_logged(
        [*pip, *wheels, *platforms, f"locust=={locust}"],
        _log(),
        what=f"installing Locust {locust} for the load worker image",
        timeout=900,
    )
    cache.mark_done(site)
    return site


def build_load_image() -> str:
    """The load worker image: the base image, Locust, and chaoskit's load modules; return its name.

    Workers of an ``in_cluster`` load run it (:mod:`chaoskit.load.pods`) as user 65534, with nothing
    but the standard library, Locust's dependencies and the modules in :data:`LOAD_SOURCES`.
    """
    tag = load_image()
    if image_exists(tag):
        return tag
    site = _load_site()
    build_base_image()
    _docker_build(
        tag,
        f"FROM {BASE_IMAGE}\n"
        "COPY site /opt/chaoskit/site\n"
        "COPY chaoskit /opt/chaoskit/chaoskit\n"
        "ENV PYTHONPATH=/opt/chaoskit:/opt/chaoskit/site PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1\n"
        "USER 65534:65534\n"
        'ENTRYPOINT ["python3", "-m", "chaoskit.load.worker"]\n',
        {"site": site, **_load_sources()},
        timeout=900,
    )
    check = run(
        ["docker", "run", "--rm", "--entrypoint", "python3", tag, "-c", "import locust"], check=False, timeout=300
    )
    if check.returncode != 0:
        run(["docker", "rmi", tag], check=False, timeout=600)
        raise ProvisionError(f"Locust does not import in {tag}: {(check.stderr or check.stdout).strip()[-2000:]}")
    _prune_superseded("chaoskit/load-worker", tag)
    return tag
