"""Running host commands, and chaoskit's progress lines.

Progress goes through Python's logging, to the logger ``chaoskit``: one line per record, ``[chaoskit]
message``, on the standard error of the moment (so pytest's capture and a redirected ``sys.stderr`` see it).
``chaoskit -v`` shows debug lines too (each host command as it starts), ``chaoskit -q`` warnings alone; in
pytest, ``--chaos-log-level``. To route the lines into logging of your own, clear the logger's handlers and
let it propagate: ``logging.getLogger("chaoskit").handlers.clear(); ...propagate = True``.

Every external command chaoskit runs on the host (apt-get, docker, kind, make)
goes through :func:`run`. Short commands return their output; long ones stream
their output to a log file and print a heartbeat line, so a user watching a
ten-minute build sees that it is alive and where its log is. A command that
cannot be found or fails raises :class:`ProvisionError` naming the command,
its exit status and the tail of its output.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from chaoskit.errors import CommandTimedOut, ProvisionError


@dataclass(frozen=True)
class Completed:
    """What a finished command left."""

    args: tuple[str, ...]
    """The command line that ran."""
    returncode: int
    """Its exit status."""
    stdout: str
    """Its standard output (empty when it was streamed to a log)."""
    stderr: str
    """Its standard error (or the tail of the log when streamed)."""


LOGGER = logging.getLogger("chaoskit")
"""chaoskit's progress lines (:func:`say`)."""
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
"""The levels a user may name (``--chaos-log-level``), as logging knows them."""


class ProgressLines(logging.Handler):
    """Each record as one line on the standard error of the moment, flushed at once: plain ``[chaoskit] message``
    where that is a file or a pipe (CI logs, pytest's capture, scripts), and through rich's logging handler where
    it is a terminal (the time, the level in colour, the message wrapped to the terminal's width)."""

    def __init__(self) -> None:
        super().__init__()
        self._rich: logging.Handler | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if _on_terminal(sys.stderr):
                self._terminal_handler().emit(record)
            else:
                print(f"[chaoskit] {record.getMessage()}", file=sys.stderr, flush=True)
        except Exception:  # a closed or broken stderr must not end the run that logs
            self.handleError(record)

    def _terminal_handler(self) -> logging.Handler:
        if self._rich is None:
            from rich.console import Console
            from rich.logging import RichHandler

            # stderr=True: the console writes to sys.stderr as it is at each line, as the plain lines do.
            self._rich = RichHandler(
                console=Console(stderr=True), show_path=False, markup=False, rich_tracebacks=False, log_time_format="%X"
            )
        return self._rich


def _on_terminal(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # closed
        return False


def _lines_by_default() -> None:
    """chaoskit's own handler on its logger, at INFO, unless the logger was given one before chaoskit loaded."""
    if not LOGGER.handlers:
        LOGGER.addHandler(ProgressLines())
        LOGGER.propagate = False
    if LOGGER.level == logging.NOTSET:
        LOGGER.setLevel(logging.INFO)


_lines_by_default()


def set_level(level: int | str) -> None:
    """Show chaoskit's lines from ``level`` up: ``debug``, ``info`` (the default), ``warning`` or ``error``."""
    if isinstance(level, str):
        if level.lower() not in LEVELS:
            raise ValueError(f"log level must be one of {', '.join(LEVELS)}, not {level!r}")
        level = LEVELS[level.lower()]
    LOGGER.setLevel(level)


def say(message: str, level: int = logging.INFO) -> None:
    """One progress line (at ``level``: INFO unless said), prefixed so it stands out from tool output."""
    LOGGER.log(level, message)


def warn(message: str) -> None:
    """A line that ``-q`` still shows: something the user must know, such as a namespace left behind."""
    LOGGER.warning(message)


def need(tool: str, hint: str) -> str:
    """Return the path of ``tool`` or fail with ``hint`` saying how to get it."""
    path = shutil.which(tool)
    if path is None:
        raise ProvisionError(f"'{tool}' is not installed: {hint}")
    return path


def run(
    args: Sequence[str],
    *,
    check: bool = True,
    input: str | bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    timeout: float,
) -> Completed:
    """Run a short command and capture its output; past ``timeout`` seconds it is killed.

    The timeout has no default: every caller states how long its command may take.
    """
    full_env = {**os.environ, **env} if env else None
    text = not isinstance(input, bytes)
    say(f"running: {shlex.join(args)}", logging.DEBUG)
    try:
        proc = subprocess.run(
            list(args),
            input=input,
            capture_output=True,
            text=text,
            env=full_env,
            cwd=cwd,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise ProvisionError(f"'{args[0]}' is not installed ({exc.strerror})") from None
    except subprocess.TimeoutExpired:
        raise CommandTimedOut(f"'{' '.join(args)}' did not finish within {timeout:g} s and was killed") from None
    out = proc.stdout if text else proc.stdout.decode(errors="replace")
    err = proc.stderr if text else proc.stderr.decode(errors="replace")
    result = Completed(tuple(args), proc.returncode, out, err)
    if check and proc.returncode != 0:
        raise ProvisionError(_failure(result))
    return result


def run_logged(
    args: Sequence[str],
    log: Path,
    *,
    what: str,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    heartbeat: float = 30.0,
    stdin: int | None = subprocess.DEVNULL,
    timeout: float,
) -> None:
    """Run a long command, its output appended to ``log``, printing a heartbeat.

    ``what`` names the step for the progress lines ("building Kubernetes").
    Past ``timeout`` seconds (no default: each step says how long it may take)
    the command is stopped and CommandTimedOut names the step and its log.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **env} if env else None
    started = time.monotonic()
    say(f"{what}: started (log: {log})")
    say(f"running: {shlex.join(args)}", logging.DEBUG)
    with log.open("ab") as sink:
        sink.write(f"\n$ {' '.join(args)}\n".encode())
        sink.flush()
        try:
            proc = subprocess.Popen(
                list(args), stdout=sink, stderr=subprocess.STDOUT, stdin=stdin, env=full_env, cwd=cwd
            )
        except FileNotFoundError as exc:
            raise ProvisionError(f"{what}: '{args[0]}' is not installed ({exc.strerror})") from None
        done = threading.Event()

        def beat() -> None:
            while not done.wait(heartbeat):
                say(f"{what}: still running, {time.monotonic() - started:.0f} s")

        ticker = threading.Thread(target=beat, daemon=True)
        ticker.start()
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop(proc)
            raise CommandTimedOut(
                f"{what} did not finish within {timeout:g} s and was stopped; its log: {log}"
            ) from None
        except BaseException:
            _stop(proc)
            raise
        finally:
            done.set()
    elapsed = time.monotonic() - started
    if code != 0:
        tail = _tail(log, 25)
        raise ProvisionError(f"{what} failed (exit {code}) after {elapsed:.0f} s; last lines of {log}:\n{tail}")
    say(f"{what}: done in {elapsed:.0f} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _tail(path: Path, lines: int) -> str:
    try:
        content = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(content[-lines:])


def _failure(result: Completed) -> str:
    detail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-5:]
    return f"'{' '.join(result.args)}' failed (exit {result.returncode}): " + " | ".join(detail)
