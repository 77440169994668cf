"""Baseline schedules: their stated properties, their rebalance bars, no look-ahead, user tables."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from evaluation.strategies import (
    BASELINES,
    BENCHMARKS,
    buy_and_hold,
    equal_weight,
    funding_carry,
    inverse_volatility,
    rebalance_bars,
    time_series_momentum,
    weights_table,
)
from tests.support.markets import make_synthetic_market
from training.market import MarketData

N_BARS = 24 * 40
NS_PER_HOUR = 3_600 * 10**9


@pytest.fixture(scope="module")
def market() -> MarketData:
    return make_synthetic_market(n_assets=5, n_bars=N_BARS, seed=4)


def close_hours(market: MarketData) -> np.ndarray:
    """Hour of day (UTC) of each bar's close."""
    return market.close_times.astype(np.int64) // NS_PER_HOUR % 24


def set_rows(targets: np.ndarray) -> np.ndarray:
    """Indices of the rows that set targets (not all NaN)."""
    return np.flatnonzero(~np.isnan(targets).all(axis=1))


def test_baselines_are_named_by_their_keys_and_benchmarks_are_baselines(market):
    for name, make in BASELINES.items():
        schedule = make(market)
        assert schedule.name == name
        assert schedule.targets.shape == (N_BARS, market.n_assets)
    assert set(BENCHMARKS) <= set(BASELINES)
    assert BENCHMARKS == ("equal_weight", "risk_parity")


def test_cash_targets_no_position_and_then_holds_it(market):
    targets = BASELINES["cash"](market).targets
    np.testing.assert_array_equal(targets[0], 0.0)
    assert np.isnan(targets[1:]).all()


def test_daily_schedules_set_targets_only_at_midnight_closes(market):
    midnights = np.flatnonzero(close_hours(market) == 0)
    assert len(midnights) == 40
    for name in ("equal_weight", "risk_parity", "funding_carry", "momentum"):
        rows = set_rows(BASELINES[name](market).targets)
        assert set(rows) <= set(midnights), name
        assert len(rows) >= 8, name
    eight_hourly = set_rows(equal_weight(market, rebalance="8h").targets)
    np.testing.assert_array_equal(eight_hourly, np.flatnonzero(close_hours(market) % 8 == 0))
    np.testing.assert_array_equal(rebalance_bars(market, "1h"), True)
    with pytest.raises(ValueError, match="positive"):
        rebalance_bars(market, "0h")


def test_equal_weight_is_one_over_n_long(market):
    targets = equal_weight(market).targets
    rows = set_rows(targets)
    np.testing.assert_array_equal(targets[rows], 1.0 / market.n_assets)


def test_inverse_volatility_weights_are_long_gross_one_and_proportional_to_inverse_vol(market):
    lookback = 48
    targets = inverse_volatility(market, lookback_bars=lookback, rebalance="1h").targets
    assert np.isnan(targets[:lookback]).all() and not np.isnan(targets[lookback:]).any()
    np.testing.assert_allclose(targets[lookback:].sum(axis=1), 1.0, atol=1e-12)
    assert (targets[lookback:] > 0).all()
    t = 500
    log_returns = np.diff(np.log(market.close[t - lookback : t + 1]), axis=0)
    inverse = 1.0 / log_returns.std(axis=0, ddof=1)
    np.testing.assert_allclose(targets[t], inverse / inverse.sum(), rtol=1e-9)


def test_buy_and_hold_buys_once(market):
    schedule = buy_and_hold(market, "ETHUSDT")
    assert schedule.name == "eth_buy_and_hold"
    np.testing.assert_array_equal(schedule.targets[0], [0.0, 1.0, 0.0, 0.0, 0.0])
    assert np.isnan(schedule.targets[1:]).all()
    with pytest.raises(ValueError, match="'DOGEUSDT'"):
        buy_and_hold(market, "DOGEUSDT")


def test_funding_carry_is_neutral_and_shorts_the_highest_average_funding(market):
    lookback = 72
    targets = funding_carry(market, lookback_bars=lookback, rebalance="1h").targets
    rows = set_rows(targets)
    assert rows[0] == 7  # the first settlement: the close of bar 7 (08:00)
    np.testing.assert_allclose(targets[rows].sum(axis=1), 0.0, atol=1e-15)
    np.testing.assert_allclose(np.abs(targets[rows]).sum(axis=1), 1.0, atol=1e-15)
    t = 611
    window = market.funding_rate[t - lookback + 1 : t + 1]
    settled = window != 0
    average = window.sum(axis=0) / settled.sum(axis=0)
    assert settled.sum() == 9 * market.n_assets  # 72 bars of 8-hourly settlements
    order = np.argsort(average)
    np.testing.assert_array_equal(targets[t, order[:2]], 0.25)  # the lowest two: long
    np.testing.assert_array_equal(targets[t, order[-2:]], -0.25)  # the highest two: short
    assert targets[t, order[2]] == 0.0
    with pytest.raises(ValueError, match="at least 2 assets"):
        funding_carry(make_synthetic_market(n_assets=1, n_bars=50))


