"""Host setup installs only what the chosen path needs, and nothing (so no root) when that is there: the
decisions, with apt, the file probes and the user id faked. What the packages do is proven by cluster up."""

from __future__ import annotations

from pathlib import Path

import pytest

from chaoskit.errors import ProvisionError
from chaoskit.provision import host


@pytest.fixture
def machine(monkeypatch, tmp_path: Path):
    """A machine with the given commands and files, as root unless told; apt's calls recorded, none run."""
    state = {"have": set(), "uid": 0, "apt": []}
    monkeypatch.setattr(host, "_present", lambda probe: probe in state["have"])
    monkeypatch.setattr(host.shutil, "which", lambda tool: f"/usr/bin/{tool}" if tool in state["have"] else None)
    monkeypatch.setattr(host.os, "geteuid", lambda: state["uid"])
    monkeypatch.setattr(host, "need", lambda tool, hint: f"/usr/bin/{tool}")

    def apt(args, log, **options):
        state["apt"].append(" ".join(args))
        if args[-1] == "kind":
            state["have"].add("kind")

    monkeypatch.setattr(host, "run_logged", apt)
    monkeypatch.setattr(host, "APT_SOURCES", tmp_path / "chaoskit.sources")
    monkeypatch.setattr(host, "APT_PIN", tmp_path / "chaoskit.pin")
    monkeypatch.setattr(host, "cache", type("Cache", (), {"root": staticmethod(lambda: tmp_path)}))
    return state


def test_docker_and_kind_there_need_nothing_and_no_root(machine) -> None:
    machine["have"] |= {"dockerd", "iptables", "kind"}
    machine["uid"] = 1000
    assert host.packages_missing() == []
    host.ensure_packages()  # a user in the docker group: nothing to install, so nothing refused
    assert machine["apt"] == [] and not host.APT_SOURCES.exists()


def test_a_missing_runtime_without_root_is_refused_naming_what_is_missing(machine) -> None:
    machine["have"] |= {"iptables"}
    machine["uid"] = 1000
    with pytest.raises(ProvisionError, match=r"installing docker\.io, kind needs root: run this as root \(sudo\)"):
        host.ensure_packages()
    assert machine["apt"] == []


def test_running_a_cluster_installs_docker_and_kind_and_none_of_the_build_or_test_tools(machine) -> None:
    machine["have"] |= {"iptables"}
    host.ensure_packages()
    assert machine["apt"] == [
        "apt-get update",
        "apt-get install -y --no-install-recommends docker.io",
        "apt-get install -y --no-install-recommends -t sid kind",
    ]
    assert host.APT_SOURCES.exists()  # kind comes from sid, so its list is added


def test_the_air_gapped_build_adds_its_sources_and_tools_and_nothing_for_tests(machine) -> None:
    machine["have"] |= {"dockerd", "iptables", "kind", *list(host.BUILD_PACKAGES)[1:]}
    host.ensure_packages({**host.RUN_PACKAGES, **host.BUILD_PACKAGES}, kind=False, sources=True)
    assert machine["apt"] == ["apt-get update", "apt-get install -y --no-install-recommends debootstrap"]
    assert host.APT_SOURCES.read_text().startswith("# Added by chaoskit") and host.APT_PIN.exists()
    machine["apt"].clear()
    machine["have"].add("debootstrap")
    host.ensure_packages({**host.RUN_PACKAGES, **host.BUILD_PACKAGES}, kind=False, sources=True)
    assert machine["apt"] == []  # everything there, the lists as written: no apt at all


def test_the_test_tools_are_installed_for_the_suite_alone(machine) -> None:
    machine["have"] |= {"dockerd", "iptables", "kind", "tmux"}
    assert host.packages_missing() == []  # a user's machine lacks no browser for chaoskit
    host.ensure_test_tools()
    assert machine["apt"] == ["apt-get update", "apt-get install -y --no-install-recommends chromium"]
    assert not host.APT_SOURCES.exists()  # bookworm's own packages: no sid, no source lists


def test_low_inotify_limits_are_raised_as_root_and_only_warned_of_otherwise(tmp_path, monkeypatch, caplog):
    """kind nodes share the host's inotify pool: Linux's default 128 instances run out around a third cluster."""
    from chaoskit.provision import host

    monkeypatch.setattr(host, "INOTIFY_DIR", tmp_path)
    (tmp_path / "max_user_instances").write_text("128\n")
    (tmp_path / "max_user_watches").write_text("1048576\n")  # already above: never lowered
    monkeypatch.setattr(host.os, "geteuid", lambda: 1000)
    host.ensure_inotify()
    assert (tmp_path / "max_user_instances").read_text() == "128\n"
    assert "sysctl -w fs.inotify.max_user_instances=512" in caplog.text and "watches" not in caplog.text
    monkeypatch.setattr(host.os, "geteuid", lambda: 0)
    host.ensure_inotify(change=False)  # --no-provision: never changed
    assert (tmp_path / "max_user_instances").read_text() == "128\n"
    host.ensure_inotify()
    assert (tmp_path / "max_user_instances").read_text() == "512\n"
    assert (tmp_path / "max_user_watches").read_text() == "1048576\n"
    assert "fs.inotify.max_user_instances raised from 128 to 512" in caplog.text
