"""Fixtures of the feature tests: a raw warehouse built and tested by dbt, for real."""

from pathlib import Path

import pytest

from tests.support.warehouses import run_dbt, synthetic_raw, write_raw


@pytest.fixture(scope="session")
def raw_frames() -> dict:
    return synthetic_raw(venues=("a", "b"))


@pytest.fixture(scope="session")
def built_warehouse(tmp_path_factory, raw_frames) -> Path:
    """A warehouse with two venues, order books and every model built and tested by dbt."""
    path = tmp_path_factory.mktemp("features") / "warehouse.duckdb"
    write_raw(path, raw_frames)
    run_dbt(path, "build")
    return path
