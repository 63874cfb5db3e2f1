"""Game days as a person runs them: ``chaoskit run FILE`` in a terminal (tmux), in CI (no terminal),
aborted by a stop condition, by a key and by ``chaoskit abort`` from another terminal.

What is on screen is read with ``tmux capture-pane``; what is left in the cluster is counted by
:mod:`residue`, the independent scan (Docker CLI and the official client).
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from residue import Residue, scan
from workloads import UNDONE_AT_ONCE

from chaoskit.state.ledger import Ledger

REPO = Path(__file__).resolve().parents[2]
CHAOSKIT = [sys.executable, "-m", "chaoskit.cli"]

EXPERIMENT = """\
name: {name}
namespace: auto
deploy:
  images: {{web: {repo}/fixtures/web}}
  manifests: [{repo}/experiments/systems/web-tier.yaml]
  wait: [Deployment/web]
workloads:
  - {{kind: Deployment, name: web, service: web}}
load:
  paths: [/]
  users: 4
  rate_per_user: 10
  run_seconds: {run_seconds}
  warmup_seconds: 2
  timeout_seconds: 1
faults:
{faults}
stop_conditions:
{stops}
objectives:
  - availability: 0.5
settle_seconds: 2
"""

HELD_PARTITION = """\
  - kind: partition
    at: 2s
    duration: {duration}
    selector: app=web
    count: 1
