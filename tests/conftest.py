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


@pytest.fixture(autouse=True, scope="session")
def dbt_artifacts_in_tmp(tmp_path_factory):
    """dagster-dbt's runs write their artifacts and logs under a temporary folder, not into the
    checkout's ``dbt_project/target/``."""
    target = tmp_path_factory.mktemp("dbt-target")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DBT_TARGET_PATH", str(target))
        mp.setenv("DBT_LOG_PATH", str(target))
        yield target
