"""Inner pytest runs that hold a fault until a test stops them, and ``chaoskit cleanup`` as a user types it: what
the crash matrix (test_fault_residue.py) and the scoped commands (test_scoped_commands.py) drive."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

INNER = """
import pathlib, time
{prelude}

def test_hold_a_fault(chaos, kube):
    with {fault} as record:
        pathlib.Path("{marker}").write_text(record.fault_id)
        {during}
"""
HOLD = "time.sleep(300)"


def start_inner_run(
    tmp_path: Path, fault: str, during: str = HOLD, prelude: str = "", injector: str | None = None
) -> tuple[subprocess.Popen[str], str]:
    """A pytest run in a subprocess that injects ``fault`` (code using ``chaos``), then runs ``during``;
    through ``injector`` when given (the outer session's ``--chaos-injector``).

    Returns once the fault is injected and proven, with the fault's id."""
    marker = tmp_path / "injected"
    test_file = tmp_path / "test_inner.py"
    test_file.write_text(textwrap.dedent(INNER).format(fault=fault, marker=marker, during=during, prelude=prelude))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            str(test_file),
            "-p",
            "no:cacheprovider",
            "-q",
            "-s",
            *(["--chaos-injector", injector] if injector else []),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 180
    while not marker.exists() or not marker.read_text():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "the inner run never injected its fault"
        time.sleep(0.1)
    return proc, marker.read_text()


def cleanup(cluster, injector: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "chaoskit.cli",
            "cleanup",
            "--name",
            cluster.name,
            *(["--injector", injector] if injector else []),
        ],
        capture_output=True,
        text=True,
        timeout=400,
    )
