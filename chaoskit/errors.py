"""The error types of chaoskit.

Every error a user can meet derives from :class:`ChaoskitError` and carries a
message that says what to do, so the command line and the pytest plugin can
print it on one line without a traceback. Errors that a retry may cure are
:class:`RetryableError` and carry the delay to wait; everything else is
permanent.
"""

from __future__ import annotations


class ChaoskitError(Exception):
    """Base of every chaoskit error; its message is meant for the user."""


class PermanentError(ChaoskitError):
    """An error that retrying will not fix (bad input, missing tool)."""


class RetryableError(ChaoskitError):
    """An error that may pass if the same call is made again after ``delay`` seconds."""

    def __init__(self, message: str, delay: float = 1.0) -> None:
        super().__init__(message)
        self.delay = delay


class UsageError(PermanentError):
    """Bad input from the user: an unknown option value, a missing context."""


class ProvisionError(PermanentError):
    """A step of setting up the machine (packages, images, Docker) failed."""


class ClusterError(ChaoskitError):
    """The cluster could not be created, reached or repaired."""


class CommandTimedOut(ClusterError):
    """A host command, a Docker call or an API request ran past the timeout stated at its call."""


class FaultUndoFailed(ClusterError):
    """A fault's undo could not be proven: what it left may still be in place.

    Its ledger entry stays unsettled, so ``chaoskit cleanup`` (or the next
    session) tries again; the message names what is left and where.
    """


class SpecError(UsageError):
    """A fault or SLO spec that cannot be run as written; raised before anything is injected."""


class SafetyError(UsageError):
    """A fault refused by a safety rule (protected namespace, blast radius, foreign cluster)."""


class FaultNotEffective(ChaoskitError):
    """A fault was injected but its effect could not be observed: the test cannot trust it."""


class FaultUnsupported(ChaoskitError):
    """A fault this cluster or kernel cannot run (netem missing): a test skips with this reason."""


class FaultBlocked(ChaoskitError):
    """A fault that waited too long for its nodes while another run's faults held them
    (:mod:`chaoskit.faults.runlock`): nothing was injected; it fails the test, naming those faults."""


class FaultVetoed(ChaoskitError):
    """A fault refused by a hook before it acted (``pytest_chaoskit_fault_planned`` returned False or a
    reason, or :class:`~chaoskit.faults.FaultHooks.planned` did): nothing was injected; a test skips."""


class RunAborted(ChaoskitError):
    """The run was aborted (a stop condition tripped, or ``chaoskit abort`` from another terminal): its
    faults were undone, and no new fault may start."""
