"""File locks between runs on one machine (files and processes only, no cluster): other processes really hold them.
Turns on the cluster are in test_turns.py."""

import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from chaoskit.state import locks


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CHAOSKIT_CACHE", str(tmp_path))
    yield tmp_path
    for proc in STARTED:
        stop(proc)
    STARTED.clear()


STARTED: list[subprocess.Popen[str]] = []


def stop(proc):
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    if proc.stdout is not None:
        proc.stdout.close()


def test_two_runs_choosing_a_node_port_at_once_are_handed_different_ones(cache):
    code = "from chaoskit.state import locks; print(locks.reserve_port('c1', [30080, 30081, 30082]))"
    env = {**os.environ, "CHAOSKIT_CACHE": str(cache)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code + "; import time; time.sleep(2)"], stdout=subprocess.PIPE, text=True, env=env
        )
        for _ in range(3)
    ]
    STARTED.extend(procs)
    chosen = [int(p.communicate(timeout=30)[0]) for p in procs]
    assert sorted(chosen) == [30080, 30081, 30082]
    time.sleep(0.1)
    assert locks.reserve_port("c1", [30080]) == 30080  # their processes ended: the reservations went with them
    assert locks.reserve_port("c1", [30080]) == 30080  # this process may ask again for its own


def test_a_machine_lock_makes_another_process_wait_and_a_killed_holder_lets_go(cache):
    code = textwrap.dedent(
        """
        import time
        from chaoskit.state import locks
        with locks.machine_lock("c1", "up"):
            print("held", flush=True)
            time.sleep(30)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "CHAOSKIT_CACHE": str(cache)},
    )
    STARTED.append(proc)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    started = time.monotonic()
    threading.Timer(1.0, proc.kill).start()
    with locks.machine_lock("c1", "up"):
        waited = time.monotonic() - started
    assert 0.8 < waited < 10, waited  # it waited for the holder, which the kill made let go
