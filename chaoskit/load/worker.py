"""The load worker: Locust in a process of its own, streaming every request back.

    python -m chaoskit.load.worker '{"spec": {...}, "out_fd": 1}'
    python -m chaoskit.load.worker < config.json   # first line; EOF on stdin then stops the run

Importing Locust monkey-patches the whole interpreter with gevent, so it never
happens in the process that runs the tests: :class:`chaoskit.load.Load` starts
this module with ``sys.executable``, hands it the spec as one JSON line on
stdin, and reads request lines (:mod:`chaoskit.load.wire`) from a pipe of its
own. Locust is imported inside :func:`main`, never when this module is merely
imported, and gevent is patched by that import before any user code loads.

The worker bounds itself: the warm-up, a grace of ``timeout_seconds + 1`` for a
first success, then ``run_seconds`` of measured run, and it stops. It also
stops on SIGTERM or SIGINT, and when its stdin reaches end of file, which is
what a parent killed outright leaves behind: no worker outlives its parent
for long.

The configuration's ``role`` says what the process is: the whole load in one
process (``local``, the default), Locust's master of N workers (``master``),
one of those workers on this machine (``worker``) or in a pod (``pod``, its
configuration read from ``--config FILE``); see :mod:`chaoskit.load.distributed`.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback
from typing import Any

from chaoskit.errors import ChaoskitError
from chaoskit.load.locusts import (
    EXIT_BAD_CONFIG,
    RecordStream,
    at_stdin_eof,
    error_kind,
    flush_forever,
    run_phases,
    user_class,
)
from chaoskit.load.spec import LoadSpec
from chaoskit.load.wire import WorkerEvent

__all__ = ["ROLES", "error_kind", "main", "run_local"]

ROLES = ("local", "master", "worker", "pod")
"""What a load process is: the whole load in one process (``local``), Locust's master with its workers
(``master``), one of those workers on this machine (``worker``) or in a pod (``pod``)."""


def run_local(spec: LoadSpec, out_fd: int, watch_stdin: bool) -> int:
    """Run the load in this process as the spec says, streaming to ``out_fd``; return the exit status."""
    import gevent  # type: ignore[import-untyped]
    import gevent.event  # type: ignore[import-untyped]
    import gevent.os  # type: ignore[import-untyped]
    from locust.env import Environment

    stream = RecordStream(out_fd)
    try:
        user = user_class(spec)
    except Exception as exc:
        traceback.print_exc()
        stream.event(WorkerEvent("error", time.time(), f"{type(exc).__name__}: {exc}"))
        return EXIT_BAD_CONFIG

    stop = gevent.event.Event()
    first_success = gevent.event.Event()
    gevent.signal_handler(signal.SIGTERM, stop.set)
    gevent.signal_handler(signal.SIGINT, stop.set)

    def on_request(**kwargs: Any) -> None:
        stream.on_request(**kwargs)
        if stream.succeeded and not first_success.is_set():
            first_success.set()
        if stream.broken:
            stop.set()

    env = Environment(user_classes=[user], host=spec.host)
    env.events.request.add_listener(on_request)  # type: ignore[no-untyped-call]
    runner = env.create_local_runner()
    helpers = [gevent.spawn(flush_forever, stream, stop)]
    if watch_stdin:
        helpers.append(gevent.spawn(at_stdin_eof, stop.set))
    started = time.time()
    runner.start(spec.users, spec.spawn_rate)
    stream.event(WorkerEvent("started", started))
    status, reason = run_phases(spec, stream, stop, first_success)
    runner.quit()
    gevent.killall(helpers)
    total = env.stats.total
    stream.event(WorkerEvent("stopped", time.time(), reason, total.num_requests, total.num_failures))
    return status


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--config"] and len(args) == 2:  # a worker pod: its configuration from its ConfigMap
        with open(args[1]) as file:
            text, watch_stdin = file.read(), False
    else:
        text, watch_stdin = (args[0], False) if args else (sys.stdin.readline(), True)
    try:
        config = json.loads(text)
        spec = LoadSpec(**config["spec"])
        role = config.get("role", "local")
        out_fd = int(config.get("out_fd", 1))
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    except (ValueError, KeyError, TypeError, ChaoskitError, OSError) as exc:
        print(f"chaoskit load worker: bad configuration: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    import locust  # noqa: F401  (patches the interpreter with gevent, before any user code)

    from chaoskit.load import distributed

    try:
        if role == "master":
            return distributed.run_master(spec, out_fd, watch_stdin, config)
        if role == "worker":
            return distributed.run_worker(spec, config, watch_stdin)
        if role == "pod":
            return distributed.run_pod(spec, config)
        return run_local(spec, out_fd, watch_stdin)
    finally:
        if out_fd > 2 and role in ("local", "master"):
            os.close(out_fd)


if __name__ == "__main__":
    sys.exit(main())
