"""Each kind of bad input is caught by a named check whose message names symbol and time."""

import duckdb
import pandas as pd
import pytest

from quality.suites import run_suite, suites
from tests.support.warehouses import run_dbt, synthetic_raw, write_raw

BAD_TS = pd.Timestamp("2024-01-03 05:00")


@pytest.fixture(scope="module")
def clean() -> dict:
    return synthetic_raw(n_symbols=2, days=5)


def _validate(tmp_path, frames: dict, suite: str):
    path = tmp_path / "warehouse.duckdb"
    write_raw(path, frames)
    with duckdb.connect(str(path), read_only=True) as con:
        return run_suite(con, suites()[suite])


def _bar(ohlcv: pd.DataFrame, market: str) -> pd.Series:
    return (ohlcv.market == market) & (ohlcv.symbol == "ETH") & (ohlcv.ts == BAD_TS)


def test_clean_raw_data_passes_every_raw_suite(tmp_path, clean):
    assert _validate(tmp_path, clean, "raw_ohlcv").success
    assert _validate(tmp_path, clean, "raw_funding_rates").success


def test_a_missing_spot_bar_is_named(tmp_path, clean):
    ohlcv = clean["ohlcv"][~_bar(clean["ohlcv"], "spot")]
    result = _validate(tmp_path, {**clean, "ohlcv": ohlcv}, "raw_ohlcv")
    failed = {o.column: o for o in result.failures}
    # The spot series also has an unrecorded one-bar gap (named at the next spot bar).
    assert set(failed) == {"perp_bar_without_spot", "gap_before_is_recorded"}
    failure = failed["perp_bar_without_spot"]
    assert failure.unexpected_count == 1
    assert "market=perp, symbol=ETH, timeframe=1h, ts=2024-01-03 05:00:00" in failure.describe()
    assert "market=spot, symbol=ETH, timeframe=1h, ts=2024-01-03 06:00:00" in result.summary()


def test_a_recorded_gap_is_not_a_failure(tmp_path, clean):
    ohlcv = clean["ohlcv"][~_bar(clean["ohlcv"], "spot") & ~_bar(clean["ohlcv"], "perp")]
    gap = {"venue": "a", "symbol": "ETH", "timeframe": "1h", "gap_start": BAD_TS}
    gaps = pd.DataFrame(
        [
            {**gap, "market": m, "gap_end": BAD_TS, "missing_bars": 1, "source": "test"}
            for m in ("perp", "spot")
        ]
    )
    ok = _validate(tmp_path, {**clean, "ohlcv": ohlcv, "data_gaps": gaps}, "raw_ohlcv")
    assert ok.success


def test_a_nan_price_is_named(tmp_path, clean):
    path = tmp_path / "bad.duckdb"
    write_raw(path, clean)
    with duckdb.connect(str(path)) as con:  # NaN, not NULL: the raw schema forbids NULL
        con.execute(
            "UPDATE raw.ohlcv SET close = 'nan'::DOUBLE WHERE market = 'perp' "
            "AND symbol = 'ETH' AND ts = ?",
            [BAD_TS],
        )
    with duckdb.connect(str(path), read_only=True) as con:
        result = run_suite(con, suites()["raw_ohlcv"])
    failed = {o.column: o for o in result.failures}
    assert "close" in failed and failed["close"].expectation.endswith("not_be_null")
    assert "market=perp, symbol=ETH, timeframe=1h, ts=2024-01-03 05:00:00" in result.summary()


def test_a_duplicated_funding_event_is_named(tmp_path, clean):
    funding = clean["funding_rates"]
    event = funding[(funding.symbol == "ETH") & (funding.ts == pd.Timestamp("2024-01-03 08:00"))]
    again = event.assign(ts=event.ts + pd.Timedelta(seconds=1))
    result = _validate(
        tmp_path, {**clean, "funding_rates": pd.concat([funding, again])}, "raw_funding_rates"
    )
    [failure] = result.failures
    assert failure.column == "settlements_in_interval_slot" and failure.unexpected_count == 2
    assert "symbol=ETH, ts=2024-01-03 08:00:00" in failure.describe()


def test_a_funding_rate_of_5_percent_per_8h_is_named(tmp_path, clean):
    funding = clean["funding_rates"].copy()
    funding.loc[(funding.symbol == "ETH") & (funding.ts == "2024-01-03 08:00"), "funding_rate"] = (
        0.05
    )
    result = _validate(tmp_path, {**clean, "funding_rates": funding}, "raw_funding_rates")
    [failure] = result.failures
    assert failure.column == "funding_rate_8h"
    assert "symbol=ETH, ts=2024-01-03 08:00:00" in failure.describe()


@pytest.mark.slow
def test_a_basis_of_50_percent_is_named_by_the_mart_suite(tmp_path, clean):
    ohlcv = clean["ohlcv"].copy()
    ohlcv.loc[_bar(ohlcv, "spot"), ["open", "high", "low", "close"]] *= 2 / 3
    assert _validate(tmp_path, {**clean, "ohlcv": ohlcv}, "raw_ohlcv").success
    path = tmp_path / "warehouse.duckdb"
    # The dbt range test on basis only warns (unit tests check the SQL: built_warehouse runs them).
    run_dbt(path, "build", "--exclude-resource-type", "unit_test")
    with duckdb.connect(str(path), read_only=True) as con:
        result = run_suite(con, suites()["fct_features"])
    failed = {o.column: o for o in result.failures}
    assert "basis" in failed and failed["basis"].unexpected_count == 1
    assert "symbol=ETH, timeframe=1h, ts=2024-01-03 05:00:00" in failed["basis"].describe()
