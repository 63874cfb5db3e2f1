"""Acknowledged writes: the check every stateful experiment needs.

A :class:`AckedWriter` sends writes through *your* client function while the
faults run, each under a key of its own, and keeps every write the system
acknowledged (the function returned) apart from those it did not (the
function raised: the write may or may not be stored). Afterwards
:func:`read_back` reads each acknowledged key through your read function and
returns the keys that are missing or hold another value: the lost writes, for
a :class:`~chaoskit.slo.LostWrites` objective (``run.record(lost_writes=...)``).

::

    def write(key: str, value: str) -> None:      # raise when not acknowledged
        status, _ = http_post(f"/put?key={key}&value={value}")
        if status != 200:
            raise OSError(f"HTTP {status}")

    def read(key: str) -> str | None:             # None: no such key
        ...

    with AckedWriter(write, max_writes=2000, max_seconds=60) as writer:
        writer.wait_for_acks(50)
        with chaos.pod_kill(...):
            ...
    checked = read_back(read, writer.log.acknowledged)
    run.record(lost_writes=len(checked.lost))

Both are bounded: the writer by count and time (it stops by itself), the
read-back by a retry deadline per key. Nothing here talks to the cluster.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from chaoskit.errors import SpecError

WriteFn = Callable[[str, str], Any]
"""``write(key, value)``: returns (anything) when the system acknowledged the write, raises when it did not."""
ReadFn = Callable[[str], "str | None"]
"""``read(key)``: the stored value, None when the key does not exist; raises when it cannot tell (retried)."""

MAX_WRITES = 1_000_000
MAX_SECONDS = 3600.0


@dataclass
class WriteLog:
    """What an :class:`AckedWriter` sent and what came back."""

    acknowledged: dict[str, str] = field(default_factory=dict)
    """key -> value of every acknowledged write."""
    failed: dict[str, str] = field(default_factory=dict)
    """key -> the error of every write not acknowledged (it may or may not be stored)."""
    ack_times: list[float] = field(default_factory=list)
    """Monotonic times of the acknowledgements, in order."""
    acked_at: dict[str, float] = field(default_factory=dict)
    """key -> the monotonic time its acknowledgement came back (when a lost write was acknowledged)."""
    answers: dict[str, Any] = field(default_factory=dict)
    """key -> what ``write`` returned, for the writes where it returned something other than None."""

    @property
    def sent(self) -> int:
        """Writes sent, acknowledged or not."""
        return len(self.acknowledged) + len(self.failed)

    def longest_gap(self, after: float | None = None) -> float:
        """The longest time without an acknowledgement, in seconds (from ``after``, monotonic, if given)."""
        times = sorted(t for t in self.ack_times if after is None or t >= after)
        if after is not None:
            times = [after, *times]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


class AckedWriter:
    """Sends writes through ``write`` from ``concurrency`` threads until stopped or a bound is hit.

    Each write has its own key (``<prefix>-<run>-<n>``) and a random value, so
    a key is acknowledged at most once and a stale value is told from the
    right one. Bounded in count (``max_writes``) and time (``max_seconds``):
    the writer stops by itself. ``pause`` is the time each thread waits
    between its writes.
    """

    def __init__(
        self,
        write: WriteFn,
        *,
        max_writes: int = 2000,
        max_seconds: float = 60,
        concurrency: int = 4,
        pause: float = 0.01,
        prefix: str = "ck",
    ) -> None:
        if not callable(write):
            raise SpecError(f"write must be a function write(key, value), not {write!r}")
        if isinstance(max_writes, bool) or not isinstance(max_writes, int) or not 1 <= max_writes <= MAX_WRITES:
            raise SpecError(f"max_writes must be a whole number in [1, {MAX_WRITES:,}], not {max_writes!r}")
        if not 0 < max_seconds <= MAX_SECONDS:
            raise SpecError(f"max_seconds must be in (0, {MAX_SECONDS:g}], not {max_seconds!r}: every writer ends")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or not 1 <= concurrency <= 64:
            raise SpecError(f"concurrency must be a whole number in [1, 64], not {concurrency!r}")
        if not 0 <= pause <= 60:
            raise SpecError(f"pause must be in [0, 60] seconds, not {pause!r}")
        self.write = write
        self.max_writes = max_writes
        self.max_seconds = max_seconds
        self.concurrency = concurrency
        self.pause = pause
        self.prefix = prefix
        self.log = WriteLog()
        self.run_id = uuid.uuid4().hex[:8]
        self._changed = threading.Condition()
        self._next = 0
        self._finished = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._deadline = 0.0

    def __enter__(self) -> AckedWriter:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        """Start the writing threads."""
        self._deadline = time.monotonic() + self.max_seconds
        self._threads = [
            threading.Thread(target=self._run, name=f"acked-writer-{i}", daemon=True) for i in range(self.concurrency)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 30) -> WriteLog:
        """Stop writing and wait (up to ``timeout`` s) for the writes in flight; return the log."""
        self._stop.set()
        until = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, until - time.monotonic()))
        return self.log

    @property
    def running(self) -> bool:
        """Whether any writing thread is still at work."""
        with self._changed:
            return bool(self._threads) and self._finished < len(self._threads)

    def acknowledged(self) -> int:
        """How many writes were acknowledged so far."""
        with self._changed:
            return len(self.log.acknowledged)

    def wait_for_acks(self, count: int, within: float = 30) -> None:
        """Block until ``count`` writes in all are acknowledged; AssertionError (with the counts) if they are
        not within ``within`` seconds or the writer ends first."""
        with self._changed:
            self._changed.wait_for(
                lambda: len(self.log.acknowledged) >= count or self._finished == len(self._threads), within
            )
            if len(self.log.acknowledged) < count:
                state = "ended" if self._finished == len(self._threads) else "still running"
                last = next(reversed(self.log.failed.values()), None)
                raise AssertionError(
                    f"only {len(self.log.acknowledged)} of {count} writes acknowledged within {within:g} s "
                    f"({len(self.log.failed)} not acknowledged{f', last error: {last}' if last else ''}; "
                    f"writer {state})"
                )

    def _take(self) -> int | None:
        with self._changed:
            if self._stop.is_set() or self._next >= self.max_writes or time.monotonic() > self._deadline:
                return None
            self._next += 1
            return self._next

    def _run(self) -> None:
        try:
            while (n := self._take()) is not None:
                self._one(f"{self.prefix}-{self.run_id}-{n:07d}", uuid.uuid4().hex)
                self._stop.wait(self.pause)
        finally:
            with self._changed:
                self._finished += 1
                self._changed.notify_all()

    def _one(self, key: str, value: str) -> None:
        try:
            answer = self.write(key, value)
        except Exception as exc:  # the user's client: any failure means "not acknowledged"
            with self._changed:
                self.log.failed[key] = f"{type(exc).__name__}: {exc}"
                self._changed.notify_all()
            return
        with self._changed:
            now = time.monotonic()
            self.log.acknowledged[key] = value
            self.log.ack_times.append(now)
            self.log.acked_at[key] = now
            if answer is not None:
                self.log.answers[key] = answer
            self._changed.notify_all()


@dataclass(frozen=True)
class ReadBack:
    """The verdict of reading back every acknowledged write."""

    checked: int
    """How many acknowledged keys were read."""
    missing: list[str]
    """Acknowledged keys the system does not have."""
    wrong: list[str]
    """Acknowledged keys holding another value."""

    @property
    def lost(self) -> list[str]:
        """Every lost write: missing or wrong, sorted."""
        return sorted(self.missing + self.wrong)


class ReadBackFailed(AssertionError):
    """A key could not be read within the retry deadline: the read-back cannot say whether it was lost."""


def read_back(
    read: ReadFn, acknowledged: Mapping[str, str], *, concurrency: int = 8, retry_seconds: float = 30
) -> ReadBack:
    """Read every acknowledged key through ``read``; the keys missing or holding another value are lost.

    A read that raises is retried every 0.5 s for ``retry_seconds``; a key that
    still cannot be read raises :class:`ReadBackFailed` (an unread key is not
    counted as kept, nor as lost: there is no verdict over partial data).
    """
    if not 1 <= concurrency <= 64:
        raise SpecError(f"concurrency must be in [1, 64], not {concurrency!r}")

    def check(item: tuple[str, str]) -> tuple[str, str | None]:
        key, value = item
        until = time.monotonic() + retry_seconds
        while True:
            try:
                stored = read(key)
            except Exception as exc:  # the user's client: retried until the deadline
                if time.monotonic() >= until:
                    raise ReadBackFailed(
                        f"could not read back {key!r} within {retry_seconds:g} s: {type(exc).__name__}: {exc}"
                    ) from exc
                time.sleep(0.5)
                continue
            if stored is None:
                return key, "missing"
            return key, None if stored == value else "wrong"

    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(check, acknowledged.items()))
    return ReadBack(
        checked=len(results),
        missing=sorted(k for k, v in results if v == "missing"),
        wrong=sorted(k for k, v in results if v == "wrong"),
    )
