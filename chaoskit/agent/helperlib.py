"""What every helper a fault starts in a pod's namespace needs: the watch that ends it when it is not wanted.

Stdlib only. Not copied on its own: a helper imports it as
``from chaoskit.agent.helperlib import ...`` (so its tests can), and
:func:`chaoskit.faults.netrules.helper_source` writes this file's code in that
line's place, so the helper stays one file on the node.
"""

import os
import subprocess
import threading
import time

WATCH_SECONDS = 1.0
"""How often the watch looks for the helper's rules."""
RULE_GRACE = 15.0
"""How long after start the rules may take to appear before the helper gives up."""
ALONE_SECONDS = 10.0
"""How often the watch looks for another process in the namespace (none left: the pod is gone)."""


def rules_present(table: str, tag: str) -> bool | None:
    """Whether the namespace's ``table`` holds a rule with comment ``tag`` (None: it could not be read)."""
    try:
        listing = subprocess.run(
            ["iptables-save", "-t", table], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if listing.returncode != 0:
        return None
    return any(word.strip('"') == tag for line in listing.stdout.splitlines() for word in line.split())


def others_in_namespace() -> bool:
    """Whether any other process shares this process's network namespace."""
    mine = os.readlink("/proc/self/ns/net")
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != me:
            try:
                if os.readlink(f"/proc/{entry}/ns/net") == mine:
                    return True
            except OSError:
                continue
    return False


class Watch(threading.Thread):
    """Sets ``stop`` (``reason`` says why) when the helper's rules are gone or never appeared, or when no other
    process is left in its namespace; ``stop`` may also be set from outside (a signal)."""

    def __init__(self, table: str, tag: str | None) -> None:
        super().__init__(daemon=True)
        self.table = table
        self.tag = tag
        self.stop = threading.Event()
        self.reason = ""

    def run(self) -> None:
        started = last_alone_check = time.monotonic()
        seen = False
        while not self.stop.wait(WATCH_SECONDS):
            present = rules_present(self.table, self.tag) if self.tag else True
            now = time.monotonic()
            if present:
                seen = True
            elif present is False and (seen or now - started > RULE_GRACE):
                self.reason = "its rules are gone" if seen else "its rules never appeared"
                self.stop.set()
            if now - last_alone_check >= ALONE_SECONDS:
                last_alone_check = now
                if not others_in_namespace():
                    self.reason = "no other process is left in the namespace"
                    self.stop.set()
