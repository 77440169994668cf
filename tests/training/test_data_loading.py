"""The feature mart loads into aligned arrays: the configured symbols, the longest run of usable
bars, filled bars not tradable, and bad rows named."""

import logging

import duckdb
import numpy as np
import pandas as pd
import pytest

from training.data import load_market, market_from_frame

FEATURES = ("basis", "log_return_1")
BOTH = ("BTC", "ETH")


def _frame(n_bars: int = 6) -> pd.DataFrame:
    ts = pd.date_range("2024-01-01", periods=n_bars, freq="h")
    rows = []
    for i, t in enumerate(ts):
        for j, symbol in enumerate(BOTH):
            price = 100.0 * (j + 1) + i
            rows.append(
                {
                    "symbol": symbol,
                    "ts": t,
                    "open": price,
                    "high": price + 1,
                    "low": price - 1,
                    "close": price,
                    "volume": 10.0,
                    "mark_close": price,
                    "basis": 0.001 * j,
                    "funding_rate_settled": 0.0001 if t.hour == 7 else 0.0,
                    "hours_to_funding": 7 - t.hour % 8 or 8,
                    "filled": 0,
                    "log_return_1": np.nan if i == 0 else 0.01,
                }
            )
    return pd.DataFrame(rows)


def _at(frame: pd.DataFrame, symbol: str, ts: str) -> pd.Series:
    return (frame.symbol == symbol) & (frame.ts == pd.Timestamp(ts))


def test_pivots_to_time_by_asset_and_drops_warm_up_bars():
    market = market_from_frame(_frame(), FEATURES, "1h", BOTH)
    assert market.symbols == BOTH
    assert market.n_bars == 5, "the first bar has no log return yet"
    assert market.features.shape == (5, 2, 2)
    assert market.close[0, 1] == 201.0
    assert market.bar_hours == 1.0
    assert market.tradable.all()


def test_the_configured_order_of_symbols_is_kept():
    market = market_from_frame(_frame(), FEATURES, "1h", ("ETH", "BTC"))
    assert market.symbols == ("ETH", "BTC")
    assert market.close[0].tolist() == [201.0, 101.0]


def test_a_filled_bar_is_not_tradable_for_that_asset_only():
    frame = _frame()
    frame.loc[_at(frame, "ETH", "2024-01-01 03:00"), "filled"] = 1
    market = market_from_frame(frame, FEATURES, "1h", BOTH)
    assert market.n_bars == 5
    assert (~market.tradable).sum() == 1
    assert not market.tradable[2, 1] and market.tradable[2, 0]


def test_a_missing_symbol_bar_splits_and_the_longest_run_is_kept(caplog):
    frame = _frame(12)
    frame = frame[~_at(frame, "ETH", "2024-01-01 03:00")]
    with caplog.at_level(logging.WARNING, logger="training.data"):
        market = market_from_frame(frame, FEATURES, "1h", BOTH)
    # usable: 01:00-02:00 (2 bars) and 04:00-11:00 (8 bars)
    assert market.n_bars == 8
    assert str(market.timestamps[0]) == "2024-01-01T04:00:00.000000000"
    assert "4 bars left out before it (2024-01-01 03:00:00: no row for ETH)" in caplog.text


def test_a_bar_that_no_symbol_has_splits_too():
    frame = _frame(12)
    frame = frame[frame.ts != pd.Timestamp("2024-01-01 09:00")]
    market = market_from_frame(frame, FEATURES, "1h", BOTH)
    assert market.n_bars == 8, "01:00-08:00, not across the missing hour"
    steps = np.diff(market.timestamps).astype("timedelta64[m]").astype(int)
    assert (steps == 60).all()


def test_a_nan_feature_after_warm_up_splits_and_is_named(caplog):
    frame = _frame(12)
    frame.loc[_at(frame, "BTC", "2024-01-01 09:00"), "basis"] = np.nan
    with caplog.at_level(logging.WARNING, logger="training.data"):
        market = market_from_frame(frame, FEATURES, "1h", BOTH)
    assert market.n_bars == 8
    assert "3 bars left out after it (2024-01-01 09:00:00: basis undefined for BTC)" in caplog.text


def test_a_non_positive_price_is_named():
    frame = _frame()
    frame.loc[_at(frame, "ETH", "2024-01-01 02:00"), "low"] = 0
    with pytest.raises(ValueError, match=r"low: invalid value 0.0 for ETH at 2024-01-01 02:00:00"):
        market_from_frame(frame, FEATURES, "1h", BOTH)


def _mart(tmp_path, frame: pd.DataFrame) -> str:
    path = str(tmp_path / "mart.duckdb")
    with duckdb.connect(path) as con:
        con.register("rows", frame.assign(venue="binance", timeframe="1h"))
        con.execute("CREATE SCHEMA marts")
        con.execute("CREATE TABLE marts.fct_features AS SELECT * FROM rows")
    return path


def test_load_market_reads_only_the_configured_symbols(tmp_path):
    frame = pd.concat([_frame(), _frame().query("symbol == 'ETH'").assign(symbol="SOL")])
    market = load_market(_mart(tmp_path, frame), "binance", "1h", FEATURES, symbols=("BTC",))
    assert market.symbols == ("BTC",) and market.close.shape == (5, 1)


def test_a_configured_symbol_without_rows_is_named(tmp_path):
    path = _mart(tmp_path, _frame())
    with pytest.raises(ValueError, match=r"no rows for symbol\(s\) SOL at venue='binance'"):
        load_market(path, "binance", "1h", FEATURES, symbols=("BTC", "SOL"))
