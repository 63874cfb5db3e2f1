"""The API client's rate (QPS and burst, as client-go has them) and the parallel pod deletes under it."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
import urllib3

from chaoskit.adapters.kube import Kube
from chaoskit.adapters.rate import DEFAULT_RATE, ApiRate, TokenBucket
from chaoskit.errors import CommandTimedOut, UsageError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


def test_a_burst_goes_at_once_then_requests_wait_their_turn_at_qps():
    clock = Clock()
    bucket = TokenBucket(10.0, 3, clock, clock.sleep)
    for _ in range(3):
        bucket.take()
    assert clock.slept == []  # the burst
    bucket.take()
    bucket.take()
    assert clock.slept == [0.1, 0.1]  # then one each 1/qps
    clock.now += 60  # idle: the bucket fills up to the burst, no further
    for _ in range(3):
        bucket.take()
    bucket.take()
    assert clock.slept == [0.1, 0.1, 0.1]
    assert bucket.waited == pytest.approx(0.3)


def test_concurrent_requests_share_one_bucket():
    clock = Clock()
    bucket = TokenBucket(100.0, 5, clock, lambda s: None)  # no real sleep: count the debt instead
    threads = [threading.Thread(target=bucket.take) for _ in range(25)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    # 5 from the burst, and 20 that owed 1/100 s, 2/100 s ... 20/100 s: every request was counted once.
    assert bucket.waited == pytest.approx(sum(n / 100 for n in range(1, 21)))


def test_the_rate_refuses_nonsense_and_takes_one_of_the_two_alone():
    with pytest.raises(UsageError, match="QPS must be above 0, not 0"):
        ApiRate(0, 10)
    with pytest.raises(UsageError, match="burst must be 1 or more, not 0"):
        ApiRate(5, 0)
    assert ApiRate.given(None, None) is None
    assert ApiRate.given(5, None) == ApiRate(5, DEFAULT_RATE.burst)
    assert ApiRate.given(None, 7) == ApiRate(DEFAULT_RATE.qps, 7)


def test_every_request_of_a_client_takes_a_token(tmp_path):
    config = tmp_path / "kubeconfig"
    config.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\nusers: [{name: u, user: {token: t}}]\n"
    )
    kube = Kube(config, "c", ApiRate(2.0, 1))
    seen: list[str] = []
    kube.bucket._sleep = seen.append  # type: ignore[attr-defined]
    kube.bucket._clock = lambda: 0.0  # type: ignore[attr-defined]
    kube.bucket._at = 0.0  # type: ignore[attr-defined]
    with pytest.raises((urllib3.exceptions.MaxRetryError, CommandTimedOut)):
        kube.core.list_namespace(_request_timeout=0.2)  # nothing listens: it fails, after taking its token
    with pytest.raises((urllib3.exceptions.MaxRetryError, CommandTimedOut)):
        kube.core.list_namespace(_request_timeout=0.2)
    assert seen == [0.5]  # the second waited 1/qps
    kube.close()


def test_pods_are_deleted_in_parallel_and_the_first_failure_is_raised_after_all_ended():
    started, gate = [], threading.Barrier(4, timeout=5)
    failed = RuntimeError("pod web-2: 500")

    def delete(name, namespace, grace_period_seconds):
        started.append((name, grace_period_seconds))
        gate.wait()  # four at once, or this times out
        if name == "web-2":
            raise failed

    kube = Kube.__new__(Kube)
    kube.core = SimpleNamespace(delete_namespaced_pod=delete)
    with pytest.raises(RuntimeError) as raised:
        kube.delete_pods("ns", ["web-0", "web-1", "web-2", "web-3"], 0)
    assert raised.value is failed
    assert sorted(started) == [("web-0", 0), ("web-1", 0), ("web-2", 0), ("web-3", 0)]
