"""How fast chaoskit's API clients may call a cluster: :class:`ApiRate` (client-go's QPS and Burst), held by a
token bucket on every request of a client (:func:`limit_requests`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chaoskit.errors import UsageError


@dataclass(frozen=True)
class ApiRate:
    """How fast one API client may call the API server: ``qps`` requests a second on average, ``burst`` at
    once (client-go's QPS and Burst). On a large shared cluster, lower it so a fault on hundreds of pods does
    not crowd out the controllers it is testing; the API server's own priority and fairness applies besides."""

    qps: float = 50.0
    burst: int = 100

    def __post_init__(self) -> None:
        if not self.qps > 0:
            raise UsageError(f"the API client's QPS must be above 0, not {self.qps:g}")
        if self.burst < 1:
            raise UsageError(f"the API client's burst must be 1 or more, not {self.burst}")

    @classmethod
    def given(cls, qps: float | None, burst: int | None) -> ApiRate | None:
        """The rate from options that may be unset (None: the default for each)."""
        if qps is None and burst is None:
            return None
        default = cls()
        return cls(default.qps if qps is None else qps, default.burst if burst is None else burst)


DEFAULT_RATE = ApiRate()


class TokenBucket:
    """At most ``qps`` requests a second on average, ``burst`` of them at once (client-go's rule): a request
    takes a token, tokens come back at ``qps`` a second up to ``burst``, and a request with none waits."""

    def __init__(
        self,
        qps: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.qps, self.burst = qps, burst
        self._clock, self._sleep = clock, sleep
        self._tokens = float(burst)
        self._at = clock()
        self._guard = threading.Lock()
        self.waited = 0.0
        """Seconds requests spent waiting for tokens, in all (for diagnostics and benchmarks)."""

    def take(self) -> None:
        with self._guard:
            now = self._clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.qps)
            self._at = now
            self._tokens -= 1.0  # taken now; a negative balance is the wait of this request (and of later ones)
            wait = -self._tokens / self.qps if self._tokens < 0 else 0.0
            self.waited += wait
        if wait > 0:
            self._sleep(wait)


def limit_requests(api_client: Any, qps: float, burst: int) -> TokenBucket:
    """Hold every request of ``api_client`` to ``qps``/``burst`` (:class:`TokenBucket`); return the bucket."""
    bucket = TokenBucket(qps, burst)
    rest = api_client.rest_client
    unlimited = rest.request

    def request(*args: Any, **kwargs: Any) -> Any:
        bucket.take()
        return unlimited(*args, **kwargs)

    rest.request = request
    return bucket
