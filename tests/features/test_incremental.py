"""Incremental builds (new bars, or a var window) equal a full build of the same data."""

import pandas as pd
import pytest

from tests.support.warehouses import KEY, read_mart, run_dbt, write_raw

pytestmark = pytest.mark.slow

NEW_DAY = pd.Timestamp("2024-01-20")


def _until(frames: dict, end: pd.Timestamp) -> dict:
    return {
        "ohlcv": frames["ohlcv"][frames["ohlcv"].ts < end],
        "funding_rates": frames["funding_rates"][frames["funding_rates"].ts <= end],
        "order_book_snapshots": frames["order_book_snapshots"][
            frames["order_book_snapshots"].ts < end
        ],
    }


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    a, b = a.set_index(KEY).sort_index(), b.set_index(KEY).sort_index()
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9, atol=1e-15)


def test_one_new_day_then_a_window_rebuild_equal_the_full_build(
    tmp_path, raw_frames, built_warehouse
):
    path = tmp_path / "warehouse.duckdb"
    write_raw(path, _until(raw_frames, NEW_DAY))
    # Models and data tests; unit tests check the SQL, not the data (built_warehouse runs them).
    run_dbt(path, "build", "--exclude-resource-type", "unit_test")
    before = read_mart(path)
    assert before.ts.max() < NEW_DAY

    write_raw(path, raw_frames)  # the last day arrives
    run_dbt(path, "run")
    full = read_mart(built_warehouse)
    incremental = read_mart(path)
    assert (incremental.ts >= NEW_DAY).sum() == 2 * 2 * (24 + 1)  # venues x symbols x bars
    _same(incremental, full)

    # A window passed as vars recomputes just those bars, with full look-back.
    run_dbt(path, "run", "--vars", '{"window_start": "2024-01-18", "window_end": "2024-01-19"}')
    _same(read_mart(path), full)
