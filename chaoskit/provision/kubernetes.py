"""Building the Kubernetes server binaries from Debian's source package.

Debian bookworm's ``kubernetes`` source (v1.20.2) is the only Kubernetes
server source with its full ``vendor/`` tree that this machine can download,
so it is what the air-gapped cluster runs. Two things differ from a plain
``make``:

* the vendored ``modern-go/reflect2`` v1.0.1 panics under Go >= 1.18 (seen in
  ``kubeadm init``); it is replaced with Debian's packaged 1.0.2 first;
* the node lifecycle controller gets the upstream fix of kubernetes#94183
  (fixed in v1.20.5; Debian's package is 1.20.5 reverted to 1.20.2): its
  NoExecute taint queue jammed on a stale entry left from cluster bootstrap,
  so a node that later failed was never tainted ``unreachable:NoExecute`` and
  its pods were never evicted, whatever their tolerations;
* the ``pause`` binary is compiled statically with gcc from the same source.

The binaries are cached under ``k8s-<version>-b<build>/bin``; the source tree and the
Go build cache are deleted afterwards, as they take several gigabytes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from chaoskit import cache
from chaoskit.adapters.shell import run, run_logged, say
from chaoskit.errors import ProvisionError
from chaoskit.provision.versions import GO_ROOT, KUBERNETES_BUILD, KUBERNETES_DEBIAN_SOURCE, KUBERNETES_VERSION

BINARIES = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kubeadm",
    "kube-proxy",
    "kubectl",
)
REFLECT2 = Path("/usr/share/gocode/src/github.com/modern-go/reflect2")


def binaries_dir() -> Path:
    """Where the built binaries live (valid once :func:`build` has run)."""
    return _entry() / "bin"


def _entry() -> Path:
    return cache.entry(f"k8s-{KUBERNETES_VERSION}-b{KUBERNETES_BUILD}")


def build() -> Path:
    """Build (or reuse) the Kubernetes binaries and ``pause``; return their directory."""
    out = _entry()
    if cache.is_done(out):
        say(f"Kubernetes {KUBERNETES_VERSION} binaries: cached in {out / 'bin'}")
        return out / "bin"
    if not (Path(GO_ROOT) / "bin" / "go").exists():
        raise ProvisionError(f"Go is missing at {GO_ROOT}: apt-get install golang-1.19-go")
    if not REFLECT2.is_dir():
        raise ProvisionError("Debian's reflect2 1.0.2 is missing: apt-get install golang-github-modern-go-reflect2-dev")
    cache.reset(out)
    log = cache.root() / "logs" / f"k8s-{KUBERNETES_VERSION}.log"
    download = out / "download"
    download.mkdir()
    run_logged(
        ["apt-get", "source", "--download-only", KUBERNETES_DEBIAN_SOURCE],
        log,
        what=f"downloading the Debian source of Kubernetes {KUBERNETES_VERSION}",
        cwd=download,
        timeout=1800,
    )
    tarballs = sorted(download.glob("kubernetes_*.orig.tar.gz"))
    if not tarballs:
        raise ProvisionError(f"apt-get source gave no kubernetes orig tarball; see {log}")
    src = out / "src"
    src.mkdir()
    run_logged(
        ["tar", "-xzf", str(tarballs[0]), "-C", str(src), "--strip-components=1"],
        log,
        what="unpacking the Kubernetes source",
        timeout=3600,
    )
    _replace_reflect2(src)
    _fix_noexecute_taint_queue(src)
    env = {
        "PATH": f"{GO_ROOT}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "GOPROXY": "off",
        "GOCACHE": str(out / "gocache"),
        "CGO_ENABLED": "0",
    }
    what = " ".join(f"cmd/{name}" for name in BINARIES)
    run_logged(
        ["make", f"WHAT={what}", "KUBE_BUILD_PLATFORMS=linux/amd64"],
        log,
        what=f"building Kubernetes {KUBERNETES_VERSION} (about 10 min on 2 cores)",
        env=env,
        cwd=src,
        timeout=3600,
    )
    bin_dir = out / "bin"
    bin_dir.mkdir()
    built = src / "_output" / "local" / "bin" / "linux" / "amd64"
    for name in BINARIES:
        if not (built / name).is_file():
            raise ProvisionError(f"the Kubernetes build did not produce {name}; see {log}")
        shutil.copy2(built / name, bin_dir / name)
    run(["gcc", "-static", "-O2", "-o", str(bin_dir / "pause"), str(src / "build/pause/linux/pause.c")], timeout=120)
    version = run([str(bin_dir / "kubeadm"), "version", "-o", "short"], timeout=120).stdout.strip()
    if version != KUBERNETES_VERSION:
        raise ProvisionError(f"built kubeadm reports {version!r}, expected {KUBERNETES_VERSION}")
    for leftover in ("src", "gocache", "download"):
        shutil.rmtree(out / leftover, ignore_errors=True)
    cache.mark_done(out)
    for stale in out.parent.glob(f"k8s-{KUBERNETES_VERSION}*"):
        if stale != out:  # binaries of an earlier build of the same release
            shutil.rmtree(stale, ignore_errors=True)
    say(f"Kubernetes {KUBERNETES_VERSION} binaries built into {bin_dir}")
    return bin_dir


def _replace_reflect2(src: Path) -> None:
    vendored = src / "vendor" / "github.com" / "modern-go" / "reflect2"
    if not vendored.is_dir():
        raise ProvisionError(f"unexpected source layout: {vendored} is missing")
    for path in vendored.iterdir():
        if path.suffix in (".go", ".s"):
            path.unlink()
    for path in REFLECT2.iterdir():
        if path.suffix in (".go", ".s") and not path.name.endswith("_test.go"):
            shutil.copy2(path, vendored / path.name)


def _fix_noexecute_taint_queue(src: Path) -> None:
    """When a node is queued for its NoExecute taint, drop its old queue entry too (``Remove``, not
    ``SetRemove``): otherwise stale entries pile up and the queue retries one forever."""
    path = src / "pkg" / "controller" / "nodelifecycle" / "node_lifecycle_controller.go"
    text = path.read_text()
    start = text.index("func (nc *Controller) markNodeForTainting(")
    end = text.index("\n}\n", start)
    body = text[start:end]
    stale = "].SetRemove(node.Name)"
    if body.count(stale) != 2:
        raise ProvisionError(f"unexpected source in {path}: markNodeForTainting does not call SetRemove twice")
    path.write_text(text[:start] + body.replace(stale, "].Remove(node.Name)") + text[end:])
