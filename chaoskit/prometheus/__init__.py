"""Prometheus for chaoskit's SLO checks: deployed in the cluster, queried from the host.

:func:`deploy_prometheus` runs Debian's Prometheus in the cluster, scraping
annotated pods, kubelets and cAdvisor, behind a NodePort on 127.0.0.1;
:class:`PrometheusClient` queries it from the host with typed results, and is
what an experiment's PromQL objectives ask.
"""

from chaoskit.prometheus.client import (
    PrometheusClient,
    PrometheusQueryError,
    PrometheusUnreachable,
    Sample,
    Target,
    TargetsNotScraped,
    TimeSeries,
    local_url,
    selector,
)
from chaoskit.prometheus.deploy import (
    PrometheusDeployment,
    deploy_prometheus,
    prometheus_config,
    prometheus_objects,
    remove_prometheus,
)

__all__ = [
    "PrometheusClient",
    "PrometheusDeployment",
    "PrometheusQueryError",
    "PrometheusUnreachable",
    "Sample",
    "Target",
    "TargetsNotScraped",
    "TimeSeries",
    "deploy_prometheus",
    "local_url",
    "prometheus_config",
    "prometheus_objects",
    "remove_prometheus",
    "selector",
]
