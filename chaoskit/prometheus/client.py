"""Asking Prometheus from the host, through prometheus-api-client.

Traffic from the host goes only to 127.0.0.1 (the NodePorts kind publishes
there), so a client for any other address is refused when it is made, not
when a query first fails. Transient connection errors (kube-proxy
reprogramming the NodePort, Prometheus restarting) are retried with tenacity
for a bounded time; an unreachable Prometheus then raises
:class:`PrometheusUnreachable` naming the URL. :meth:`PrometheusClient.check_reachable`
gives up within a few seconds, so an experiment can call it before any load
starts.

Two choices made around prometheus-api-client 0.7.2: its urllib3 retries
(three tries with back-off, several seconds against a closed port) are
switched off in favour of the tenacity ones, whose stop and wait show at each
call; and range queries pass ``start``/``end`` themselves, because the
library rounds them to whole seconds. Reachability is checked on
``/-/ready`` rather than with the library's ``check_prometheus_connection``,
which fetches ``/``: that redirects to the web UI, whose templates Debian's
build (and chaoskit's image) lack, so it answers 500 on a healthy server.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import requests
from prometheus_api_client.exceptions import PrometheusApiClientException
from prometheus_api_client.prometheus_connect import PrometheusConnect
from tenacity import RetryError, Retrying, retry_if_exception_type, retry_if_result, stop_after_delay, wait_fixed
from urllib3.util.retry import Retry

from chaoskit import targets
from chaoskit.errors import ClusterError, PermanentError, UsageError

TRANSIENT = (requests.ConnectionError, requests.Timeout)
"""Errors a retry may cure: nothing answered, or not in time."""
MAX_POINTS = 10_000
"""Points per series a range query asks for at most (Prometheus refuses more than 11,000)."""
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class PrometheusUnreachable(ClusterError):
    """Prometheus did not answer at its URL, even after retries."""


class PrometheusQueryError(PermanentError):
    """Prometheus answered, but refused the query (bad PromQL, or an error running it)."""


class TargetsNotScraped(ClusterError):
    """The targets waited for were not scraped successfully in time."""


@dataclass(frozen=True)
class Sample:
    """One value of a series."""

    timestamp: float
    """Unix time of the sample, in seconds."""
    value: float
    """The value (NaN and infinities as Prometheus sent them)."""


@dataclass(frozen=True)
class TimeSeries:
    """One series of a query's result."""

    labels: dict[str, str]
    """Its label set, ``__name__`` included when the result keeps it."""
    samples: tuple[Sample, ...]
    """Its samples, oldest first (one for an instant query)."""

    @property
    def values(self) -> list[float]:
        """The sample values alone."""
        return [s.value for s in self.samples]

    @property
    def last(self) -> Sample:
        """The newest sample."""
        return self.samples[-1]


@dataclass(frozen=True)
class Target:
    """One active scrape target, as Prometheus's targets API reports it."""

    labels: dict[str, str]
    """The target's labels after relabelling (``job``, ``instance``, ``namespace``...)."""
    health: str
    """``up``, ``down`` or ``unknown`` (not scraped yet)."""
    last_error: str
    """Why the last scrape failed; empty when it did not."""
    scrape_url: str
    """The URL Prometheus scrapes."""


