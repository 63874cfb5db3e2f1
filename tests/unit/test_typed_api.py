"""The fault methods a user calls have real, typed signatures that agree with the specs behind them."""

from __future__ import annotations

import dataclasses
import inspect
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from chaoskit import (
    BandwidthSpec,
    Chaos,
    ContainerKillSpec,
    LatencySpec,
    NodeDrainSpec,
    NodeFailureSpec,
    PacketLossSpec,
    PartitionSpec,
    PodKillSpec,
)

ROOT = Path(__file__).resolve().parents[2]

METHODS = {
    "pod_kill": PodKillSpec,
    "node_failure": NodeFailureSpec,
    "node_drain": NodeDrainSpec,
    "container_kill": ContainerKillSpec,
    "partition": PartitionSpec,
    "packet_loss": PacketLossSpec,
    "bandwidth": BandwidthSpec,
    "latency": LatencySpec,
}


@pytest.mark.parametrize(("method", "spec"), METHODS.items())
def test_each_fault_method_takes_exactly_its_specs_fields_with_the_same_defaults(method, spec):
    parameters = dict(inspect.signature(getattr(Chaos, method)).parameters)
    parameters.pop("self")
    assert parameters.pop("max_share").kind is inspect.Parameter.KEYWORD_ONLY
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()), "no **options"
    fields = {f.name: f for f in dataclasses.fields(spec)}
    assert list(parameters) == list(fields)
    for name, parameter in parameters.items():
        field = fields[name]
        if field.default is dataclasses.MISSING:
            assert parameter.default is inspect.Parameter.empty, name
        else:
            assert parameter.default == field.default, name
    assert "AbstractContextManager[FaultRecord]" in str(inspect.signature(getattr(Chaos, method)).return_annotation)


def test_the_wheel_ships_its_data_and_a_users_test_file_passes_mypy_strict_against_it(tmp_path: Path):
    """What ``pip install chaoskit`` gives a user's own repository: the wheel built from this checkout, its
    files, and ``mypy --strict`` on a test file outside the repository, resolving chaoskit from the wheel."""
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(tmp_path / "dist")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (tmp_path / "dist").glob("chaoskit-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = set(archive.namelist())
        archive.extractall(tmp_path / "site")
    tracked = subprocess.run(["git", "ls-files", "chaoskit"], capture_output=True, text=True, cwd=ROOT, check=True)
    data = [name for name in tracked.stdout.split() if not name.endswith(".py")]
    assert "chaoskit/py.typed" in data and not [name for name in data if name not in shipped], data
    user = tmp_path / "their-repo" / "test_theirs.py"
    user.parent.mkdir()
    user.write_text((ROOT / "tests" / "typing" / "user_experiments.py").read_text())
    mypy = [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--python-executable", sys.executable]
    result = subprocess.run(
        [*mypy, user.name],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=user.parent,
        env={**os.environ, "PYTHONPATH": str(tmp_path / "site")},  # an installed package, ahead of the checkout
    )
    assert result.returncode == 0, result.stdout + result.stderr
