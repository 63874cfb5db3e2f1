"""Bad input is refused before anything touches a cluster: file:line, exit 2, no traceback.

Every command here names a kind cluster that does not exist (``ck-none``): a command that got as far as
the cluster would fail saying so, so the refusal text proves nothing was reached. The real-cluster twin
(objects in every namespace the same before and after) is tests/cluster/test_gameday.py's.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chaoskit.errors import SpecError
from chaoskit.faults.safety import Safety, check_selector
from chaoskit.gameday.spec import MAX_FILE_BYTES, ExperimentFileError, load_experiment

FILE = """\
name: refused
namespace: {namespace}
load:
  host: http://127.0.0.1:30080
  paths: [/]
  users: 1
  run_seconds: 10
faults:
  - kind: pod-kill
    at: 2s
    selector: "{selector}"
objectives:
  - availability: 0.99
"""


def chaoskit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chaoskit.cli", *args], capture_output=True, text=True, timeout=60, check=False
    )


def write(tmp_path: Path, namespace: str = "shop", selector: str = "app=web") -> Path:
    path = tmp_path / "refused.chaos.yaml"
    path.write_text(FILE.format(namespace=namespace, selector=selector))
    return path


@pytest.mark.parametrize("dry", [[], ["--dry-run"]])
def test_a_file_naming_a_protected_namespace_is_refused_with_its_line_before_any_cluster(tmp_path, dry):
    done = chaoskit("run", str(write(tmp_path, namespace="kube-system")), "--name", "ck-none", *dry)
    assert done.returncode == 2, done
    assert f"{tmp_path}/refused.chaos.yaml:2: namespace: namespace 'kube-system' is protected" in done.stderr
    assert "Traceback" not in done.stderr and "ck-none" not in done.stderr


def test_allowing_the_namespace_on_the_command_line_lets_the_file_through_to_the_cluster(tmp_path):
    # The existing provider with a kubeconfig that is not there: it gets as far as the cluster and no further
    # (a kind name would create that cluster).
    done = chaoskit(
        "run",
        str(write(tmp_path, namespace="kube-system")),
        "--provider",
        "existing",
        "--kubeconfig",
        str(tmp_path / "no-kubeconfig"),
        "--context",
        "ck-none",
        "--allow-namespace",
        "kube-system",
    )
    assert done.returncode == 2 and "no-kubeconfig" in done.stderr, done


@pytest.mark.parametrize("selector", ["app in (web", "app=web;id", "app=$(touch /tmp/x)", "a b"])
def test_a_malformed_selector_is_refused_with_its_line_by_run_and_by_inject(tmp_path, selector):
    done = chaoskit("run", str(write(tmp_path, selector=selector)), "--name", "ck-none")
    assert done.returncode == 2 and "refused.chaos.yaml:11: faults[0].selector" in done.stderr, done
    assert "Traceback" not in done.stderr
    inject = chaoskit("inject", "pod-kill", "--name", "ck-none", "--namespace", "shop", "--selector", selector)
    assert inject.returncode == 2 and f"the selector {selector!r}" in inject.stderr, inject
    assert "Traceback" not in inject.stderr and "ck-none" not in inject.stderr


def test_inject_refuses_a_protected_namespace_before_any_cluster():
    done = chaoskit("inject", "pod-kill", "--name", "ck-none", "--namespace", "kube-system", "--selector", "app=x")
    assert done.returncode == 2 and "namespace 'kube-system' is protected" in done.stderr, done
    assert "allowed explicitly with --allow-namespace kube-system" in done.stderr, done.stderr  # its own flag
    assert "ck-none" not in done.stderr


def test_a_file_too_big_is_refused_at_once_without_being_parsed(tmp_path):
    huge = tmp_path / "huge.chaos.yaml"
    huge.write_text("name: x\n" + "# padding\n" * (MAX_FILE_BYTES // 10 + 1))
    started = time.monotonic()
    with pytest.raises(ExperimentFileError, match="too big to be an experiment file"):
        load_experiment(huge)
    print(f"refused in {time.monotonic() - started:.3f} s")
    done = chaoskit("run", str(huge), "--name", "ck-none")
    assert done.returncode == 2 and "huge.chaos.yaml: (file): is 1.0 MiB, too big" in done.stderr, done


def test_a_file_within_the_rules_is_judged_by_the_runs_safety():
    experiment = load_experiment(Path("experiments/web-pod-kill.chaos.yaml"))
    experiment.check_safety(Safety())  # namespace auto: nothing protected


@pytest.mark.parametrize(
    "selector",
    ["app=web", "app==web", "app!=web", "app in (web, db)", "app notin (a),tier", "!canary", "example.com/tier=front"],
)
def test_label_selectors_the_api_server_takes_pass(selector):
    check_selector(selector)


@pytest.mark.parametrize(
    ("selector", "says"),
    [
        ("app in (web", "never closed"),
        ("app in web)", "without its '('"),
        ("app=a b", "cannot read"),
        ("app=-web", "not a label value"),
        ("app in ()", "lists no value"),
        ("-app=web", "not a label key"),
        ("", "every pod"),
    ],
)
def test_malformed_label_selectors_are_refused_naming_the_problem(selector, says):
    with pytest.raises(SpecError, match=re.escape(says)):
        check_selector(selector)
