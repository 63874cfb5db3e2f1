"""The curated public API: every exported name resolves, and importing the package stays light."""

import subprocess
import sys

import chaoskit


def test_every_exported_name_resolves():
    for name in chaoskit.__all__:
        assert getattr(chaoskit, name).__name__ == name


def test_importing_the_package_imports_no_ssl_user_before_locust_can_patch():
    # The load worker runs chaoskit/__init__.py before Locust's gevent patches ssl.
    code = "import sys, chaoskit; print(sorted(m for m in ('kubernetes', 'urllib3', 'ssl') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
