"""Suite-wide guards: nothing in the tests may reach beyond this machine."""

import os

import pytest

from tests.support import network

os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "False")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "true")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")


@pytest.fixture(autouse=True, scope="session")
def no_network():
    """Every test runs with outbound connections restricted to loopback."""
    network.install()
    yield
    network.uninstall()
