"""The cluster's own Prometheus named by its Service: the option's form, and one Prometheus at a time."""

from __future__ import annotations

import pytest

from chaoskit.errors import UsageError
from chaoskit.prometheus.service import PrometheusService, reach_prometheus

pytest_plugins = ["pytester"]


def test_a_service_is_namespace_slash_name_colon_port():
    service = PrometheusService.parse("monitoring/prometheus-k8s:9090", "--chaos-prometheus-service")
    assert service == PrometheusService("monitoring", "prometheus-k8s", 9090)
    assert str(service) == "monitoring/prometheus-k8s:9090"


@pytest.mark.parametrize(
    "text",
    ["prometheus-k8s:9090", "monitoring/prometheus-k8s", "Monitoring/p:9090", "m/p:0", "m/p:70000", "m/p:http", ""],
)
def test_anything_else_is_a_usage_error_naming_the_option(text):
    with pytest.raises(UsageError, match=r"--prometheus-service .* is not NAMESPACE/SERVICE:PORT, e\.g\. monitoring/"):
        PrometheusService.parse(text, "--prometheus-service")


def test_a_url_and_a_service_at_once_are_refused_before_anything_is_reached():
    service = PrometheusService("monitoring", "prometheus-k8s", 9090)
    with pytest.raises(UsageError, match="are both given: name one"):
        with reach_prometheus(None, "http://127.0.0.1:9090", service):  # type: ignore[arg-type]
            pass


def test_neither_is_none_and_the_run_deploys_its_own():
    with reach_prometheus(None) as client:  # type: ignore[arg-type]
        assert client is None


def test_the_plugin_refuses_a_bad_service_and_a_service_beside_a_url_at_startup(pytester):
    pytester.makepyfile("def test_nothing():\n    pass\n")
    bad = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--chaos-prometheus-service=prometheus:9090")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*--chaos-prometheus-service 'prometheus:9090' is not NAMESPACE/SERVICE:PORT*"])
    both = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--chaos-prometheus-url=http://127.0.0.1:9090", "--chaos-prometheus-service=m/p:9090"
    )
    assert both.ret == pytest.ExitCode.USAGE_ERROR
    both.stderr.fnmatch_lines(["*--chaos-prometheus-url and --chaos-prometheus-service are both given*"])
