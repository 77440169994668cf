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


LONGEST_FIRST = (
    "orchestration/test_demo.py",
    "orchestration/test_pipeline.py",
    "orchestration/test_real_data.py",
)
"""The longest modules, collected first so that ``make test``'s two workers (pytest-xdist,
``--dist loadfile``) start them at once instead of last."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the modules of ``LONGEST_FIRST`` to the front, in that order (the rest keep theirs)."""

    def rank(item: pytest.Item) -> int:
        path = item.path.as_posix()
        return next(
            (i for i, m in enumerate(LONGEST_FIRST) if path.endswith(m)), len(LONGEST_FIRST)
        )

    items.sort(key=rank)
