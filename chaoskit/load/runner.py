"""Running a load from the test process: the worker's lifetime, the record stream, the warm-up.

:class:`Load` starts ``python -m chaoskit.load.worker`` (see there for why
Locust lives in a process of its own), hands it the spec on stdin, and reads
its lines from a pipe of their own on a reader thread, so records arrive while
the test injects faults and :meth:`Load.records` is a snapshot at any moment.

Entering the block returns once the worker says its warm-up is over; a worker
that dies, hangs or gets no request through before then raises
:class:`LoadError` (:class:`WarmupFailed` for the last) with the tail of its
stderr, and nothing is left running. Leaving the block, however it is left,
stops the worker by its own PID: SIGTERM, which lets it send its last records
and Locust's own counts, then SIGKILL if it has not exited within
:data:`STOP_GRACE_S`. The worker runs in a session of its own, so Ctrl-C at the
terminal reaches only the test process, which then stops the worker in that
order; and it stops by itself when its run time is over or its stdin closes.

Every wait here is bounded: the worker's start by :data:`STARTUP_TIMEOUT_S`,
the warm-up by the spec, :meth:`Load.wait` by the run's end plus the grace.

With ``workers`` (or a session default, :func:`set_default_workers`) the
process is Locust's master instead, and the users run in that many Locust
workers: processes of this machine it starts itself, or pods in the cluster
(``in_cluster``, through :class:`chaoskit.load.pods.WorkerPods`). Their records
reach the master in Locust's own messages and come down the same pipe
(:mod:`chaoskit.load.distributed`). A worker lost mid-run ends the load, and
:attr:`StreamStats.lost_workers` says which, so no verdict is given over what
is left.

Records are kept in memory, about 160 bytes each: an hour at 5,000 requests a
second is some 3 GB, so long runs at full speed want a think time or a rate.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Protocol

from chaoskit import targets
from chaoskit.load.spec import LoadError, LoadResult, LoadSpec, RequestRecord, StreamStats, WarmupFailed
from chaoskit.load.wire import LineDecoder, WorkerEvent

STARTUP_TIMEOUT_S = 30.0
"""How long the worker may take to import Locust and the locustfile and start its users."""
STOP_GRACE_S = 10.0
"""How long the worker may take to stop once its run is over or it got SIGTERM, before SIGKILL: a master
waits up to 5 s for its workers' last records."""
CONNECT_TIMEOUT_S = 30.0
"""How long a master may take to see all its workers connect (:data:`chaoskit.load.distributed.CONNECT_SECONDS`)."""
STDERR_TAIL_BYTES = 4000
READ_CHUNK = 1 << 16
IN_CLUSTER_WORKERS = 2
"""Worker pods of an ``in_cluster`` load whose spec and session name no count."""
_default_workers = 1


def set_default_workers(count: int) -> None:
    """The Locust workers of every load whose spec says none (the plugin's ``--chaos-load-workers``);
    1 runs such loads in one process, with no master."""
    global _default_workers
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise LoadError(f"load workers must be a whole number, 1 or more, not {count!r}")
    _default_workers = count


def worker_count(spec: LoadSpec) -> int | None:
    """How many Locust workers the load runs on; None for one process with no master."""
    if spec.workers is not None:
        return spec.workers
    if spec.in_cluster:
        return min(max(_default_workers, IN_CLUSTER_WORKERS), spec.users)
    return min(_default_workers, spec.users) if _default_workers > 1 else None


class WorkerPlace(Protocol):
    """Where an ``in_cluster`` load's workers run: for the block, ``count`` workers each reachable through a
    port of 127.0.0.1 (its tunnel), yielded as (name, port)."""

    def workers(self, spec: LoadSpec, count: int) -> contextlib.AbstractContextManager[list[tuple[str, int]]]: ...


@dataclass
class _Worker:
    """One worker process and what its reader thread has seen of it."""

    proc: subprocess.Popen[bytes]
    stderr: IO[bytes]
    read_fd: int | None
    reader: threading.Thread | None = None
    events: dict[str, WorkerEvent] = field(default_factory=dict)
    eof: bool = False