def test_momentum_follows_the_sign_of_the_trailing_return(market):
    lookback = 24
    targets = time_series_momentum(market, lookback_bars=lookback, rebalance="1h").targets
    assert np.isnan(targets[:lookback]).all()
    trailing = market.close[lookback:] / market.close[:-lookback] - 1.0
    np.testing.assert_array_equal(targets[lookback:], np.sign(trailing) / market.n_assets)
    assert (targets[lookback:] > 0).any() and (targets[lookback:] < 0).any()


def perturbed_after(market: MarketData, t: int, seed: int) -> MarketData:
    """The market with every value of the bars after ``t`` changed (prices scaled per bar)."""
    rng = np.random.default_rng(seed)
    later = np.s_[t + 1 :]
    scale = np.exp(rng.normal(0, 0.05, market.close[later].shape))
    prices = {
        name: np.r_[getattr(market, name)[: t + 1], getattr(market, name)[later] * scale]
        for name in ("open", "high", "low", "close", "mark")
    }
    funding = market.funding_rate.copy()
    funding[later] = np.where(funding[later] != 0, rng.normal(0, 1e-3, scale.shape), 0.0)
    features = market.features.copy()
    features[later] = rng.normal(size=features[later].shape)
    return replace(
        market, **prices, funding_rate=funding, features=features, volume=market.volume * 2
    ).validate()


HOURLY = {
    "risk_parity_1h": lambda m: inverse_volatility(m, lookback_bars=48, rebalance="1h"),
    "funding_carry_1h": lambda m: funding_carry(m, lookback_bars=72, rebalance="1h"),
    "momentum_1h": lambda m: time_series_momentum(m, lookback_bars=24, rebalance="1h"),
}


@pytest.mark.parametrize("t", [200, 767])  # 767: a midnight decision bar after the lookbacks
def test_no_baseline_looks_ahead(market, t):
    changed = perturbed_after(market, t, seed=t)
    for name, make in {**BASELINES, **HOURLY}.items():
        before, after = make(market).targets, make(changed).targets
        np.testing.assert_array_equal(before[: t + 1], after[: t + 1], err_msg=name)
        if name not in ("cash", "btc_buy_and_hold", "equal_weight"):
            later = np.nan_to_num(before[t + 1 :]) != np.nan_to_num(after[t + 1 :])
            assert later.any(), name  # the perturbation reaches the strategy's inputs


def test_weights_table_aligns_rows_and_holds_the_missing_ones(market):
    frame = pd.DataFrame(
        {
            "ts": pd.to_datetime(
                [market.timestamps[3], market.timestamps[3], market.timestamps[9]]
            ),
            "symbol": ["SOLUSDT", "BTCUSDT", "BTCUSDT"],
            "weight": [-0.5, 0.25, 0.75],
        }
    )
    targets = weights_table(frame, market).targets
    assert targets[3, 2] == -0.5 and targets[3, 0] == 0.25 and targets[9, 0] == 0.75
    assert np.count_nonzero(~np.isnan(targets)) == 3
    aware = frame.assign(ts=frame["ts"].dt.tz_localize("UTC"))
    np.testing.assert_array_equal(weights_table(aware, market).targets, targets)


def test_weights_table_errors_name_the_symbol_or_timestamp(market):
    ts = pd.Timestamp(market.timestamps[5])
    with pytest.raises(ValueError, match="'DOGEUSDT'"):
        weights_table(pd.DataFrame({"ts": [ts], "symbol": ["DOGEUSDT"], "weight": [1.0]}), market)
    off = ts + pd.Timedelta(minutes=30)
    with pytest.raises(ValueError, match="2024-01-01 05:30:00"):
        weights_table(pd.DataFrame({"ts": [off], "symbol": ["BTCUSDT"], "weight": [1.0]}), market)
    late = pd.Timestamp("2030-01-01")
    with pytest.raises(ValueError, match="2030-01-01"):
        weights_table(pd.DataFrame({"ts": [late], "symbol": ["BTCUSDT"], "weight": [1.0]}), market)
    twice = pd.DataFrame({"ts": [ts, ts], "symbol": ["ETHUSDT"] * 2, "weight": [1.0, 0.5]})
    with pytest.raises(ValueError, match="duplicate rows for ETHUSDT at 2024-01-01 05:00:00"):
        weights_table(twice, market)
    with pytest.raises(ValueError, match="weight"):
        weights_table(pd.DataFrame({"ts": [ts], "symbol": ["BTCUSDT"]}), market)
