"""Preparing the host: Debian packages, kind from sid, and a running Docker Engine.

Each path installs only what it needs, and nothing when that is there, so a
machine with Docker and kind needs no root: running a cluster needs Docker and
kind (:data:`RUN_PACKAGES`); building chaoskit's own node image, which only a
machine without a registry does, needs the build tools and Debian's source and
sid/trixie lists (:data:`BUILD_PACKAGES`); chaoskit's own test suite needs a
browser and a terminal multiplexer (:data:`TEST_PACKAGES`, from ``make test``).

On a machine with no container registry everything comes from Debian's
archive. kind is only packaged in sid, so sid (and trixie, for the kind source
whose base-image files we use) are added with a pin below 100: nothing else
on the machine is upgraded from them, only what is asked for by name.

Docker Engine is started by hand (``dockerd`` in the background) when it is
not running, because this machine has no init system to do it. One trap of
this machine is handled here: when the capability bounding set lacks
``CAP_SYS_RESOURCE``, every privileged container fails, and kind only starts
privileged nodes; a runc wrapper that drops that capability from the OCI spec
is then registered as Docker's default runtime. It is applied only where a
plain ``docker run --privileged`` fails.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from importlib import resources
from pathlib import Path

from chaoskit import cache
from chaoskit.adapters import docker
from chaoskit.adapters.shell import need, run, run_logged, say, warn
from chaoskit.errors import ProvisionError

APT_SOURCES = Path("/etc/apt/sources.list.d/chaoskit.sources")
APT_PIN = Path("/etc/apt/preferences.d/chaoskit")
DOCKER_CONFIG = Path("/etc/docker/daemon.json")
RUNC_WRAPPER = Path("/usr/local/libexec/chaoskit/runc-nosysresource")
WRAPPED_RUNTIME = "chaoskit-runc"

RUN_PACKAGES = {
    # command that proves the package is there -> package
    "dockerd": "docker.io",
    "iptables": "iptables",
}
"""What running a kind cluster on this machine needs, besides kind itself (from Debian sid)."""
BUILD_PACKAGES = {
    "debootstrap": "debootstrap",
    "rsync": "rsync",
    "jq": "jq",
    "gcc": "gcc",
    "dpkg-source": "dpkg-dev",
    "/usr/lib/go-1.19/bin/go": "golang-1.19-go",
    "/usr/share/gocode/src/github.com/modern-go/reflect2/reflect2.go": ("golang-github-modern-go-reflect2-dev"),
    "/usr/lib/x86_64-linux-gnu/libc.a": "libc6-dev",
    # runc, built with cgo for the Kubernetes 1.37 node (provision/gomodules.py), links libseccomp.
    "/usr/include/seccomp.h": "libseccomp-dev",
    "pkg-config": "pkg-config",  # which libseccomp-golang's cgo asks for libseccomp's flags
}
"""What the air-gapped build of chaoskit's node image needs (only when that image must be built)."""
TEST_PACKAGES = {
    # The HTML report's check renders it in a headless browser.
    "chromium": "chromium",
    # The live view of 'chaoskit run' is tested as a person meets it, in a terminal multiplexer.
    "tmux": "tmux",
}
"""What chaoskit's own test suite needs beside a cluster (``make test`` installs them); users need none."""

_SOURCES = """\
# Added by chaoskit: Debian sources for the air-gapped kind build.
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb deb-src
URIs: http://deb.debian.org/debian
Suites: sid trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""

_PIN = """\
# Added by chaoskit: take from sid and trixie only what is asked for by name.
Package: *
Pin: release n=sid
Pin-Priority: 50

