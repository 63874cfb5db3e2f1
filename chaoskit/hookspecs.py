"""The chaoskit pytest plugin's hooks: implement them in a ``conftest.py`` or a plugin.

Every fault a test runs through the ``chaos`` fixture (an experiment's faults
included) calls them in order:

* :func:`pytest_chaoskit_fault_planned` once its targets are chosen, before
  anything acts; it may veto the fault,
* :func:`pytest_chaoskit_fault_injected` once its effect was seen,
* :func:`pytest_chaoskit_fault_undone` once its undo is over,

and every experiment calls :func:`pytest_chaoskit_experiment_result` with its
result as soon as it exists (before its verdict is checked). A veto skips the
test with the reason, and the report shows the fault as vetoed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from chaoskit.faults.base import FaultRecord
    from chaoskit.results import ExperimentResult

hookspec = pytest.hookspec


@hookspec
def pytest_chaoskit_fault_planned(record: FaultRecord) -> bool | str | None:
    """A fault is planned (``record.kind``, ``record.targets``, ``record.spec``) and nothing has acted.

    Return False, or a string saying why, to veto it: it raises
    :class:`~chaoskit.FaultVetoed` before it acts, the test skips with the
    reason (every hook's string, joined) and the report shows it. Return None
    to let it run.
    """


@hookspec
def pytest_chaoskit_fault_injected(record: FaultRecord) -> None:
    """A fault acted and its effect was seen from outside (``record.effect``, ``record.inject_to_effect``)."""


@hookspec
def pytest_chaoskit_fault_undone(record: FaultRecord) -> None:
    """A fault's undo is over: ``record.reverted`` is True when it was proven (``record.undo_proof``),
    else ``record.undo_error`` says what may be left. Faults with nothing to undo (a killed pod) call it
    when their block ends."""


@hookspec
def pytest_chaoskit_experiment_result(result: ExperimentResult) -> None:
    """An experiment ended: ``result.outcome``, ``result.verdict``, ``result.faults``, ``result.headline()``."""