class Load:
    """A load on a local port for the duration of a ``with`` block; see the module docstring."""

    def __init__(self, spec: LoadSpec, pods: WorkerPlace | None = None) -> None:
        self.spec = spec
        self.pods = pods
        """Where ``in_cluster`` workers run (:class:`chaoskit.load.pods.WorkerPods`); the experiment gives it."""
        self._pods_stack = contextlib.ExitStack()
        self._lost: list[str] = []
        self._changed = threading.Condition()
        """Guards everything the reader thread writes; notified when an event line or EOF arrives."""
        self._records: list[RequestRecord] = []
        self._marks: list[tuple[float, str]] = []
        self._bad_line: str | None = None
        """The first line a worker sent that could not be read, with why."""
        self._bad_lines = 0
        """How many such lines, a cut-off last line included."""
        self._lag_sum_s = 0.0
        self._lag_max_s = 0.0
        self._workers: list[_Worker] = []
        self._run_deadline = 0.0
        """Monotonic time by which the worker must have stopped by itself."""
        self._entered = False
        self._closed = False
        self._closed_at: float | None = None

    def __enter__(self) -> Load:
        if self._entered:
            raise LoadError("a Load runs once: make a new Load(spec) for another run")
        self._entered = True
        try:
            self._start()
            self._await_warmup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        """The (first) worker's process ID, once started."""
        return self._workers[0].proc.pid if self._workers else None

    @property
    def pids(self) -> list[int]:
        """Every worker's process ID, once started."""
        return [w.proc.pid for w in self._workers]

    @property
    def running(self) -> bool:
        """Whether any worker process is alive."""
        return any(w.proc.poll() is None for w in self._workers)

    @property
    def started_at(self) -> float:
        """Unix time when the worker started its first user."""
        return self._event("started").at

    @property
    def warmup_ended_at(self) -> float:
        """Unix time when the warm-up ended: records started before it are warm-up, not measurement."""
        return self._event("warmup_ended").at

    @property
    def marks(self) -> list[tuple[float, str]]:
        """(Unix time, label) for each :meth:`mark` so far."""
        with self._changed:
            return list(self._marks)

    def mark(self, label: str) -> None:
        """Mark this moment on the load's timeline, such as "kill web-1"."""
        with self._changed:
            self._marks.append((time.time(), label))

    def records(self) -> list[RequestRecord]:
        """A snapshot of every request received so far, warm-up included, in order of completion."""
        with self._changed:
            return list(self._records)

    def records_from(self, index: int) -> list[RequestRecord]:
        """The records received after the first ``index`` of them: what is new since a reader's last call."""
        with self._changed:
            return self._records[index:]

    def wait(self) -> LoadResult:
        """Block until the run time is over and the worker has stopped; return the whole run."""
        if not self._entered or not self._workers:
            raise LoadError("the load has not started: use it as `with Load(spec) as load:`")
        with self._changed:
            self._changed.wait_for(
                lambda: all("stopped" in w.events or w.eof for w in self._workers),
                max(0.0, self._run_deadline - time.monotonic()),
            )
        self.close()
        return self.result()

    def result(self) -> LoadResult:
        """The run so far (all of it, once the block has ended or :meth:`wait` returned)."""
        with self._changed:
            records = tuple(self._records)
            stopped = self._merged("stopped")
            stream = self._stream_stats()
        ended_at = stopped.at if stopped is not None else self._closed_at or time.time()
        return LoadResult(
            self.spec, records, tuple(self.marks), self.started_at, self.warmup_ended_at, ended_at, stream
        )

    def stream_stats(self) -> StreamStats:
        """How the record stream did so far: records received, Locust's own count once it stopped, unreadable
        lines. Once the block has ended, :attr:`StreamStats.complete` says whether the records are the whole run."""
        with self._changed:
            return self._stream_stats()

    def _merged(self, kind: str) -> WorkerEvent | None:
        """One event for the whole load (under ``_changed``): once every worker sent ``kind``, the earliest
        ``started``, or else the latest (the warm-up is over when every worker's is), with Locust's counts
        summed; None until then."""
        events = [w.events.get(kind) for w in self._workers]
        if not events or any(e is None for e in events):
            return None
        sent = [e for e in events if e is not None]
        at = min(e.at for e in sent) if kind == "started" else max(e.at for e in sent)
        counted = [e for e in sent if e.requests is not None]
        requests = sum(e.requests or 0 for e in counted) if counted else None
        failures = sum(e.failures or 0 for e in counted) if counted else None
        return WorkerEvent(kind, at, sent[-1].message, requests, failures)

    def _stream_stats(self) -> StreamStats:
        stopped = self._merged("stopped")
        received = len(self._records)
        return StreamStats(
            received=received,
            locust_requests=None if stopped is None else stopped.requests,
            locust_failures=None if stopped is None else stopped.failures,
            max_lag_ms=self._lag_max_s * 1000,
            mean_lag_ms=self._lag_sum_s / received * 1000 if received else 0.0,
            bad_lines=self._bad_lines,
            first_bad_line=self._bad_line,
            lost_workers=tuple(self._lost),
        )

    def close(self) -> None:
        """Stop the worker (SIGTERM, then SIGKILL after the grace), join the reader, close the pipes. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            try:
                self._stop_workers()
            finally:
                self._pods_stack.close()  # the worker pods go once their master has stopped
        finally:
            self._closed_at = time.time()
            for worker in self._workers:
                if worker.proc.stdin is not None:
                    with contextlib.suppress(OSError):
                        worker.proc.stdin.close()
            for worker in self._workers:
                if worker.reader is not None:
                    worker.reader.join(STOP_GRACE_S)
                # Closing a descriptor a live thread still reads would let it read whatever reuses the number.
                if worker.read_fd is not None and (worker.reader is None or not worker.reader.is_alive()):
                    os.close(worker.read_fd)
                    worker.read_fd = None
                worker.stderr.close()

    def _event(self, kind: str) -> WorkerEvent:
        with self._changed:
            event = self._merged(kind)
        if event is None:
            raise LoadError(f"the load has no {kind.replace('_', ' ')} time yet: use it inside `with Load(spec):`")
        return event

    def _start(self) -> None:
        count = worker_count(self.spec)
        root = str(Path(__file__).resolve().parents[2])  # the directory that holds the chaoskit package
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p),
        }
        config: dict[str, object] = {"role": "local"}
        if count is not None:
            config = {"role": "master", "workers": count}
        if self.spec.in_cluster:
            if self.pods is None:
                raise LoadError(
                    "an in_cluster load runs its workers as pods, and this Load was given no cluster: run it in an "
                    "experiment (which gives its own), or pass Load(spec, pods=WorkerPods(kube, cluster))"
                )
            assert count is not None
            tunnels = self._pods_stack.enter_context(self.pods.workers(self.spec, count))
            config["tunnels"] = [{"name": name, "port": port} for name, port in tunnels]
        self._start_worker(self.spec, config, env)

    def _start_worker(self, part: LoadSpec, config: dict[str, object], env: dict[str, str]) -> None:
        read_fd, write_fd = os.pipe()
        stderr = tempfile.TemporaryFile(prefix="chaoskit-load-")
        spec = asdict(part)
        if part.locustfile is not None:
            spec["locustfile"] = os.path.abspath(part.locustfile)
        # The worker checks its spec again, without this process's session allowances: hand them over.
        spec["allow_targets"] = [*part.allow_targets, *targets.granted()]
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "chaoskit.load.worker"],
                stdin=subprocess.PIPE,
                stdout=stderr,
                stderr=stderr,
                pass_fds=(write_fd,),
                start_new_session=True,
                env=env,
            )
        except BaseException:
            os.close(read_fd)
            stderr.close()
            raise
        finally:
            os.close(write_fd)  # the worker holds the only write end, so its exit is our EOF
        worker = _Worker(proc, stderr, read_fd)
        self._workers.append(worker)
        worker.reader = threading.Thread(
            target=self._read, args=(worker,), name=f"chaoskit-load-{proc.pid}", daemon=True
        )
        worker.reader.start()
        assert proc.stdin is not None
        message = {**config, "spec": spec, "out_fd": write_fd}
        with contextlib.suppress(BrokenPipeError):  # a worker dead on arrival shows as EOF and its stderr
            proc.stdin.write(json.dumps(message).encode() + b"\n")
            proc.stdin.flush()

    def _read(self, worker: _Worker) -> None:
        assert worker.read_fd is not None
        fd = worker.read_fd
        decoder = LineDecoder()
        rest = b""
        try:
            while chunk := os.read(fd, READ_CHUNK):
                lines = (rest + chunk).split(b"\n")
                rest = lines.pop()
                now = time.time()
                records: list[RequestRecord] = []
                events: list[WorkerEvent] = []
                lag_sum = lag_max = 0.0
                bad: list[str] = []
                for line in lines:
                    if not line.strip():
                        continue
                    try:
                        item = decoder.decode(line)
                    except (ValueError, TypeError) as exc:
                        bad.append(f"{exc}: {line[:200]!r}")
                        continue
                    if isinstance(item, RequestRecord):
                        lag = now - item.ended
                        lag_sum += lag
                        lag_max = max(lag_max, lag)
                        records.append(item)
                    else:
                        events.append(item)
                with self._changed:
                    self._note_bad(bad)
                    self._records.extend(records)
                    self._lag_sum_s += lag_sum
                    self._lag_max_s = max(self._lag_max_s, lag_max)
                    for event in events:
                        worker.events.setdefault(event.kind, event)
                        if event.kind == "worker_lost" and event.message:
                            self._lost.append(event.message)
                    if events:
                        self._changed.notify_all()
        finally:
            with self._changed:
                if rest.strip():  # the worker died mid-line
                    self._note_bad([f"cut off at the end of the stream: {rest[:200]!r}"])
                worker.eof = True
                self._changed.notify_all()

    def _note_bad(self, lines: list[str]) -> None:
        """Count unreadable lines (under ``_changed``): a record among them is lost to the verdict."""
        if lines:
            self._bad_lines += len(lines)
            self._bad_line = self._bad_line or lines[0]

    def _await_warmup(self) -> None:
        spec = self.spec
        timeout = STARTUP_TIMEOUT_S + spec.warmup_seconds + spec.warmup_grace_seconds + STOP_GRACE_S
        if worker_count(spec) is not None:
            timeout += CONNECT_TIMEOUT_S
        failures = ("warmup_failed", "error", "worker_lost")

        def settled() -> bool:
            return all("warmup_ended" in w.events for w in self._workers) or any(
                w.eof or any(k in w.events for k in failures) for w in self._workers
            )

        with self._changed:
            self._changed.wait_for(settled, timeout)
            ended = self._merged("warmup_ended")
        if ended is not None:
            left = ended.at + spec.run_seconds - time.time()
            self._run_deadline = time.monotonic() + left + STOP_GRACE_S
            return
        several = len(self._workers) > 1
        for index, worker in enumerate(self._workers):
            which = f"load worker {index + 1} of {len(self._workers)}" if several else "the load worker"
            events = dict(worker.events)
            if "warmup_failed" in events:
                raise WarmupFailed(f"{events['warmup_failed'].message}{self._stderr_tail(worker)}")
            if "error" in events:
                raise LoadError(f"{which} could not start: {events['error'].message}{self._stderr_tail(worker)}")
            if "worker_lost" in events:
                lost = events["worker_lost"].message
                raise LoadError(f"the load lost {lost} in its warm-up{self._stderr_tail(worker)}")
            if worker.eof and "warmup_ended" not in events:
                status = self._exit_status(worker)
                raise LoadError(f"{which} exited ({status}) before its warm-up ended{self._stderr_tail(worker)}")
        late = next(w for w in self._workers if "warmup_ended" not in w.events)
        raise LoadError(f"the load worker did not finish its warm-up within {timeout:g} s{self._stderr_tail(late)}")

    def _exit_status(self, worker: _Worker) -> str:
        try:
            code = worker.proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            return "its pipe closed but it still runs"
        return f"status {code}" if code >= 0 else f"killed by {signal.Signals(-code).name}"

    def _stderr_tail(self, worker: _Worker) -> str:
        fd = worker.stderr.fileno()
        size = os.fstat(fd).st_size
        # pread leaves the shared file offset alone: the worker may still be writing at it.
        tail = os.pread(fd, STDERR_TAIL_BYTES, max(0, size - STDERR_TAIL_BYTES)).decode(errors="replace").strip()
        bad = f"; it sent an unreadable line: {self._bad_line}" if self._bad_line else ""
        if not tail:
            return f" (the worker wrote nothing to stderr{bad})"
        return f"{bad}\nthe worker's stderr ends with:\n{tail}"

    def _stop_workers(self) -> None:
        """SIGTERM to every worker still running its load, then SIGKILL to any left after the grace."""
        with self._changed:
            stopping = {id(w): "stopped" in w.events or "warmup_failed" in w.events for w in self._workers}
        try:
            for worker in self._workers:
                if worker.proc.poll() is None and not stopping[id(worker)]:
                    worker.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + STOP_GRACE_S
            for worker in self._workers:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    worker.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        finally:
            for worker in self._workers:
                if worker.proc.poll() is None:
                    worker.proc.kill()
                    worker.proc.wait()


def run_load(spec: LoadSpec) -> LoadResult:
    """Run a load from warm-up to the end of its run time and return it whole."""
    with Load(spec) as load:
        return load.wait()
