"""Shared fixtures: a fresh DuckDB file per test and the real Binance sample (when present)."""

from pathlib import Path

import duckdb
import pytest

from ingestion.warehouse import ensure_raw_schema

SAMPLE = Path(__file__).resolve().parents[3] / "shared" / "data" / "binance-sample"


@pytest.fixture
def con(tmp_path):
    connection = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    ensure_raw_schema(connection)
    yield connection
    connection.close()


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    if not (SAMPLE / "futures").is_dir():
        pytest.skip(f"real Binance sample not found at {SAMPLE} (../shared/data/binance-sample)")
    return SAMPLE
