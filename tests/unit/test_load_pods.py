"""The worker pods' objects and image contents, as data: what the cluster test then runs for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chaoskit import targets
from chaoskit.load import LoadSpec
from chaoskit.load.pods import CONFIG_DIR, manifests
from chaoskit.provision.images import _load_sources


def container_of(deployment: dict) -> dict:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


OWNER = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "name": "chaoskit-owner-x", "uid": "u-1"}


def test_worker_pods_run_unprivileged_with_the_spec_and_locustfile_in_a_configmap(tmp_path: Path) -> None:
    locustfile = tmp_path / "shop.py"
    locustfile.write_text("from locust import HttpUser\n")
    spec = LoadSpec("http://web.shop.svc:80", run_seconds=5, users=4, locustfile=str(locustfile), in_cluster=True)
    configmap, deployment = manifests("chaoskit-load-abc", spec, 2, "chaoskit/load-worker:t", OWNER)
    assert configmap["data"]["locustfile.py"] == "from locust import HttpUser\n"
    config = json.loads(configmap["data"]["config.json"])
    assert config["role"] == "pod" and config["workers"] == 2
    assert config["spec"]["locustfile"] == f"{CONFIG_DIR}/locustfile.py", "the pod reads the mounted copy"
    assert LoadSpec(**{**config["spec"], "locustfile": str(locustfile)}) == spec
    assert container_of(deployment)["terminationMessagePolicy"] == "FallbackToLogsOnError"
    for obj in (configmap, deployment):
        assert obj["metadata"]["namespace"] == "chaoskit-system"
        assert obj["metadata"]["ownerReferences"] == [OWNER], "the garbage collector removes it with the owner"
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 2
    assert pod["automountServiceAccountToken"] is False, "a worker pod has no API credentials"
    container = container_of(deployment)
    assert "ports" not in container, "nothing is published: the tunnel listens on the pod's 127.0.0.1"
    security = container["securityContext"]
    assert security["runAsNonRoot"] and security["runAsUser"] == 65534
    assert security["allowPrivilegeEscalation"] is False and security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}


def test_the_sessions_allowed_targets_travel_to_the_pods(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(targets, "_allowed", set())  # this test's session allowances alone, undone after it
    targets.allow(["staging.example:443"])
    spec = LoadSpec("https://staging.example:443", run_seconds=5, in_cluster=True)
    configmap, _ = manifests("n", spec, 1, "i", OWNER)
    fields = json.loads(configmap["data"]["config.json"])["spec"]
    assert fields["allow_targets"] == ["staging.example:443"], "the pod checks the spec without the session"
    monkeypatch.setattr(targets, "_allowed", set())
    LoadSpec(**fields)  # as the pod does: no session allowance there


def test_the_image_holds_every_module_a_worker_imports(tmp_path: Path) -> None:
    for name, text in _load_sources().items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    # The worker's imports, with only the image's copy of chaoskit on the path (Locust from this environment).
    code = "import chaoskit.load.worker, chaoskit.load.distributed, chaoskit.load.locusts; print('ok')"
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
    imported = subprocess.run(
        [sys.executable, "-c", code.replace("print('ok')", "import chaoskit; print(chaoskit.__file__)")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert imported.stdout.strip() == str(tmp_path / "chaoskit" / "__init__.py"), "the copy, not the package"
