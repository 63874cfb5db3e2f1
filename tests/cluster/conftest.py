"""The cluster tests on pytest-xdist workers (``pytest tests/cluster -n 2``; ``make test`` runs them in one
process, as two workers were no faster on 2 cores): turns on one cluster.

Most cluster tests keep to their own namespace, NodePort and pods, and run side by side. A test that needs
the cluster to itself waits until no other test runs, and none starts while it runs:

- one marked ``destructive`` (it stops or restarts nodes, installs or deletes the injector agent, or
  crashes a run in a subprocess and sweeps what it left);
- one that injects a node-wide fault (found in its code, as ``pytest -n`` finds it for experiments:
  :func:`chaoskit.parallel.node_wide_test`), since such a fault touches every pod of its nodes;
- one marked ``cluster_alone`` (it judges timings that another test's load would disturb).

The turns are a reader-writer lock on two files in the session's shared temporary directory, apart from
chaoskit's own locks (a test's own subprocesses take those, and would deadlock on a lock their test holds).
The ``gate`` file gives a waiting lone test priority: once it waits, no shared test starts."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from chaoskit.parallel import node_wide_test


def needs_cluster_alone(item: pytest.Item) -> bool:
    """Whether ``item`` must run with no other cluster test beside it (see the module's docstring)."""
    if item.get_closest_marker("destructive") or item.get_closest_marker("cluster_alone"):
        return True
    return node_wide_test(Path(str(item.config.rootpath)), item.nodeid)


@contextmanager
def turn(directory: Path, alone: bool) -> Iterator[float]:
    """Hold the suite's cluster shared (``alone=False``) or alone; yields the seconds it waited for it."""
    gate = os.open(directory / "cluster-turns.gate", os.O_RDWR | os.O_CREAT, 0o644)
    main = os.open(directory / "cluster-turns.lock", os.O_RDWR | os.O_CREAT, 0o644)
    start = time.monotonic()
    try:
        if alone:
            fcntl.flock(gate, fcntl.LOCK_EX)  # shared tests that have not started yet wait behind this one
            fcntl.flock(main, fcntl.LOCK_EX)
        else:
            fcntl.flock(gate, fcntl.LOCK_SH)
            fcntl.flock(main, fcntl.LOCK_SH)
            fcntl.flock(gate, fcntl.LOCK_UN)
        yield time.monotonic() - start
    finally:
        os.close(main)  # closing drops the locks
        os.close(gate)


@pytest.fixture(autouse=True)
def cluster_turn(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Under ``pytest -n``: this test's turn on the cluster, around its own fixtures and body. How long it
    waited, and whether alone, goes into the JUnit report (``cluster_turn``)."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        yield
        return
    shared_dir = tmp_path_factory.getbasetemp().parent  # one directory for every worker of the session
    alone = needs_cluster_alone(request.node)
    with turn(shared_dir, alone) as waited:
        request.node.user_properties.append(
            ("cluster_turn", f"{'alone' if alone else 'shared'}, waited {waited:.1f} s")
        )
        yield
