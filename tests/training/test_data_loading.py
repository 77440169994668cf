"""The feature mart loads into aligned arrays, and bad rows are named."""

import numpy as np
import pandas as pd
import pytest

from training.data import market_from_frame, split_index

FEATURES = ("basis", "log_return_1")


def _frame(n_bars: int = 6) -> pd.DataFrame:
    ts = pd.date_range("2024-01-01", periods=n_bars, freq="h")
    rows = []
    for i, t in enumerate(ts):
        for j, symbol in enumerate(("BTC", "ETH")):
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
                    "log_return_1": np.nan if i == 0 else 0.01,
                }
            )
    return pd.DataFrame(rows)


def test_pivots_to_time_by_asset_and_drops_warm_up_bars():
    market = market_from_frame(_frame(), FEATURES, "1h")
    assert market.symbols == ("BTC", "ETH")
    assert market.n_bars == 5, "the first bar has no log return yet"
    assert market.features.shape == (5, 2, 2)
    assert market.close[0, 1] == 201.0
    assert market.bar_hours == 1.0


def test_a_missing_symbol_bar_is_named():
    frame = _frame()
    frame = frame[~((frame.symbol == "ETH") & (frame.ts == pd.Timestamp("2024-01-01 03:00")))]
    with pytest.raises(ValueError, match=r"no row for ETH at 2024-01-01 03:00"):
        market_from_frame(frame, FEATURES, "1h")


def test_a_nan_feature_after_warm_up_is_named():
    frame = _frame()
    frame.loc[(frame.symbol == "BTC") & (frame.ts == pd.Timestamp("2024-01-01 04:00")), "basis"] = (
        np.nan
    )
    with pytest.raises(ValueError, match=r"basis is NaN for BTC at 2024-01-01 04:00"):
        market_from_frame(frame, FEATURES, "1h")


def test_a_non_positive_price_is_named():
    frame = _frame()
    frame.loc[(frame.symbol == "ETH") & (frame.ts == pd.Timestamp("2024-01-01 02:00")), "low"] = 0
    with pytest.raises(ValueError, match=r"low: invalid value 0.0 for ETH at 2024-01-01 02:00:00"):
        market_from_frame(frame, FEATURES, "1h")


def test_split_keeps_the_tail_out_of_sample():
    market = market_from_frame(_frame(200), FEATURES, "1h")
    cut = split_index(market, test_fraction=0.25, window=8)
    assert cut == round(199 * 0.75)
    with pytest.raises(ValueError, match="too few"):
        split_index(market, test_fraction=0.25, window=100)
