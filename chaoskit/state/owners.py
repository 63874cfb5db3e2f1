"""Whether the process that owns something still runs: a fault in the ledger, a test namespace, a reserved
NodePort. One check for all of them, by pid, machine boot and start time."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import psutil

START_TIME_TOLERANCE = 2.0
"""Seconds two readings of one process's start time may differ by. psutil derives it from
the boot time, which the kernel reports in whole seconds and which moves when the clock is
adjusted; another process started within this of the recorded one is taken for the owner."""


def process_alive(pid: int, boot_id: str, started_at: float | None = None) -> bool:
    """Whether process ``pid`` of machine boot ``boot_id``, started at ``started_at``, still runs.

    The one liveness check of chaoskit, for ledger entries and test namespaces alike. A
    zombie is dead. A process with this pid and another start time (beyond
    :data:`START_TIME_TOLERANCE`) is an unrelated one that reused the pid: the owner is
    dead. ``started_at=None`` (records made before it was kept) checks boot and pid only.
    """
    if boot_id != _boot_id() or pid <= 0:
        return False
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        if started_at is not None and abs(process.create_time() - started_at) > START_TIME_TOLERANCE:
            return False
    except psutil.NoSuchProcess:  # also psutil.ZombieProcess
        return False
    except psutil.AccessDenied:
        return True  # it exists; whose it is cannot be told, so it is not swept
    return True


def process_started_at(pid: int) -> float | None:
    """When process ``pid`` started (Unix time), or None if it cannot be read."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def current_boot_id() -> str:
    """This machine boot's id (a pid is only meaningful within one boot)."""
    return _boot_id()


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def command_line(limit: int = 120) -> str:
    """This process's command line as a person would recognise it, at most ``limit`` characters."""
    words = [os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python", *sys.argv[1:]]
    if (words and words[0] in ("__main__.py", "-c", "-m")) or words[0].endswith("pytest/__main__.py"):
        words[0] = "python"
    text = " ".join(words)
    return text if len(text) <= limit else text[: limit - 3] + "..."
