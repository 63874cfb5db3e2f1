"""The public acknowledged-write helpers, driven by in-memory client functions (no cluster involved)."""

from __future__ import annotations

import threading
import time

import pytest

from chaoskit import AckedWriter, ReadBackFailed, SpecError, read_back


class Store:
    """A key-value store that refuses every third write and silently drops the keys it is told to."""

    def __init__(self, drop: int = 0, corrupt: int = 0) -> None:
        self.data: dict[str, str] = {}
        self.lock = threading.Lock()
        self.calls = 0
        self.drop = drop
        self.corrupt = corrupt

    def write(self, key: str, value: str) -> int:
        with self.lock:
            self.calls += 1
            n = self.calls
        if n % 3 == 0:
            raise OSError("HTTP 503")
        with self.lock:
            if self.drop and n % 7 == 0 and self.drop > 0:
                self.drop -= 1  # acknowledged, then lost
            elif self.corrupt and n % 5 == 0:
                self.corrupt -= 1
                self.data[key] = "stale"
            else:
                self.data[key] = value
        return n

    def read(self, key: str) -> str | None:
        return self.data.get(key)


def test_the_writer_keeps_acknowledged_writes_apart_from_refused_ones_and_read_back_finds_the_lost():
    store = Store(drop=2, corrupt=1)
    with AckedWriter(store.write, max_writes=60, max_seconds=10, concurrency=3, pause=0) as writer:
        writer.wait_for_acks(40, within=10)
    log = writer.stop()
    assert log.sent == 60 == store.calls
    assert len(log.failed) == 20 and all(v == "OSError: HTTP 503" for v in log.failed.values())
    assert len(log.acknowledged) == 40 and not set(log.acknowledged) & set(log.failed)
    assert len(set(log.acknowledged.values())) == 40  # every value is its own
    assert set(log.answers) == set(log.acknowledged)  # what write() returned, per acknowledged key
    assert set(log.acked_at) == set(log.acknowledged) and sorted(log.acked_at.values()) == sorted(log.ack_times)
    checked = read_back(store.read, log.acknowledged)
    assert checked.checked == 40
    assert len(checked.missing) == 2 and len(checked.wrong) == 1
    assert checked.lost == sorted(checked.missing + checked.wrong)
    assert all(store.read(k) is None for k in checked.missing)
    assert all(store.read(k) == "stale" for k in checked.wrong)


def test_the_writer_stops_by_itself_at_its_time_bound():
    writer = AckedWriter(lambda k, v: time.sleep(0.01), max_writes=1_000_000, max_seconds=0.3, concurrency=2)
    with writer:
        with pytest.raises(AssertionError, match=r"of 1000000 writes acknowledged .*writer ended"):
            writer.wait_for_acks(1_000_000, within=10)
        assert not writer.running  # it ended by itself, before the block asked it to
    assert 0 < writer.log.sent < 200


def test_waiting_for_acks_that_never_come_names_the_last_error():
    def refuse(key: str, value: str) -> None:
        raise ConnectionRefusedError("no leader")

    with AckedWriter(refuse, max_writes=5, max_seconds=5, concurrency=1, pause=0) as writer:
        with pytest.raises(AssertionError, match=r"only 0 of 1 .*5 not acknowledged, last error: .*no leader"):
            writer.wait_for_acks(1, within=5)


def test_read_back_retries_a_failing_read_then_refuses_to_guess():
    attempts = {"a": 0}

    def flaky(key: str) -> str | None:
        attempts[key] += 1
        if attempts[key] < 3:
            raise OSError("leader changing")
        return "1"

    assert read_back(flaky, {"a": "1"}, retry_seconds=5).lost == []
    assert attempts["a"] == 3

    def down(key: str) -> str | None:
        raise OSError("connection refused")

    with pytest.raises(ReadBackFailed, match=r"could not read back 'k' within 0.2 s: OSError: connection refused"):
        read_back(down, {"k": "v"}, retry_seconds=0.2)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_writes": 0}, "max_writes must be a whole number"),
        ({"max_writes": True}, "max_writes must be a whole number"),
        ({"max_seconds": 0}, "every writer ends"),
        ({"max_seconds": 7200}, "every writer ends"),
        ({"concurrency": 0}, "concurrency must be"),
        ({"pause": -1}, "pause must be"),
    ],
)
def test_a_writer_without_bounds_is_refused(options, message):
    with pytest.raises(SpecError, match=message):
        AckedWriter(lambda k, v: None, **options)


def test_a_writer_needs_a_function():
    with pytest.raises(SpecError, match="write must be a function"):
        AckedWriter("http://127.0.0.1:30080/put")  # type: ignore[arg-type]