def local_url(url: str) -> str:
    """Check that ``url`` is ``http://127.0.0.1:PORT``, or a host allowed on purpose (``--chaos-allow-target``,
    :mod:`chaoskit.targets`) over HTTP(S); return it without a trailing slash.

    Raises UsageError for anything else: the host reaches the cluster only
    through ports published on 127.0.0.1 unless told otherwise.
    """
    hint = (
        "chaoskit asks Prometheus at http://127.0.0.1:PORT (a NodePort the cluster publishes on the host), or at "
        "a host allowed with --chaos-allow-target HOST:PORT"
    )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"Prometheus URL {url!r} is malformed ({exc}): {hint}") from None
    local = parts.hostname == "127.0.0.1"
    scheme_ok = parts.scheme == "http" if local else parts.scheme in ("http", "https")
    if not scheme_ok or parts.username or parts.password:
        raise UsageError(f"Prometheus URL {url!r} is not allowed: {hint}")
    if port is None:
        raise UsageError(f"Prometheus URL {url!r} has no port: {hint}")
    if not local and (parts.hostname in targets.LOOPBACK or not targets.allowed(parts.hostname, port)):
        raise UsageError(f"Prometheus URL {url!r} is not allowed: {hint}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise UsageError(f"Prometheus URL {url!r} has a path or query: {hint}")
    if local:
        return f"http://127.0.0.1:{port}"
    return f"{parts.scheme}://{parts.netloc}"


def selector(labels: Mapping[str, str]) -> str:
    """A PromQL label selector matching ``labels`` exactly: ``{job="pods",namespace="x"}``."""
    for name in labels:
        if not _LABEL_NAME.fullmatch(name):
            raise UsageError(f"{name!r} is not a Prometheus label name")
    # A JSON string is a valid PromQL string literal: same quotes, same escapes.
    return "{" + ",".join(f"{name}={json.dumps(value)}" for name, value in sorted(labels.items())) + "}"


class PrometheusClient:
    """Queries to one Prometheus on 127.0.0.1, with typed results.

    Also an experiment's ``prometheus`` (:class:`chaoskit.experiment.Prometheus`):
    it has :meth:`check_reachable` and :meth:`values`.
    """

    def __init__(self, url: str, *, request_timeout: float = 5.0, retry_within: float = 10.0, step: float = 1.0):
        """``retry_within`` bounds the retries of a query on transient errors; ``step`` is
        the default resolution of range queries, in seconds (the scrape interval suits)."""
        self.url = local_url(url)
        self.request_timeout = request_timeout
        self.retry_within = retry_within
        self.step = step
        self._session = requests.Session()
        self._session.trust_env = False  # no proxy from the environment between us and 127.0.0.1
        self._connect = PrometheusConnect(
            url=self.url, session=self._session, retry=Retry(total=0, redirect=False, raise_on_status=False)
        )

    @classmethod
    def on_port(cls, port: int, **options: Any) -> PrometheusClient:
        """A client for ``http://127.0.0.1:PORT``."""
        return cls(f"http://127.0.0.1:{port}", **options)

    def close(self) -> None:
        """Close the HTTP connections."""
        self._connect.close()

    def __enter__(self) -> PrometheusClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PrometheusClient({self.url!r})"

    # --- reachability --------------------------------------------------------------

    def check_reachable(self, within: float = 3.0) -> None:
        """Raise PrometheusUnreachable unless Prometheus answers ready within ``within`` seconds.

        Cheap and quick (a closed port fails in ``within``), so it suits a
        check before any load or fault starts.
        """

        def ready() -> bool:
            try:
                response = self._session.get(f"{self.url}/-/ready", timeout=min(self.request_timeout, within))
            except TRANSIENT:
                return False
            return response.status_code == 200

        try:
            Retrying(stop=stop_after_delay(within), wait=wait_fixed(0.5), retry=retry_if_result(lambda ok: not ok))(
                ready
            )
        except RetryError:
            raise PrometheusUnreachable(
                f"Prometheus at {self.url} is not reachable or not ready (checked for {within:g} s): "
                "is it deployed (chaoskit.prometheus.deploy_prometheus) and its NodePort published by the cluster?"
            ) from None

    # --- queries -------------------------------------------------------------------

    def query(self, promql: str, at: float | None = None) -> list[TimeSeries]:
        """Evaluate ``promql`` at Unix time ``at`` (default: now); one series per result element.

        A scalar result is one series without labels.
        """
        params = {"time": f"{at:.3f}"} if at is not None else {}
        return _series(self._call(promql, lambda: self._connect.custom_query(promql, params=params)))

    def query_range(self, promql: str, start: float, end: float, step: float | None = None) -> list[TimeSeries]:
        """Evaluate ``promql`` every ``step`` seconds from ``start`` to ``end`` (Unix times)."""
        step = self.step if step is None else step
        if end < start:
            raise UsageError(f"range query {promql!r}: end {end} is before start {start}")
        if step <= 0:
            raise UsageError(f"range query {promql!r}: step must be positive, not {step}")
        # The library rounds start and end to whole seconds; these parameters override them.
        params = {"start": f"{start:.3f}", "end": f"{end:.3f}"}
        first, last = datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)
        return _series(
            self._call(
                promql, lambda: self._connect.custom_query_range(promql, first, last, f"{step:g}", params=params)
            )
        )

    def values(self, query: str, start: float, end: float) -> list[float]:
        """Every sample value of every series of ``query`` over [start, end], NaN left out.

        The step is :attr:`step`, coarsened when the range would need more
        than MAX_POINTS points.
        """
        step = self._range_step(start, end)
        series = self.query_range(query, start, end, step)
        return [v for s in series for v in s.values if not math.isnan(v)]

    def _range_step(self, start: float, end: float) -> float:
        """:attr:`step`, coarsened when [start, end] would need more than MAX_POINTS points."""
        return max(self.step, (end - start) / MAX_POINTS)

    def alert_states(self, name: str, start: float, end: float) -> list[tuple[float, str]]:
        """Alert ``name``'s state over [start, end] as Prometheus evaluated its rule (the ``ALERTS`` series):
        ``(time, "pending" | "firing")`` at each step it was active (firing where both series have a sample),
        oldest first; a step with neither: inactive. Also an experiment's view of alerts
        (:data:`chaoskit.slo.AlertStates`)."""
        step = self._range_step(start, end)
        by_time: dict[float, str] = {}
        for series in self.query_range(f'ALERTS{{alertname="{name}"}}', start, end, step):
            state = series.labels.get("alertstate", "")
            for sample in series.samples:
                if state == "firing" or by_time.get(sample.timestamp) != "firing":
                    by_time[sample.timestamp] = state
        return sorted((t, s) for t, s in by_time.items() if s in ("pending", "firing"))

    def _call(self, promql: str, request: Any) -> Any:
        try:
            return Retrying(
                stop=stop_after_delay(self.retry_within),
                wait=wait_fixed(0.5),
                retry=retry_if_exception_type(TRANSIENT),
                reraise=True,
            )(request)
        except TRANSIENT as exc:
            raise PrometheusUnreachable(
                f"Prometheus at {self.url} did not answer {promql!r} within {self.retry_within:g} s: {exc}"
            ) from None
        except PrometheusApiClientException as exc:
            raise PrometheusQueryError(f"Prometheus at {self.url} refused {promql!r}: {exc}") from None

    # --- targets -------------------------------------------------------------------

    def targets(self, labels: Mapping[str, str] | None = None) -> list[Target]:
        """The active scrape targets whose labels include ``labels``."""
        want = dict(labels or {})
        try:
            response = Retrying(
                stop=stop_after_delay(self.retry_within),
                wait=wait_fixed(0.5),
                retry=retry_if_exception_type(TRANSIENT),
                reraise=True,
            )(self._session.get, f"{self.url}/api/v1/targets", params={"state": "active"}, timeout=self.request_timeout)
        except TRANSIENT as exc:
            raise PrometheusUnreachable(f"Prometheus at {self.url} did not list its targets: {exc}") from None
        if response.status_code != 200:
            raise PrometheusQueryError(f"Prometheus at {self.url} answered {response.status_code} for its targets")
        found = []
        for item in response.json()["data"]["activeTargets"]:
            target_labels = {str(k): str(v) for k, v in item.get("labels", {}).items()}
            if all(target_labels.get(k) == v for k, v in want.items()):
                health, error = str(item.get("health", "")), str(item.get("lastError", ""))
                found.append(Target(target_labels, health, error, str(item.get("scrapeUrl", ""))))
        return found

    def wait_for_scrape(self, labels: Mapping[str, str], count: int = 1, within: float = 60.0) -> list[TimeSeries]:
        """Wait until at least ``count`` targets with ``labels`` were scraped successfully (``up == 1``).

        Returns their ``up`` series. On timeout, the error lists the matching
        targets with their health and last scrape error.
        """
        query = f"up{selector(labels)} == 1"
        try:
            return Retrying(
                stop=stop_after_delay(within), wait=wait_fixed(0.5), retry=retry_if_result(lambda up: len(up) < count)
            )(self.query, query)
        except RetryError:
            seen = self.targets(labels)
            detail = "; ".join(
                f"{t.scrape_url} {t.health}" + (f" ({t.last_error})" if t.last_error else "") for t in seen
            )
            raise TargetsNotScraped(
                f"after {within:g} s, fewer than {count} targets {selector(labels)} were scraped by {self.url}: "
                f"{len(seen)} matched ({detail or 'none discovered'})"
            ) from None


def _series(result: Any) -> list[TimeSeries]:
    """Typed series from the ``result`` of a query response (vector, matrix or scalar)."""
    if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
        return [TimeSeries({}, (_sample(result),))]  # a scalar: [time, "value"]
    series = []
    for item in result:
        points = item["values"] if "values" in item else [item["value"]]
        labels = {str(k): str(v) for k, v in item.get("metric", {}).items()}
        series.append(TimeSeries(labels, tuple(_sample(p) for p in points)))
    return series


def _sample(point: Any) -> Sample:
    try:
        return Sample(float(point[0]), float(point[1]))
    except (TypeError, ValueError, IndexError):
        raise PrometheusQueryError(f"Prometheus returned {point!r} where a sample was expected") from None
