import numpy as np
import pandas as pd
import pytest

from ingestion.frames import MarketFrames
from ingestion.synthetic import SyntheticMarketConfig, generate_market, iter_market
from ingestion.universe import CHUN_LEE_2025
from ingestion.warehouse import RAW_TABLES, check_raw_frame


@pytest.fixture(scope="module")
def three_venues():
    config = SyntheticMarketConfig(
        symbols=("BTC", "ETH", "XTZ"), n_bars=24 * 120, venues=("binance", "okx", "bybit")
    )
    return generate_market(config)


def test_same_seed_same_market_other_seed_other_market():
    a = generate_market(SyntheticMarketConfig(n_symbols=2, n_bars=200, seed=3))
    b = generate_market(SyntheticMarketConfig(n_symbols=2, n_bars=200, seed=3))
    c = generate_market(SyntheticMarketConfig(n_symbols=2, n_bars=200, seed=4))
    for table in a.tables():
        pd.testing.assert_frame_equal(a.tables()[table], b.tables()[table])
    assert not np.allclose(a.ohlcv["close"], c.ohlcv["close"])


def test_frames_are_exactly_the_raw_tables_and_valid(three_venues):
    for table, frame in three_venues.tables().items():
        assert list(frame.columns) == table.frame_columns
        check_raw_frame(table, frame)
    assert set(RAW_TABLES) == {t.name for t in three_venues.tables()}


def test_default_is_one_venue_named_synthetic_with_all_four_markets():
    market = generate_market(SyntheticMarketConfig(n_symbols=2, n_bars=48))
    assert set(market.ohlcv["venue"]) == {"synthetic"}
    assert set(market.ohlcv["market"]) == {"perp", "spot", "mark", "index"}
    assert len(market.open_interest) == 2 * 48
    # 5 levels a side, one snapshot an hour.
    assert len(market.order_book_snapshots) == 2 * 48 * 2 * 5
    assert market.data_gaps.empty


def test_venues_share_prices_but_not_basis(three_venues):
    perp = three_venues.ohlcv[three_venues.ohlcv["market"] == "perp"]
    spot = three_venues.ohlcv[three_venues.ohlcv["market"] == "spot"]
    closes = perp.pivot_table(index=["symbol", "ts"], columns="venue", values="close")
    spots = spot.pivot_table(index=["symbol", "ts"], columns="venue", values="close")
    basis = (closes / spots - 1.0) * 1e4
    assert (np.abs(spots["okx"] / spots["binance"] - 1) < 5e-4).all()  # same underlying
    dispersion = basis.std(axis=1)
    assert dispersion.median() > 0.5  # basis points across venues
    assert abs(basis["okx"].median() - basis["binance"].median()) > 0.5


def test_funding_every_eight_hours_and_four_for_xtz(three_venues):
    f = three_venues.funding_rates
    binance = f[f["venue"] == "binance"]
    assert set(binance[binance["symbol"] == "BTC"]["ts"].dt.hour) == {0, 8, 16}
    assert set(binance[binance["symbol"] == "XTZ"]["ts"].dt.hour) == {0, 4, 8, 12, 16, 20}
    assert set(binance[binance["symbol"] == "XTZ"]["interval_hours"]) == {4}
    assert binance["funding_rate"].abs().max() <= 0.0075


def test_flash_crashes_wick_thin_the_books_and_spike_funding():
    config = SyntheticMarketConfig(n_symbols=3, n_bars=24 * 365, crash_rate_hourly=1 / 500)
    market = generate_market(config)
    perp = market.ohlcv[market.ohlcv["market"] == "perp"].copy()
    perp["wick"] = perp["low"] / perp["open"] - 1
    crashes = perp[perp["wick"] < -0.03]
    assert len(crashes) >= 10
    book = market.order_book_snapshots
    depth = book.groupby(["symbol", "ts"])["amount"].sum().rename("depth").reset_index()
    nxt = crashes[["symbol", "ts"]].copy()
    nxt["ts"] += pd.Timedelta(hours=1)  # the book at the open of the bar after the crash
    after = nxt.merge(depth, on=["symbol", "ts"])["depth"]
    typical = depth.groupby("symbol")["depth"].median()
    after_ratio = (after.to_numpy() / typical[nxt["symbol"]].to_numpy()[: len(after)]).mean()
    assert after_ratio < 0.8
    f = market.funding_rates
    assert f["funding_rate"].quantile(0.001) < -0.0005  # crash-driven negative spikes


@pytest.mark.parametrize("timeframe", ["10m", "30m", "1d"])
def test_other_timeframes(timeframe):
    config = SyntheticMarketConfig(n_symbols=2, n_bars=24 * 6, timeframe=timeframe)
    market = generate_market(config)
    assert set(market.ohlcv["timeframe"]) == {timeframe}
    step = market.ohlcv["ts"].drop_duplicates().sort_values().diff().dropna().unique()
    assert len(step) == 1
    hours = market.funding_rates["ts"].dt.hour.unique()
    assert set(hours) <= {0, 8, 16}
    for table, frame in market.tables().items():
        check_raw_frame(table, frame)


def test_chunks_equal_the_whole_market():
    config = SyntheticMarketConfig(symbols=CHUN_LEE_2025[:4], n_bars=100)
    whole = generate_market(config)
    chunks = MarketFrames.concat(list(iter_market(config, symbols_per_chunk=1)))
    key = ["venue", "market", "symbol", "timeframe", "ts"]
    a = whole.ohlcv.sort_values(key, ignore_index=True)
    b = chunks.ohlcv.sort_values(key, ignore_index=True)
    pd.testing.assert_frame_equal(a[key], b[key])
    np.testing.assert_allclose(a["close"], b["close"], rtol=1e-4)


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="no synthetic parameters"):
        SyntheticMarketConfig(symbols=("BTC", "NOPE"))
    with pytest.raises(ValueError, match="unsupported timeframe"):
        SyntheticMarketConfig(timeframe="7m")
