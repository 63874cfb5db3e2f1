"""Traffic beyond this machine only on purpose: load hosts, Prometheus URLs and the allowed-target syntax."""

from __future__ import annotations

import pytest

from chaoskit import targets
from chaoskit.errors import SpecError, UsageError
from chaoskit.load import LoadSpec
from chaoskit.prometheus.client import local_url


@pytest.fixture(autouse=True)
def no_session_targets(monkeypatch):
    monkeypatch.setattr(targets, "_allowed", set())


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("staging.example", ("staging.example", None)),
        ("Staging.Example:8443", ("staging.example", 8443)),
        ("10.0.0.5:80", ("10.0.0.5", 80)),
        ("[fd00::1]:9090", ("fd00::1", 9090)),
    ],
)
def test_targets_are_host_and_optional_port(text, parsed):
    assert targets.parse(text) == parsed


@pytest.mark.parametrize("text", ["", "http://x:80", "x:0", "x:99999", "user@x", ":80", "x:port"])
def test_bad_targets_are_refused_with_the_form(text):
    with pytest.raises(SpecError, match="HOST"):
        targets.parse(text)


def test_load_to_another_host_is_refused_unless_allowed():
    with pytest.raises(
        SpecError, match=r"staging\.example:8080 is not allowed.*allow_targets HOST:PORT in the load spec"
    ):
        LoadSpec(host="http://staging.example:8080", run_seconds=5)
    spec = LoadSpec(host="https://staging.example:8443", run_seconds=5, allow_targets=["staging.example:8443"])
    assert spec.allow_targets == ("staging.example:8443",)
    with pytest.raises(SpecError, match=r"staging\.example:9000 is not allowed"):  # another port of it is not
        LoadSpec(host="http://staging.example:9000", run_seconds=5, allow_targets=("staging.example:8443",))
    LoadSpec(host="http://staging.example:9000", run_seconds=5, allow_targets=("staging.example",))  # any port


def test_a_session_allowance_covers_every_spec_and_prometheus():
    with pytest.raises(UsageError, match="--chaos-allow-target"):
        local_url("http://prometheus.staging:9090")
    targets.allow(["prometheus.staging:9090", "web.staging"])
    assert local_url("https://prometheus.staging:9090/") == "https://prometheus.staging:9090"
    LoadSpec(host="http://web.staging:80", run_seconds=5)
    assert local_url("http://127.0.0.1:30090/") == "http://127.0.0.1:30090"


def test_loopback_stays_plain_http_and_addresses_are_not_names():
    with pytest.raises(SpecError, match="refusing"):
        LoadSpec(host="https://127.0.0.1:30080", run_seconds=5)
    with pytest.raises(SpecError, match="is not allowed"):  # allowing a name never allows an address
        LoadSpec(host="http://10.0.0.5:80", run_seconds=5, allow_targets=("staging.example",))


def test_a_session_allowance_reaches_the_load_worker():
    """The worker process checks its spec again: the session's allowed targets must go with it. 127.0.0.2 is
    on this machine's loopback but not a name chaoskit takes for it, so it stands for a remote host here."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from chaoskit.load import run_load

    class Ok(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.2", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host = f"http://127.0.0.2:{server.server_address[1]}"
        with pytest.raises(SpecError, match="is not allowed"):
            LoadSpec(host=host, run_seconds=1)
        targets.allow(["127.0.0.2"])
        result = run_load(LoadSpec(host=host, run_seconds=1, warmup_seconds=0.2, users=1))
    finally:
        server.shutdown()
        server.server_close()
    assert result.records and all(r.ok for r in result.records)
