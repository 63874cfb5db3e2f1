"""Building a current Kubernetes and its node's runtime from Go modules.

Kubernetes 1.37 has no Debian package and no image can be pulled here, but
the Go module proxy serves every piece of a kind node as source. Each piece
is built from a small module of chaoskit's own (``files/gomod-<version>/<piece>/``)
whose ``go.mod`` requires it at an exact version and whose ``go.sum`` pins
every dependency, so the build needs no checksum lookup and resolves the same
graph every time. Three things make ``k8s.io/kubernetes`` buildable as a
dependency (see docs/compatibility.md):

* its own ``replace`` lines pointing at ``./staging/src`` do not apply to a
  dependency, so chaoskit's module replaces each of the 31 staging modules
  (``k8s.io/api`` and the rest) with its published ``v0.37.x``;
* its version is stamped with ``-ldflags -X`` on both ``component-base`` and
  ``client-go``, or kubeadm reports ``v0.0.0-master`` and refuses;
* cgo is off (the only cgo packages are the standard library's).

runc alone needs cgo (its nsenter is C) and the host's ``libseccomp-dev``.

Each piece is a cache entry of its own (``gobuild-<piece>-<version>-<digest>``),
so a failed build resumes where it stopped. The modules are downloaded first
(the only network step); the build itself runs with ``GOPROXY=off``, which
proves it hermetic. Every binary is checked with ``go version -m``: it must
embed the module at the version asked for.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from chaoskit import cache
from chaoskit.adapters.shell import run, run_logged, say
from chaoskit.errors import ProvisionError

GO_TIMEOUT = 3600.0
"""How long one ``go build`` may take (Kubernetes' seven binaries: about 10 min cold on 2 cores)."""


@dataclass(frozen=True)
class Piece:
    """One Go module built into binaries for the node."""

    name: str
    """The directory of its go.mod under ``files/gomod-<version>/`` and its cache name."""
    module: str
    """The module it builds, required at ``version``."""
    version: str
    packages: tuple[str, ...]
    """The main packages to build."""
    outputs: tuple[str, ...]
    """The binaries the build writes, in the order of ``packages``."""
    cgo: bool = False
    tags: tuple[str, ...] = ()
    ldflags: tuple[str, ...] = ("-s", "-w")
    pie: bool = False


def _stamps(version: str) -> tuple[str, ...]:
    """The -X flags that give the Kubernetes binaries their version (``v1.37.2``)."""
    major, minor = version.lstrip("v").split(".")[:2]
    # The release's date stands in for the build date, so two builds of one version are the same binaries.
    values = {"gitVersion": version, "gitMajor": major, "gitMinor": minor, "gitTreeState": "clean"}
    flags: list[str] = []
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        for key, value in values.items():
            flags += ["-X", f"{package}.{key}={value}"]
    return tuple(flags)


KUBERNETES_COMMANDS = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kubeadm",
    "kubectl",
)


@dataclass(frozen=True)
class Release:
    """A Kubernetes release built from Go modules, with the node runtime that goes with it."""

    kubernetes: str
    pieces: tuple[Piece, ...] = field(default=())

    @property
    def files(self) -> str:
        """The package directory of its modules' go.mod and go.sum files."""
        return f"gomod-{self.kubernetes}"


def _release_1_37() -> Release:
    k8s = "v1.37.2"
    return Release(
        k8s,
        (
            Piece(
                "kubernetes",
                "k8s.io/kubernetes",
                k8s,
                tuple(f"k8s.io/kubernetes/cmd/{c}" for c in KUBERNETES_COMMANDS),
                KUBERNETES_COMMANDS,
                tags=("selinux", "notest", "grpcnotrace"),
                ldflags=("-s", "-w", *_stamps(k8s)),
            ),
            Piece(
                "etcd",
                "go.etcd.io/etcd/server/v3",
                "v3.7.3",
                ("go.etcd.io/etcd/server/v3",),
                ("etcd",),  # built as "server" (its package's last element) unless named
                ldflags=("-s", "-w", "-X", "go.etcd.io/etcd/api/v3/version.GitSHA=v3.7.3"),
            ),
            Piece(
                "containerd",
                "github.com/containerd/containerd/v2",
                "v2.4.2",
                tuple(
                    f"github.com/containerd/containerd/v2/cmd/{c}"
                    for c in ("containerd", "ctr", "containerd-shim-runc-v2")
                ),
                ("containerd", "ctr", "containerd-shim-runc-v2"),
                tags=("no_aufs", "no_zfs", "no_btrfs", "no_devmapper"),
                ldflags=("-s", "-w", "-X", "github.com/containerd/containerd/v2/version.Version=v2.4.2"),
            ),
            Piece(
                "runc",
                "github.com/opencontainers/runc",
                "v1.5.3",
                ("github.com/opencontainers/runc",),
                ("runc",),
                cgo=True,  # libcontainer's nsenter is C: without cgo runc builds but cannot enter namespaces
                tags=("seccomp", "urfave_cli_no_docs"),
                ldflags=("-s", "-w", "-X", "main.version=1.5.3"),
                pie=True,
            ),
            Piece(
                "cni",
                "github.com/containernetworking/plugins",
                "v1.10.0",
                tuple(
                    f"github.com/containernetworking/plugins/plugins/{p}"
                    for p in ("ipam/host-local", "main/bridge", "main/loopback", "main/ptp", "meta/portmap")
                ),
                ("host-local", "bridge", "loopback", "ptp", "portmap"),
            ),
            Piece(
                "crictl",
                "sigs.k8s.io/cri-tools",
                "v1.37.0",
                ("sigs.k8s.io/cri-tools/cmd/crictl",),
                ("crictl",),
                ldflags=("-s", "-w", "-X", "sigs.k8s.io/cri-tools/pkg/version.Version=v1.37.0"),
            ),
            Piece(
                "coredns",
                "github.com/coredns/coredns",
                "v1.14.6",
                ("github.com/coredns/coredns",),
                ("coredns",),
            ),
        ),
    )


