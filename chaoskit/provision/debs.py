"""One file out of a Debian package, by apt: the version apt knows in a release, and the file extracted and
cached under that version (a warm machine neither downloads nor unpacks it again)."""

from __future__ import annotations

from pathlib import Path

from chaoskit import cache
from chaoskit.adapters.shell import run
from chaoskit.errors import ProvisionError


def deb_version(package: str, release: str) -> str:
    """The version of ``package`` in Debian ``release`` (``bookworm``, ``trixie``) as apt knows it."""
    shown = run(
        ["apt-cache", "show", "--no-all-versions", f"{package}/{release}"],
        env={"LC_ALL": "C"},
        check=False,
        timeout=600,
    )
    for line in shown.stdout.splitlines():
        if line.startswith("Version:"):
            return line.split(":", 1)[1].strip()
    raise ProvisionError(
        f"apt knows no {package} in Debian {release}: run 'apt-get update' "
        f"(the host's sources must list {release}; 'chaoskit cluster up' adds them)"
    )


def deb_binary(package: str, release: str, binary: str) -> tuple[Path, str]:
    """Extract one file from a Debian package; return its path and the package's version.

    ``binary`` is the file's path inside the package (``usr/bin/etcd``). The
    extraction is cached under the package's version, so a warm machine neither
    downloads nor unpacks it again, and a new version in the archive is fetched.
    """
    version = deb_version(package, release)
    out = cache.entry(f"deb-{package}-{tag_safe(version)}")
    path = out / "root" / binary
    if cache.is_done(out):
        return path, version
    cache.reset(out)
    run(["apt-get", "download", f"{package}={version}"], cwd=out, timeout=600)
    debs = sorted(out.glob(f"{package}_*.deb"))
    if not debs:
        raise ProvisionError(f"apt-get download {package}={version} gave no package")
    run(["dpkg-deb", "-x", str(debs[0]), str(out / "root")], timeout=600)
    if not path.is_file():
        raise ProvisionError(f"{debs[0].name} holds no {binary}")
    for deb in debs:  # only the extracted file is used; the .deb is 10-20 MB
        deb.unlink()
    cache.mark_done(out)
    return path, version


def tag_safe(version: str) -> str:
    """A Debian version as a Docker tag or file name can carry it (``2.42.0+ds-5`` -> ``2.42.0_ds-5``)."""
    return "".join(c if c.isalnum() or c in ".-" else "_" for c in version)
