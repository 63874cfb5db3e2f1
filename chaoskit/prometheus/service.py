"""The cluster's own Prometheus, reached through the API server when the host cannot reach it otherwise.

``--chaos-prometheus-service monitoring/prometheus-k8s:9090`` (pytest), ``--prometheus-service`` (``chaoskit
run``) and ``prometheus: {service: prometheus-k8s, namespace: monitoring, port: 9090}`` (files) name a Service;
:func:`through_service` opens a port-forward to it (:mod:`chaoskit.adapters.portforward`: each connection to the
next ready pod of its selector, through the ``pods/portforward`` subresource) and yields a
:class:`~chaoskit.prometheus.client.PrometheusClient` on that local port. Nothing is deployed or removed.

What it costs: every query goes through the API server, a stream per connection. Queries are few (an objective
asks once at the end, a stop condition once a second), so this suits them; the runner needs ``create`` on
``pods/portforward`` in the Service's namespace, and ``get``/``list`` on its Services and pods.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from chaoskit.adapters.kube import Kube
from chaoskit.adapters.portforward import port_forward
from chaoskit.errors import UsageError
from chaoskit.prometheus.client import PrometheusClient

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_SERVICE = re.compile(rf"(?P<namespace>{_DNS_LABEL})/(?P<name>{_DNS_LABEL}):(?P<port>\d{{1,5}})")


@dataclass(frozen=True)
class PrometheusService:
    """A Prometheus Service in the cluster: where :func:`through_service` forwards to."""

    namespace: str
    name: str
    port: int
    """The Service's port (its ``port``, not the pods' ``targetPort``)."""

    @classmethod
    def parse(cls, text: str, option: str) -> PrometheusService:
        """``NAMESPACE/NAME:PORT``; anything else is a :class:`UsageError` naming ``option``."""
        match = _SERVICE.fullmatch(text.strip())
        if match is None or not 0 < int(match["port"]) < 65536:
            raise UsageError(f"{option} {text!r} is not NAMESPACE/SERVICE:PORT, e.g. monitoring/prometheus-k8s:9090")
        return cls(match["namespace"], match["name"], int(match["port"]))

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}:{self.port}"


@contextmanager
def through_service(kube: Kube, service: PrometheusService, within: float = 10.0) -> Iterator[PrometheusClient]:
    """A client for ``service``'s Prometheus on a local port-forward, once it answers (within ``within`` s);
    closed with the forward."""
    with port_forward(kube, service.namespace, f"service/{service.name}", service.port) as port:
        client = PrometheusClient.on_port(port)
        with client:
            client.check_reachable(within=within)
            yield client


@contextmanager
def reach_prometheus(
    kube: Kube, url: str | None = None, service: PrometheusService | None = None, within: float = 10.0
) -> Iterator[PrometheusClient | None]:
    """The Prometheus a run was told to ask, checked to answer within ``within`` s: at ``url`` (on 127.0.0.1,
    or a host allowed on purpose), through ``service``'s port-forward, or None when neither is given (the run
    then deploys chaoskit's own where it needs one). Both at once is a :class:`UsageError`."""
    if url and service is not None:
        raise UsageError(f"a Prometheus URL ({url}) and a Prometheus Service ({service}) are both given: name one")
    if service is not None:
        with through_service(kube, service, within) as client:
            yield client
    elif url:
        with PrometheusClient(url) as direct:
            direct.check_reachable(within=within)
            yield direct
    else:
        yield None