RELEASES = {"1.37": _release_1_37()}
"""The Kubernetes lines built from Go modules, by minor version."""


def release(line: str) -> Release:
    """The release of a Kubernetes line (``1.37``); ProvisionError names the lines there are."""
    try:
        return RELEASES[line]
    except KeyError:
        raise ProvisionError(f"no Go-module build of Kubernetes {line}: choose one of {', '.join(RELEASES)}") from None


def _gomod(rel: Release, piece: Piece) -> dict[str, bytes]:
    folder = resources.files("chaoskit.provision").joinpath("files", rel.files, piece.name)
    return {name: folder.joinpath(name).read_bytes() for name in ("go.mod", "go.sum")}


def _digest(rel: Release, piece: Piece) -> str:
    """A digest of the piece's recipe and its pinned module graph: a change to either rebuilds it."""
    digest = hashlib.sha256(repr(piece).encode())
    for name, data in sorted(_gomod(rel, piece).items()):
        digest.update(name.encode() + b"\0" + data + b"\0")
    return digest.hexdigest()[:10]


def entry(rel: Release, piece: Piece) -> Path:
    """The cache entry of one piece's binaries (under ``bin/``)."""
    return cache.entry(f"gobuild-{piece.name}-{piece.version}-{_digest(rel, piece)}")


def go() -> str:
    """The Go toolchain: the machine's, which must be 1.26 or newer (the modules' go lines ask for it)."""
    path = shutil.which("go") or ("/usr/local/go/bin/go" if os.path.exists("/usr/local/go/bin/go") else None)
    if path is None:
        raise ProvisionError("building Kubernetes from Go modules needs Go 1.26 or newer on PATH (go.dev/dl)")
    version = run([path, "env", "GOVERSION"], env=_env(False), timeout=120).stdout.strip()
    if _go_minor(version) < 26:
        raise ProvisionError(f"{path} is {version}; the Kubernetes 1.37 modules need Go 1.26 or newer")
    return path


def module_dir(module: str) -> Path:
    """The unpacked directory of ``module`` (``sigs.k8s.io/kind@v0.33.0``) in the module cache, downloaded if
    missing (read-only: the files are read from there, never built in place)."""
    shown = run(
        [go(), "mod", "download", "-json", module],
        env={"GOTOOLCHAIN": "local", "GOWORK": "off", "GOFLAGS": "-mod=mod"},
        check=False,
        timeout=600,
    )
    try:
        return Path(json.loads(shown.stdout)["Dir"])
    except (ValueError, KeyError):
        raise ProvisionError(
            f"go mod download {module} failed: {(shown.stderr or shown.stdout).strip()[:300]}"
        ) from None


def _go_minor(version: str) -> int:
    """``go1.26.8`` -> 26; anything unreadable -> 0."""
    parts = version.removeprefix("go").split(".")
    return int(parts[1]) if len(parts) > 1 and parts[0] == "1" and parts[1].isdigit() else 0


def _env(cgo: bool, gocache: Path | None = None, offline: bool = False) -> dict[str, str]:
    env = {
        "GOTOOLCHAIN": "local",  # never download a toolchain: the machine's Go builds everything
        "GOWORK": "off",  # a go.work above the cache must not reach the build
        "GOFLAGS": "-buildvcs=false -mod=readonly",
        "CGO_ENABLED": "1" if cgo else "0",
    }
    if gocache is not None:
        env["GOCACHE"] = str(gocache)
    if offline:
        env["GOPROXY"] = "off"
    return env