Package: *
Pin: release n=trixie
Pin-Priority: 50
"""


def _present(probe: str) -> bool:
    return os.path.exists(probe) if probe.startswith("/") else shutil.which(probe) is not None


def _apt_log() -> Path:
    return cache.root() / "logs" / "apt.log"


def ensure_apt_sources() -> bool:
    """Add the deb-src and pinned sid/trixie sources; return whether anything changed."""
    changed = False
    for path, text in ((APT_SOURCES, _SOURCES), (APT_PIN, _PIN)):
        if not path.exists() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            changed = True
    return changed


def packages_missing(wanted: dict[str, str] | None = None, kind: bool = True) -> list[str]:
    """Packages of ``wanted`` (default: :data:`RUN_PACKAGES`) not installed, and kind when ``kind`` asks for it
    (a cheap check: no apt call)."""
    wanted = RUN_PACKAGES if wanted is None else wanted
    missing = sorted({pkg for probe, pkg in wanted.items() if not _present(probe)})
    return missing + (["kind"] if kind and shutil.which("kind") is None else [])


def ensure_packages(wanted: dict[str, str] | None = None, kind: bool = True, sources: bool = False) -> None:
    """Install what of ``wanted`` (default: :data:`RUN_PACKAGES`) is missing, and kind from sid when ``kind``
    asks for it and it is missing; ``sources``: the deb-src and pinned sid/trixie sources too (the air-gapped
    build). Nothing missing is nothing done, and needs no root."""
    missing = packages_missing(wanted, kind)
    if not missing and not (sources and _sources_missing()):
        return
    if os.geteuid() != 0:
        what = ", ".join(missing) or "Debian's source and sid/trixie lists"
        raise ProvisionError(f"installing {what} needs root: run this as root (sudo), or install them yourself")
    need("apt-get", "this build needs a Debian-like host with apt")
    kind_missing = "kind" in missing
    changed = ensure_apt_sources() if sources or kind_missing else False
    if changed or missing:
        run_logged(["apt-get", "update"], _apt_log(), what="apt-get update", timeout=1800)
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    debian = [pkg for pkg in missing if pkg != "kind"]
    if debian:
        run_logged(
            ["apt-get", "install", "-y", "--no-install-recommends", *debian],
            _apt_log(),
            what=f"installing {', '.join(debian)}",
            env=env,
            timeout=1800,
        )
    if kind_missing:
        run_logged(
            ["apt-get", "install", "-y", "--no-install-recommends", "-t", "sid", "kind"],
            _apt_log(),
            what="installing kind from Debian sid",
            env=env,
            timeout=1800,
        )
        need("kind", "the Debian sid package 'kind' did not install; see " + str(_apt_log()))


def _sources_missing() -> bool:
    wanted = ((APT_SOURCES, _SOURCES), (APT_PIN, _PIN))
    return any(not path.exists() or path.read_text() != text for path, text in wanted)


def ensure_test_tools() -> None:
    """What chaoskit's own test suite needs beside a cluster (:data:`TEST_PACKAGES`); ``make test`` runs it."""
    ensure_packages(TEST_PACKAGES, kind=False)


INOTIFY_DIR = Path("/proc/sys/fs/inotify")
INOTIFY = {"max_user_instances": 512, "max_user_watches": 524288}
"""The inotify limits kind's known issues ask for: every node's kubelet, containerd and systemd take inotify
instances from the host kernel's one pool, and Linux's default of 128 instances runs out around the third
cluster (seven nodes), whose kubelet then never becomes Ready."""


def ensure_inotify(change: bool = True) -> None:
    """Raise the host's inotify limits to :data:`INOTIFY` where they are lower (as root, and ``change``), saying
    so; else warn with the command that would. Nothing is lowered."""
    low = {}
    for name, wanted in INOTIFY.items():
        try:
            current = int((INOTIFY_DIR / name).read_text())
        except (OSError, ValueError):  # not Linux, or not readable: nothing to judge
            continue
        if current < wanted:
            low[name] = (current, wanted)
    if not low:
        return
    if change and os.geteuid() == 0:
        for name, (current, wanted) in low.items():
            (INOTIFY_DIR / name).write_text(f"{wanted}\n")
            say(f"fs.inotify.{name} raised from {current} to {wanted}: kind nodes share the host's inotify pool")
        return
    settings = " ".join(f"fs.inotify.{name}={wanted}" for name, (_, wanted) in low.items())
    now = ", ".join(f"{name} {current}" for name, (current, _) in low.items())
    warn(
        f"the host's inotify limits are low for several kind clusters ({now}): a new cluster's kubelet may never "
        f"become Ready; as root: sysctl -w {settings}"
    )


