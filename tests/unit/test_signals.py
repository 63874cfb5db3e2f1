"""SIGTERM unwinds like Ctrl-C, so a fault's finally runs."""

import subprocess
import sys
import textwrap


def test_sigterm_runs_finally_blocks():
    script = textwrap.dedent(
        """
        import os, signal, sys
        from chaoskit.faults.signals import sigterm_unwinds
        with sigterm_unwinds():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                signal.pause()
            except KeyboardInterrupt as exc:
                print("unwound:", exc)
            finally:
                print("undo ran")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert result.stdout.splitlines() == ["unwound: received signal SIGTERM", "undo ran"]