def build(rel: Release) -> dict[str, Path]:
    """Build (or reuse) every piece of ``rel``; return each binary's path by name.

    Kubernetes' pause binary is compiled with gcc from the module's own
    ``build/pause/linux/pause.c``, statically, as the 1.20 build does.
    """
    gobin = go()
    started = time.monotonic()
    binaries: dict[str, Path] = {}
    for number, piece in enumerate(rel.pieces, 1):
        say(f"[{number}/{len(rel.pieces)}] {piece.module} {piece.version}")
        binaries.update(_build_piece(gobin, rel, piece))
    say(
        f"Kubernetes {rel.kubernetes} and its node runtime from Go modules: ready in {time.monotonic() - started:.0f} s"
    )
    return binaries


def _build_piece(gobin: str, rel: Release, piece: Piece) -> dict[str, Path]:
    out = entry(rel, piece)
    bins = out / "bin"
    if cache.is_done(out):
        say(f"{piece.name} {piece.version}: cached in {bins}")
        return {name: bins / name for name in _outputs(piece)}
    if piece.cgo and not Path("/usr/include/seccomp.h").exists():
        raise ProvisionError(f"building {piece.name} needs libseccomp's headers: apt-get install libseccomp-dev")
    cache.reset(out)
    work = out / "module"
    work.mkdir()
    for name, data in _gomod(rel, piece).items():
        (work / name).write_bytes(data)
    log = cache.root() / "logs" / f"gobuild-{piece.name}-{piece.version}.log"
    log.unlink(missing_ok=True)
    gocache = cache.root() / f"gocache-{rel.kubernetes}"  # shared by the pieces, deleted once all are built
    run_logged(
        [gobin, "mod", "download"],
        log,
        what=f"downloading {piece.module} {piece.version} and its dependencies",
        env=_env(piece.cgo, gocache),
        cwd=work,
        timeout=1800,
    )
    bins.mkdir()
    args = [gobin, "build", "-trimpath", "-ldflags", " ".join(piece.ldflags)]
    if piece.tags:
        args += ["-tags", ",".join(piece.tags)]
    if piece.pie:
        args.append("-buildmode=pie")
    if len(piece.packages) == 1:
        args += ["-o", str(bins / piece.outputs[0])]
    else:
        args += ["-o", str(bins) + "/"]
    started = time.monotonic()
    run_logged(
        [*args, *piece.packages],
        log,
        what=f"building {', '.join(piece.outputs)} from {piece.module} {piece.version}",
        env=_env(piece.cgo, gocache, offline=True),
        cwd=work,
        timeout=GO_TIMEOUT,
    )
    if piece.name == "kubernetes":
        _build_pause(gobin, piece, work, bins, gocache)
    for name in piece.outputs:
        _check_binary(gobin, bins / name, piece)
    (out / "built.txt").write_text(f"{piece.module} {piece.version}: built in {time.monotonic() - started:.0f} s\n")
    shutil.rmtree(work)
    cache.mark_done(out)
    say(f"{piece.name} {piece.version}: built in {time.monotonic() - started:.0f} s into {bins}")
    if all(cache.is_done(entry(rel, p)) for p in rel.pieces):
        shutil.rmtree(gocache, ignore_errors=True)  # several GB; the binaries are what is kept
    return {name: bins / name for name in _outputs(piece)}


def _outputs(piece: Piece) -> tuple[str, ...]:
    return (*piece.outputs, "pause") if piece.name == "kubernetes" else piece.outputs


def _build_pause(gobin: str, piece: Piece, work: Path, bins: Path, gocache: Path) -> None:
    source = run(
        [gobin, "list", "-m", "-f", "{{.Dir}}", piece.module], env=_env(False, gocache, True), cwd=work, timeout=600
    ).stdout.strip()
    pause = Path(source) / "build" / "pause" / "linux" / "pause.c"
    if not pause.is_file():
        raise ProvisionError(f"{piece.module} {piece.version} has no build/pause/linux/pause.c")
    run(["gcc", "-static", "-O2", "-o", str(bins / "pause"), str(pause)], timeout=300)
    version = run([str(bins / "kubeadm"), "version", "-o", "short"], timeout=120).stdout.strip()
    if version != piece.version:
        raise ProvisionError(f"the built kubeadm reports {version!r}, not {piece.version}: its version stamps failed")


def _check_binary(gobin: str, path: Path, piece: Piece) -> None:
    """The binary exists and embeds ``piece.module`` at ``piece.version`` (``go version -m``)."""
    if not path.is_file():
        raise ProvisionError(f"the build of {piece.module} wrote no {path.name}")
    shown = run([gobin, "version", "-m", str(path)], env=_env(False), timeout=120).stdout
    if not embeds(shown, piece.module, piece.version):
        raise ProvisionError(
            f"{path} does not embed {piece.module} {piece.version}: go version -m says {shown[:300]!r}"
        )


def embeds(version_m: str, module: str, version: str) -> bool:
    """Whether ``go version -m`` output names ``module`` at ``version``: as the main package's module (``mod``,
    a command of the module itself) or as a dependency (``dep``)."""
    for line in version_m.splitlines():
        words = line.split()
        if len(words) >= 3 and words[0] in ("mod", "dep") and words[1] == module and words[2] == version:
            return True
    return False
