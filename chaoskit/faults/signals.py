"""SIGTERM unwinds like Ctrl-C, so every fault's ``finally`` runs; no signal cuts an undo short.

By default SIGTERM kills a Python process on the spot: no ``finally``, no
fixture teardown, the fault stays injected. CI runners and ``timeout`` send
SIGTERM. While a fault is held (:func:`held`), SIGTERM raises
KeyboardInterrupt in the main thread instead, which pytest and the command
line already handle by unwinding (fixtures torn down, context managers
exited). SIGKILL cannot be caught; the ledger and the sweeper cover it.

An undo must not be interrupted half-way (rules deleted on one node, not on
the other), yet runners often send SIGTERM twice. Inside :func:`deferred`,
SIGINT and SIGTERM are noted, not raised; when the block ends, the first one
is raised as KeyboardInterrupt. The signal that started the unwind is the
first; the second waits for the undo; a third, within :data:`FORCE_WINDOW_S`
of the second, forces the exit at once, saying what is left for ``chaoskit
cleanup`` (the ledger entry is still unsettled). The handlers are swapped
with both signals blocked, so none slips between the two swaps, and they
write with ``os.write``: a handler that printed while the undo itself was
printing would raise "reentrant call" inside the undo.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

FORCE_WINDOW_S = 2.0
"""A third signal within this many seconds of the previous one forces the exit during an undo."""
FORCED_EXIT_STATUS = 130


_unwound_at: float | None = None
"""When (monotonic) a signal last started an unwind (raised KeyboardInterrupt): it counts as the first of
the signals an undo that follows within :data:`UNWIND_COUNTS_S` receives."""
UNWIND_COUNTS_S = 60.0


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    global _unwound_at
    _unwound_at = time.monotonic()
    raise KeyboardInterrupt(f"received signal {signal.Signals(signum).name}")


_holders = 0
_held_before: dict[signal.Signals, Any] = {}
_held_lock = threading.Lock()


@contextmanager
def held() -> Iterator[None]:
    """While any fault is held: SIGTERM (and SIGINT, where it is Python's own) raise KeyboardInterrupt in the
    main thread, so the fault's undo runs. The first holder sets the handlers; the last to leave puts back what
    the process had, so faults may overlap in any order, and a session that holds no fault keeps its own
    handling (a pytest run that never injects is left as it was). Off the main thread nothing changes."""
    global _holders
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with _held_lock:
        _holders += 1
        if _holders == 1:
            wanted = {signal.SIGTERM} | (
                {signal.SIGINT} if signal.getsignal(signal.SIGINT) is signal.default_int_handler else set()
            )
            _held_before.clear()
            _held_before.update(_swap(wanted, _raise_interrupt))
    try:
        yield
    finally:
        with _held_lock:
            _holders -= 1
            if _holders == 0 and _held_before:
                _swap(set(_held_before), dict(_held_before))
                _held_before.clear()


def install() -> None:
    """Make SIGTERM raise KeyboardInterrupt for the rest of the process (the ``chaoskit`` command; pytest sessions
    hold it only while a fault is held: :func:`held`)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # Python's own: noted the same way
            signal.signal(signal.SIGINT, _raise_interrupt)


class _Deferral:
    def __init__(self, doing: str, exit: Callable[[int], object]) -> None:
        self.doing = doing
        self.exit = exit
        self.received: list[tuple[float, int]] = []
        started = time.monotonic()
        recent = _unwound_at is not None and started - _unwound_at <= UNWIND_COUNTS_S
        # Python's own SIGINT handler records nothing here; the interrupt it raised is being handled now.
        self.unwound = recent or isinstance(sys.exc_info()[1], KeyboardInterrupt)
        """Whether a signal started the unwind this undo is part of (it counts as the first)."""

    def handle(self, signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        name = signal.Signals(signum).name
        self.received.append((now, signum))
        count = len(self.received) + self.unwound
        if count >= 3 and len(self.received) >= 2 and now - self.received[-2][0] <= FORCE_WINDOW_S:
            _say(
                f"{name} again while {self.doing}: exiting now; what is left is in the ledger, "
                "undo it with 'chaoskit cleanup'"
            )
            self.exit(FORCED_EXIT_STATUS)
            return
        more = max(1, 3 - count)
        _say(
            f"{name} received while {self.doing}: finishing the undo first ({more} more within "
            f"{FORCE_WINDOW_S:g} s of each other force the exit)"
        )


def _say(line: str) -> None:
    os.write(2, f"[chaoskit] {line}\n".encode())


@contextmanager
def deferred(doing: str, exit: Callable[[int], object] = os._exit) -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM wait until it ends (main thread only); see the module docstring.

    ``doing`` says what the block does, for the lines printed when a signal arrives.
    """
    deferral = _Deferral(doing, exit)
    signals = {signal.SIGINT, signal.SIGTERM}
    try:
        if threading.current_thread() is not threading.main_thread():
            raise ValueError("signal handlers can only be set in the main thread")
        previous = _swap(signals, deferral.handle)
    except (ValueError, TypeError):
        # Another thread, or the interpreter shutting down (a fault block never left, closed by the
        # garbage collector): the undo runs without deferral.
        yield
        return
    failure: BaseException | None = None
    try:
        yield
    except BaseException as exc:
        failure = exc
        raise
    finally:
        _swap(signals, previous)
        if deferral.received:
            # The signal wins over a failure of the block: the run was asked to stop, and stops.
            raise KeyboardInterrupt(f"received signal {signal.Signals(deferral.received[0][1]).name}") from failure


def _swap(signals: set[signal.Signals], handler: Any) -> Any:
    """Set ``handler`` (one, or one per signal) with the signals blocked; return the handlers it replaced."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        return {sig: signal.signal(sig, handler[sig] if isinstance(handler, dict) else handler) for sig in signals}
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