def ensure_docker() -> None:
    """Start the Docker daemon if it is not running, with the capability fix if needed."""
    if not docker.daemon_answers():
        _start_dockerd()
    if not _privileged_works():
        say("privileged containers fail on this host (CAP_SYS_RESOURCE missing): installing the runc wrapper")
        _install_runc_wrapper()
        if not _privileged_works():
            raise ProvisionError(
                "privileged containers still fail after installing the runc wrapper; "
                f"see {cache.root() / 'logs' / 'dockerd.log'}"
            )


def _start_dockerd() -> None:
    need("dockerd", "install Docker Engine (apt-get install docker.io) or run 'chaoskit cluster up' as root")
    if shutil.which("containerd") is None:
        raise ProvisionError("containerd is missing: apt-get install containerd")
    log = cache.root() / "logs" / "dockerd.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    say(f"starting the Docker daemon (log: {log})")
    # A stale pid file from a killed daemon stops a new one from starting.
    pidfile = Path("/var/run/docker.pid")
    if pidfile.exists():
        try:
            os.kill(int(pidfile.read_text().strip()), 0)
        except (ProcessLookupError, ValueError):
            pidfile.unlink()
    # Through a shell that exits at once, so the daemon is not our child: it
    # outlives this process and never lingers as our zombie.
    subprocess.run(
        ["sh", "-c", f'nohup dockerd >>"{log}" 2>&1 </dev/null &'],
        check=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if docker.daemon_answers():
            say("Docker daemon is up")
            return
        time.sleep(0.5)
    raise ProvisionError(f"the Docker daemon did not start within 60 s; see {log}")


def _probe_image() -> str:
    """A tiny image holding one static binary, to test privileged containers."""
    name = "chaoskit/probe:1"
    if run(["docker", "image", "inspect", name], check=False, timeout=120).returncode == 0:
        return name
    work = cache.entry("probe")
    cache.reset(work)
    (work / "true.c").write_text("int main(void) { return 0; }\n")
    run(["gcc", "-static", "-O2", "-o", str(work / "true"), str(work / "true.c")], timeout=120)
    run(["tar", "-C", str(work), "-cf", str(work / "probe.tar"), "true"], timeout=120)
    run(["docker", "import", "-c", 'ENTRYPOINT ["/true"]', str(work / "probe.tar"), name], timeout=120)
    return name


def _privileged_works() -> bool:
    image = _probe_image()
    result = run(["docker", "run", "--rm", "--privileged", image], check=False, timeout=60)
    return result.returncode == 0


def _install_runc_wrapper() -> None:
    need("jq", "apt-get install jq")
    RUNC_WRAPPER.parent.mkdir(parents=True, exist_ok=True)
    script = resources.files("chaoskit.provision").joinpath("files/runc-nosysresource").read_text()
    RUNC_WRAPPER.write_text(script)
    RUNC_WRAPPER.chmod(0o755)
    config = json.loads(DOCKER_CONFIG.read_text()) if DOCKER_CONFIG.exists() else {}
    config.setdefault("runtimes", {})[WRAPPED_RUNTIME] = {"path": str(RUNC_WRAPPER)}
    config["default-runtime"] = WRAPPED_RUNTIME
    DOCKER_CONFIG.parent.mkdir(parents=True, exist_ok=True)
    DOCKER_CONFIG.write_text(json.dumps(config, indent=2) + "\n")
    # dockerd reloads runtimes and the default runtime on SIGHUP: no restart needed.
    say(f"registered {RUNC_WRAPPER} as Docker's default runtime; reloading the daemon")
    os.kill(_dockerd_pid(), signal.SIGHUP)
    time.sleep(1)


def _dockerd_pid() -> int:
    pidfile = Path("/var/run/docker.pid")
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        raise ProvisionError("cannot find the Docker daemon's pid in /var/run/docker.pid") from None


if __name__ == "__main__":  # make test: python -m chaoskit.provision.host test-tools
    import sys

    if sys.argv[1:] != ["test-tools"]:
        sys.exit("usage: python -m chaoskit.provision.host test-tools")
    try:
        ensure_test_tools()
    except ProvisionError as exc:
        sys.exit(f"chaoskit: error: {exc}")
