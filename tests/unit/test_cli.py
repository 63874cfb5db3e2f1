"""The command line as a user meets it: bad input gives one line and exit 2, no traceback."""

import os
import subprocess
import sys


def chaoskit(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "chaoskit.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def one_line_error(result):
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_unknown_provider():
    line = one_line_error(chaoskit("cluster", "status", "--provider", "minikube"))
    assert line == "chaoskit: error: unknown cluster provider 'minikube': choose one of kind, existing"


def test_missing_kubeconfig_context(tmp_path):
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\nclusters: []\nusers: []\n"
        "contexts: [{name: real, context: {cluster: c, user: u}}]\ncurrent-context: real\n"
    )
    line = one_line_error(
        chaoskit("cluster", "status", "--provider", "existing", "--kubeconfig", str(kubeconfig), "--context", "nope")
    )
    assert "context 'nope'" in line and "kubectl config get-contexts" in line


def test_docker_daemon_not_running(tmp_path):
    # A socket path where no daemon listens is what a stopped daemon looks like to the client.
    env = {"DOCKER_HOST": f"unix://{tmp_path}/docker.sock"}
    line = one_line_error(chaoskit("cluster", "status", env=env))
    assert "the Docker daemon is not running" in line and "chaoskit cluster up" in line


def test_bad_node_ports():
    line = one_line_error(chaoskit("cluster", "up", "--node-ports", "lots", "--no-provision"))
    assert "--node-ports 'lots' is not FIRST-LAST" in line