"""


def write(tmp_path: Path, faults: str, stops: str = "  - error_burst_over_seconds: 30", run_seconds: int = 60) -> Path:
    path = tmp_path / "game.chaos.yaml"
    name = f"game day {uuid.uuid4().hex[:6]}"
    path.write_text(EXPERIMENT.format(name=name, repo=REPO, faults=faults, stops=stops, run_seconds=run_seconds))
    return path


def chaoskit(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CHAOSKIT, *args], capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO)


def residue(cluster) -> Residue:
    return scan(cluster.name, str(cluster.kubeconfig))


def journal(directory: Path) -> dict:
    (experiment,) = json.loads((directory / "chaoskit-journal.json").read_text())["experiments"]
    return experiment


def wait_for(what: str, check: Callable[[], object], within: float = 120, every: float = 0.2) -> object:
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(every)


def unsettled(cluster, path: Path) -> list[str]:
    """Faults in place that the run of ``path`` injected (the ledger records each injector's command line)."""
    return [e.fault_id for e in Ledger(cluster.name).unsettled() if str(path) in e.command]


def ledger_lines_since(cluster, offset: int) -> str:
    try:
        with open(Ledger(cluster.name).path, "rb") as ledger:
            ledger.seek(offset)
            return ledger.read().decode()
    except FileNotFoundError:  # a new cluster whose ledger nothing has written yet
        return ""


# --- bad files ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "where", "expected"),
    [
        (lambda t: t.replace("objectives:\n  - availability: 0.5\n", ""), "name:", "objectives: is missing; add "),
        (lambda t: t.replace("kind: partition", "kind: partishun"), "kind: partishun", "faults[0].kind: unknown fault"),
        (lambda t: t.replace("duration: 5s", 'duration: "-5s"'), "duration:", 'faults[0].duration: "-5s" is not a'),
        (lambda t: t.replace("selector: app=web", "selector: app=none"), "kind: partition", "matches no pod"),
    ],
    ids=["missing-field", "unknown-kind", "negative-duration", "selector-matches-nothing"],
)
def test_a_bad_file_is_refused_before_anything_is_injected(
    cluster, tmp_path: Path, change: Callable[[str], str], where: str, expected: str
) -> None:
    path = write(tmp_path, HELD_PARTITION.format(duration="5s"))
    path.write_text(change(path.read_text()))
    line = 1 + next(i for i, text in enumerate(path.read_text().splitlines()) if where in text)
    before = Ledger(cluster.name).size()
    result = chaoskit("run", str(path), "--report-dir", str(tmp_path))
    namespaces = [w for w in result.stderr.split() if w.startswith("ck-game-day-")]
    assert result.returncode == 2, result
    errors = [text for text in result.stderr.splitlines() if text.startswith("chaoskit: error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"chaoskit: error: {path}:{line}: "), result.stderr
    assert expected in errors[0] and "; " in errors[0], errors  # the problem, then the fix
    written = ledger_lines_since(cluster, before)
    assert str(path) not in written and not any(ns in written for ns in namespaces), "nothing was injected"
    assert not (tmp_path / "chaoskit-journal.json").exists()


# --- without a terminal (CI) --------------------------------------------------------------------------


@pytest.mark.cluster_alone  # its scan of the whole cluster must see no other test's fault
def test_a_stop_condition_trips_undoes_the_faults_at_once_and_fails_the_run(cluster, tmp_path: Path) -> None:
    faults = """\
  - kind: partition
    at: 2s
    duration: 30s
    selector: app=web
    max_share: 1.0
"""
    path = write(tmp_path, faults, stops="  - availability_below: 0.8\n    over_seconds: 3")
    result = chaoskit("run", str(path), "--report-dir", str(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "aborted by stop condition availability below 80% over 3 s at t=" in result.stdout, result.stdout
    lines = [line for line in result.stderr.splitlines() if line.startswith("[chaoskit] game day")]
    # One line per stage (warm-up, the partition pending, held, the abort...), not one a second.
    assert 3 <= len(lines) <= 12 and all(" | faults: " in line for line in lines), lines
    assert len(set(lines)) == len(lines), lines
    run = journal(tmp_path)
    assert run["verdict"]["aborted"].startswith("aborted by stop condition")
    events = {e["kind"]: e["at"] for e in run["events"]}
    took = events["abort-undone"] - events["aborted"]
    assert 0 <= took < UNDONE_AT_ONCE, f"faults undone {took:.2f} s after the trip"
    assert (tmp_path / "chaoskit-junit.xml").read_text().count("<failure") == 1
    assert residue(cluster).empty() and unsettled(cluster, path) == []
    tripped_at = events["aborted"] - run["started"]
    print(f"stop condition tripped at t={tripped_at:.1f} s; faults undone {took * 1000:.0f} ms later")


@pytest.mark.cluster_alone  # its scan of the whole cluster must see no other test's fault
def test_chaoskit_abort_from_another_terminal_undoes_a_live_run(cluster, tmp_path: Path) -> None:
    path = write(tmp_path, HELD_PARTITION.format(duration="40s"))
    run = subprocess.Popen(
        [*CHAOSKIT, "run", str(path), "--report-dir", str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        (fault_id,) = wait_for("the partition to be injected", lambda: unsettled(cluster, path))
        wait_for("the rules to be in place", lambda: residue(cluster).of(fault_id), within=30)
        started = time.monotonic()
        aborted = chaoskit("abort", "--name", cluster.name)
        undone_after = time.monotonic() - started
        assert aborted.returncode == 0, aborted.stdout + aborted.stderr
        assert residue(cluster).of(fault_id) == []
        output, _ = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    reported = re.search(r"1 fault\(s\) undone in ([0-9.]+) s", aborted.stdout)
    assert reported and float(reported[1]) < UNDONE_AT_ONCE, aborted.stdout
    assert undone_after < 60, f"chaoskit abort took {undone_after:.1f} s"
    assert run.returncode == 1, output
    assert "ABORTED: aborted externally by chaoskit abort (pid " in output, output
    assert residue(cluster).empty() and unsettled(cluster, path) == []


# --- in a terminal, as a person ----------------------------------------------------------------------


class Terminal:
    """A tmux session running one command; the pane stays after the command ends, for reading."""

    def __init__(self, command: list[str], tmp_path: Path) -> None:
        self.name = f"ck-{uuid.uuid4().hex[:8]}"
        self.done = tmp_path / "exit-status"
        script = f"cd {REPO} && {' '.join(command)}; echo $? > {self.done}; sleep 600"
        subprocess.run(
            ["tmux", "new-session", "-d", "-s", self.name, "-x", "200", "-y", "50", script], check=True, timeout=30
        )

    def screen(self) -> str:
        return subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", self.name], capture_output=True, text=True, check=True, timeout=30
        ).stdout

    def press(self, key: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, key], check=True, timeout=30)

    def wait(self, what: str, check: Callable[[], object], within: float, every: float = 0.2) -> object:
        """:func:`wait_for`, naming the screen when it gives up."""
        try:
            return wait_for(what, check, within, every)
        except AssertionError as e:
            raise AssertionError(f"{e}; the screen:\n{self.screen()}") from None

    def wait_screen(self, *texts: str, within: float = 120) -> str:
        def shown() -> str | None:
            screen = self.screen()
            return screen if all(t in screen for t in texts) else None

        return str(self.wait(f"{texts} on screen", shown, within, 0.3))

    def exit_status(self, within: float = 120) -> int:
        self.wait("the command to end", lambda: self.done.exists() and self.done.read_text().strip(), within)
        return int(self.done.read_text())

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True, timeout=30)


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Callable[[list[str]], Terminal]]:
    if shutil.which("tmux") is None:
        pytest.fail("tmux is missing: 'chaoskit cluster up' installs it (Debian's tmux) with the other host packages")
    opened: list[Terminal] = []

    def open_(command: list[str]) -> Terminal:
        opened.append(Terminal(command, tmp_path))
        return opened[-1]

    yield open_
    for t in opened:
        t.close()


@pytest.mark.cluster_alone  # its scan of the whole cluster must see no other test's fault
def test_the_live_view_shows_the_fault_and_the_numbers_and_a_aborts(cluster, tmp_path: Path, terminal) -> None:
    path = write(tmp_path, HELD_PARTITION.format(duration="40s"))
    term = terminal([*CHAOSKIT, "run", str(path), "--report-dir", str(tmp_path)])
    screen = term.wait_screen("injected, proven", "req/s", "keys: p pause")
    (fault_id,) = unsettled(cluster, path)
    assert residue(cluster).of(fault_id), "the fault on screen is in the cluster"
    assert "partition web-" in screen and "RUNNING" in screen and "web " in screen and " ready" in screen, screen
    assert "error burst" in screen and "(stop over 30 s)" in screen, screen
    # The time left is the run's (the partition's 40 s from 2 s, then the 2 s settle), not the load's 60 s limit.
    left = re.search(r"remaining (\d+) s", screen)
    assert left is not None and 30 <= int(left.group(1)) <= 44, screen
    term.press("a")
    assert term.exit_status() == 1
    final = term.screen()
    assert "FAILED game day" in final and "ABORTED: aborted by the operator" in final, final
    assert residue(cluster).empty() and unsettled(cluster, path) == []
    print("on screen while injected:\n" + screen)


@pytest.mark.cluster_alone  # its scan of the whole cluster must see no other test's fault
def test_p_pauses_undoing_the_fault_and_r_injects_it_again(cluster, tmp_path: Path, terminal) -> None:
    path = write(tmp_path, HELD_PARTITION.format(duration="20s"), run_seconds=90)
    term = terminal([*CHAOSKIT, "run", str(path), "--report-dir", str(tmp_path)])
    term.wait_screen("injected, proven")
    placed = unsettled(cluster, path)
    assert len(placed) == 1, (placed, term.screen())
    first = placed[0]
    assert residue(cluster).of(first), term.screen()
    term.press("p")
    term.wait_screen("PAUSED", "undone for the pause")
    assert residue(cluster).of(first) == [] and unsettled(cluster, path) == [], "a pause undoes the fault"
    term.press("r")
    screen = term.wait_screen("RUNNING", "injected, proven")
    placed = unsettled(cluster, path)
    assert len(placed) == 1, (placed, screen)
    second = placed[0]
    assert second != first and residue(cluster).of(second), "resume injects it again, as a new fault"
    assert "resumed: 1 fault(s) injected again" in screen, screen
    assert term.exit_status(within=180) == 0, term.screen()
    assert "PASSED game day" in term.screen()
    assert residue(cluster).empty() and unsettled(cluster, path) == []
    run = journal(tmp_path)
    assert [f["kind"] for f in run["faults"]] == ["partition", "partition"]
    assert {"paused", "resumed"} <= {e["label"] for e in run["events"] if e["kind"] == "mark"}


# --- one fault by hand --------------------------------------------------------------------------------


@pytest.mark.cluster_alone  # its scan of the whole cluster must see no other test's fault
def test_inject_holds_one_fault_with_a_countdown_and_undoes_it(cluster, web) -> None:
    result = chaoskit(
        "inject", "partition", "--namespace", web.namespace, "--selector", "app=web", "--count", "1",
        "--duration", "3s", "--watch", f"{web.namespace}/web",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    injected = next(line for line in result.stdout.splitlines() if " injected and proven: " in line)
    fault_id = injected.split(":")[0]
    assert f"{fault_id}: undone and proven: " in result.stdout, result.stdout
    countdown = [line for line in result.stderr.splitlines() if line.startswith("[chaoskit] held: ")]
    assert len(countdown) >= 3 and "s left" in countdown[0] and " ready" in countdown[0], result.stderr
    assert residue(cluster).empty() and fault_id not in [e.fault_id for e in Ledger(cluster.name).unsettled()]


@pytest.mark.cluster_alone  # its scan of the whole cluster must see no other test's fault
def test_ctrl_c_during_inject_undoes_the_fault(cluster, web) -> None:
    proc = subprocess.Popen(
        [*CHAOSKIT, "inject", "partition", "--namespace", web.namespace, "--selector", "app=web", "--count", "1",
         "--duration", "5m"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        injected = proc.stdout.readline()
        assert " injected and proven: " in injected, injected
        fault_id = injected.split(":")[0]
        assert residue(cluster).of(fault_id)
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, rest
    assert f"{fault_id}: interrupted after " in rest and f"{fault_id}: undone and proven: " in rest, rest
    assert residue(cluster).empty()


@pytest.mark.cluster_alone  # its scan of the whole cluster must see no other test's fault
def test_dry_run_prints_the_plan_with_resolved_targets_and_injects_nothing(cluster, kube, web, tmp_path: Path) -> None:
    system = tmp_path / "system.chaos.yaml"  # a system already there: its targets are resolved now
    system.write_text(
        f"name: dry\nnamespace: {web.namespace}\nworkloads:\n  - {{kind: Deployment, name: web}}\n"
        f"load:\n  host: http://127.0.0.1:{web.node_port}\n  paths: [/]\n  users: 1\n  run_seconds: 60\n"
        f"faults:\n{HELD_PARTITION.format(duration='5s')}stop_conditions:\n  - error_burst_over_seconds: 30\n"
        "objectives:\n  - availability: 0.5\n"
    )
    before = Ledger(cluster.name).size()
    result = chaoskit("run", str(system), "--dry-run", "--report-dir", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "at 2 s, for 5 s: partition would hit web-" in result.stdout, result.stdout
    assert "stop condition: error burst over 30 s" in result.stdout, result.stdout
    assert "dry run: nothing was deployed or injected" in result.stdout
    assert str(system) not in ledger_lines_since(cluster, before), "a dry run writes no fault to the ledger"
    assert not (tmp_path / "chaoskit-journal.json").exists() and residue(cluster).empty()

    # A fault the plan refuses is said as the file's own problems are: located, with its fix, exit 2.
    system.write_text(system.read_text().replace("selector: app=web", "selector: app=nothing"))
    result = chaoskit("run", str(system), "--dry-run", "--report-dir", str(tmp_path))
    assert result.returncode == 2, result.stdout + result.stderr
    line = system.read_text().splitlines().index("  - kind: partition") + 1
    said = result.stdout + result.stderr
    assert f"{system}:{line}: faults[0]: partition cannot run: " in said, said
    assert "; fix its options (or the system it targets) before the run; nothing was injected" in said, said
    assert "Traceback" not in said and residue(cluster).empty()

    deployed = write(tmp_path, HELD_PARTITION.format(duration="5s"))  # one the run would deploy: nothing is
    objects = cluster_objects(kube)
    result = chaoskit("run", str(deployed), "--dry-run", "--report-dir", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "at 2 s, for 5 s: partition (selector=app=web, count=1)" in result.stdout, result.stdout
    assert cluster_objects(kube) - objects == set(), "a dry run deployed something"


def cluster_objects(kube) -> set[str]:
    """Every namespace, Deployment, StatefulSet, DaemonSet, Service and ConfigMap of the cluster, by name."""
    found = {f"Namespace/{n.metadata.name}" for n in kube.core.list_namespace().items}
    listings = {
        "Deployment": kube.apps.list_deployment_for_all_namespaces,
        "StatefulSet": kube.apps.list_stateful_set_for_all_namespaces,
        "DaemonSet": kube.apps.list_daemon_set_for_all_namespaces,
        "Service": kube.core.list_service_for_all_namespaces,
        "ConfigMap": kube.core.list_config_map_for_all_namespaces,
    }
    for kind, listing in listings.items():
        found |= {f"{kind}/{o.metadata.namespace}/{o.metadata.name}" for o in listing().items}
    return found


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (("namespace: auto", "namespace: kube-system"), "namespace: namespace 'kube-system' is protected"),
        (("selector: app=web", "selector: app in (web"), "faults[0].selector: the selector 'app in (web'"),
    ],
)
def test_a_refused_file_touches_nothing_through_run_dry_run_or_pytest(
    cluster, kube, tmp_path: Path, edit, says
) -> None:
    path = write(tmp_path, HELD_PARTITION.format(duration="5s"))
    path.write_text(path.read_text().replace(*edit))
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if edit[1] in text)
    objects = cluster_objects(kube)
    for dry in ([], ["--dry-run"]):
        result = chaoskit("run", str(path), *dry, "--report-dir", str(tmp_path))
        assert result.returncode == 2 and f"{path}:{line}: {says}" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", str(path), "-p", "no:cacheprovider", "-q"],
        capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert collected.returncode == 2 and "ERROR collecting" in collected.stdout, collected.stdout
    assert f"{path}:{line}: {says}" in collected.stdout, collected.stdout
    # Nothing appeared (another test's namespace may vanish meanwhile: its teardown deletes it in the background).
    assert cluster_objects(kube) - objects == set(), "a refused file touched the cluster"


def test_a_steady_state_that_does_not_hold_fails_the_run_before_any_fault_and_is_reported(
    cluster, tmp_path: Path
) -> None:
    path = write(tmp_path, HELD_PARTITION.format(duration="5s"))
    text = path.read_text().replace(
        "faults:\n",
        "steady_state:\n  seconds: 3\n  objectives:\n    - latency: {percentile: 50, at_most_ms: 0.001}\nfaults:\n",
    )
    path.write_text(text)
    before = Ledger(cluster.name).size()
    result = chaoskit("run", str(path), "--report-dir", str(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "ABORTED: the steady state does not hold before any fault, so nothing was injected" in result.stdout
    run = journal(tmp_path)
    assert run["faults"] == [] and run["verdict"]["measurements"][0]["objective"] == "p50 latency"
    assert not run["verdict"]["measurements"][0]["passed"] and run["load"]["phase"] == "steady state"
    assert str(path) not in ledger_lines_since(cluster, before), "nothing was injected"
