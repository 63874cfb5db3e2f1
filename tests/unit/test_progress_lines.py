"""chaoskit's progress lines: plain ``[chaoskit] ...`` into a file or pipe (CI logs), rich's handler on a terminal."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

SAY = (
    "from chaoskit.adapters.shell import say, warn; say('cluster chaoskit ready in 3 s'); warn('a namespace was left')"
)


def test_a_pipe_gets_plain_prefixed_lines():
    result = subprocess.run([sys.executable, "-c", SAY], capture_output=True, text=True, timeout=60, check=True)
    assert result.stderr == "[chaoskit] cluster chaoskit ready in 3 s\n[chaoskit] a namespace was left\n"


def test_a_terminal_gets_rich_lines_with_the_level_and_time():
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", SAY], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=follower,
            env={**os.environ, "COLUMNS": "100", "TERM": "xterm-256color"},
        )  # fmt: skip
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the child closed its end
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.wait(timeout=60) == 0
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    shown = b"".join(chunks).decode()
    assert "\x1b[" in shown, shown  # coloured
    assert "[chaoskit]" not in shown, shown
    lines = [line for line in shown.splitlines() if line.strip()]
    assert "INFO" in lines[0] and "cluster chaoskit ready in" in lines[0], shown
    assert "WARNING" in lines[1] and "a namespace was left" in lines[1], shown
