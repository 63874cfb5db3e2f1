"""SIGTERM unwinds like Ctrl-C, so a fault's finally runs."""

import subprocess
import sys
import textwrap


def test_sigterm_runs_finally_blocks():
    script = textwrap.dedent(
        """
        import os, signal, sys
        from chaoskit.faults.signals import held
        with held():
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


def test_faults_held_in_any_order_keep_sigterm_unwinding_until_the_last_is_let_go():
    script = textwrap.dedent(
        """
        import signal
        from chaoskit.faults import signals

        def state():
            return "default" if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL else "unwinds"

        print("before", state())
        first, second = signals.held(), signals.held()
        first.__enter__(); second.__enter__()
        print("both held", state())
        first.__exit__(None, None, None)  # the first let go before the second: not nested
        print("one held", state())
        second.__exit__(None, None, None)
        print("none held", state())
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert result.stdout.splitlines() == [
        "before default",
        "both held unwinds",
        "one held unwinds",
        "none held default",
    ]
