"""SIGTERM unwinds like Ctrl-C, so every fault's ``finally`` runs.

By default SIGTERM kills a Python process on the spot: no ``finally``, no
fixture teardown, the fault stays injected. CI runners and ``timeout`` send
SIGTERM. While :func:`sigterm_unwinds` is active, SIGTERM raises
KeyboardInterrupt in the main thread instead, which pytest and the command
line already handle by unwinding (fixtures torn down, context managers
exited). SIGKILL cannot be caught; the ledger and the sweeper cover it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"received signal {signal.Signals(signum).name}")


@contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def install() -> None:
    """Make SIGTERM raise KeyboardInterrupt for the rest of the process (pytest sessions)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)
