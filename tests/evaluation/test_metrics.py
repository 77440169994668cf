import json
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from evaluation.ledger import Ledger
from evaluation.metrics import PerformanceMetrics, compute_metrics, daily_returns, ror_table
from evaluation.statistics import sharpe_ratio


def make_ledger(
    equity,
    *,
    start="2024-01-01T00:00",
    bar_hours=1.0,
    symbols=("BTC", "ETH"),
    name="s",
    **columns,
) -> Ledger:
    """A ledger over ``len(equity) - 1`` bars; unspecified per-bar columns are zero."""
    equity = np.asarray(equity, dtype=float)
    t, n = len(equity) - 1, len(symbols)
    start_time = np.datetime64(start, "ns")
    bar = np.timedelta64(int(bar_hours * 60), "m")
    values = {
        "weights": np.zeros((t, n)),
        "fees": np.zeros(t),
        "slippage": np.zeros(t),
        "funding": np.zeros(t),
        "turnover": np.zeros(t),
        "liquidated": np.zeros(t, dtype=bool),
        "asset_pnl": np.zeros((t, n)),
    }
    values.update(columns)
    return Ledger(
        name=name,
        symbols=tuple(symbols),
        bar_hours=bar_hours,
        start_time=start_time,
        close_times=(start_time + bar * np.arange(1, t + 1)).astype("datetime64[ns]"),
        equity=equity,
        **values,
    )


def hand_ledger() -> Ledger:
    """54 hourly bars from 2024-01-01 06:00 to 2024-01-03 12:00 (partial first and last days).

    Bar k closes at 06:00 + (k + 1) h. Equity moves on four bars only: bar 5 (closes Jan 1
    12:00) 100 -> 110, bar 25 (Jan 2 08:00) 110 -> 121, bar 37 (Jan 2 20:00) 121 -> 99, bar 47
    (Jan 3 06:00) 99 -> 108.9. Day closes: 100 (start), 110, 99, 108.9.
    """
    t = 54
    equity = np.full(t + 1, 100.0)
    for bar, value in ((5, 110.0), (25, 121.0), (37, 99.0), (47, 108.9)):
        equity[bar + 1 :] = value
    weights = np.where(np.arange(t)[:, None] < 30, [0.5, -0.25], [1.0, 0.5])
    columns = {name: np.zeros(t) for name in ("fees", "slippage", "funding", "turnover")}
    columns["turnover"][[0, 30]] = [0.5, 1.25]
    columns["fees"][[0, 30]] = [0.05, 0.1]
    columns["slippage"][[0, 30]] = [0.02, 0.03]
    columns["funding"][[7, 15, 23]] = [-0.03, 0.01, -0.06]
    pnl = np.zeros((t, 2))
    pnl[5, 0], pnl[25, 0], pnl[37, 1], pnl[47, 1] = 10.0, 11.0, -22.0, 9.9
    return make_ledger(
        equity, start="2024-01-01T06:00", weights=weights, asset_pnl=pnl, name="hand", **columns
    )


def test_every_metric_of_a_hand_computed_hourly_ledger():
    m = compute_metrics(hand_ledger(), timeframe="1h")
    # Daily returns: 110/100 - 1, 99/110 - 1, 108.9/99 - 1 = 0.1, -0.1, 0.1.
    mean, std = 1 / 30, math.sqrt(((1 / 15) ** 2 * 2 + (2 / 15) ** 2) / 2)  # std = sqrt(1/75)
    annual = 1.089 ** (365 / 2.25) - 1  # 54 h = 2.25 days
    assert m.total_return == pytest.approx(0.089, abs=1e-12)
    assert m.ror == m.total_return
    assert m.annualized_return == pytest.approx(annual, rel=1e-12)
    assert m.annualized_volatility == pytest.approx(math.sqrt(1 / 75) * math.sqrt(365), rel=1e-12)
    assert std == pytest.approx(math.sqrt(1 / 75))
    assert m.sharpe == pytest.approx(mean / std * math.sqrt(365), rel=1e-12)
    assert m.sharpe == pytest.approx(math.sqrt(75) / 30 * math.sqrt(365), rel=1e-12)  # 5.5151
    assert m.sortino == pytest.approx(mean / math.sqrt(0.01 / 3) * math.sqrt(365), rel=1e-12)
    assert m.max_drawdown == pytest.approx(22 / 121, rel=1e-12)  # peak 121, trough 99
    assert m.calmar == pytest.approx(annual / (22 / 121), rel=1e-12)
    # Jan 2 holds two moving bars: +10% then 99/121 - 1 = -2/11.
    assert m.max_daily_volatility == pytest.approx(math.sqrt(0.01 + (2 / 11) ** 2), rel=1e-12)
    assert m.hit_rate == pytest.approx(2 / 3)
    assert m.avg_gross_exposure == pytest.approx((30 * 0.75 + 24 * 1.5) / 54, rel=1e-12)
    assert m.avg_net_exposure == pytest.approx((30 * 0.25 + 24 * 1.5) / 54, rel=1e-12)
    assert m.turnover == pytest.approx(1.75)
    assert m.fees_paid == pytest.approx(0.15)
    assert m.slippage_paid == pytest.approx(0.05)
    assert m.turnover_cost == pytest.approx(0.20 / 100)
    assert m.funding_paid == pytest.approx(0.08)
    assert (m.liquidations, m.liquidated, m.n_bars, m.n_days) == (0, False, 54, 3)
    assert m.ror_by_symbol == pytest.approx({"BTC": 0.21, "ETH": -0.121})


def test_daily_returns_cut_at_utc_midnight_with_partial_first_and_last_days():
    returns = daily_returns(hand_ledger())
    assert list(returns.index) == list(pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"]))
    assert returns.to_numpy() == pytest.approx([0.1, -0.1, 0.1], abs=1e-12)


def test_a_bar_closing_at_midnight_ends_the_day_before():
    # Bars close at 23:00, 00:00 and 01:00: the 00:00 close is Jan 1's last equity.
    ledger = make_ledger([100.0, 101.0, 102.0, 110.0], start="2024-01-01T22:00")
    returns = daily_returns(ledger)
    assert list(returns.index) == list(pd.to_datetime(["2024-01-01", "2024-01-02"]))
    assert returns.to_numpy() == pytest.approx([0.02, 110 / 102 - 1])


def test_a_day_without_bars_returns_zero():
    # Two 1d bars closing Jan 2 and Jan 4 00:00: equity is unchanged over Jan 2.
    ledger = make_ledger([100.0, 110.0, 121.0], bar_hours=24.0)
    ledger = replace(ledger, close_times=ledger.close_times + np.array([0, 1], "timedelta64[D]"))
    returns = daily_returns(ledger)
    assert returns.to_numpy() == pytest.approx([0.1, 0.0, 0.1])


def test_daily_bars_give_their_own_returns_annualized_with_365_days():
    equity = 100 * np.cumprod(np.r_[1.0, 1 + np.array([0.01, -0.005, 0.02, 0.0, -0.01])])
    ledger = make_ledger(equity, bar_hours=24.0)
    returns = daily_returns(ledger)
    assert returns.to_numpy() == pytest.approx(ledger.returns, rel=1e-12)
    assert returns.index[0] == pd.Timestamp("2024-01-01")
    r = np.array([0.01, -0.005, 0.02, 0.0, -0.01])
    m = compute_metrics(ledger, timeframe="1d")
    with_365 = r.mean() / r.std(ddof=1) * math.sqrt(365)
    assert m.sharpe == pytest.approx(with_365, rel=1e-9)
    assert m.sharpe != pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(252), rel=1e-3)
    assert m.annualized_volatility == pytest.approx(r.std(ddof=1) * math.sqrt(365), rel=1e-9)
    assert m.annualized_return == pytest.approx((equity[-1] / 100) ** (365 / 5) - 1, rel=1e-9)


def test_sharpe_comes_from_daily_not_hourly_returns():
    # Four days of hourly bars: each day +-2% swings every hour, ending at the day's target.
    targets = [100.0, 101.0, 100.5, 102.0, 103.5]
    equity = [targets[0]]
    for day in range(4):
        path = np.full(24, targets[day]) * np.where(np.arange(24) % 2, 0.98, 1.02)
        path[-1] = targets[day + 1]
        equity.extend(path)
    m = compute_metrics(make_ledger(equity))
    daily = np.diff(targets) / np.array(targets[:-1])
    assert m.sharpe == pytest.approx(daily.mean() / daily.std(ddof=1) * math.sqrt(365), rel=1e-9)
    hourly = np.diff(equity) / np.array(equity[:-1])
    hourly_sharpe = hourly.mean() / hourly.std(ddof=1) * math.sqrt(24 * 365)
    assert abs(m.sharpe - hourly_sharpe) > 1.0
    assert m.sharpe == sharpe_ratio(daily_returns(make_ledger(equity)))


def test_cash_has_zero_ratios_and_a_constant_gain_has_no_sharpe():
    cash = compute_metrics(make_ledger(np.full(73, 100.0)))
    assert (cash.sharpe, cash.sortino, cash.calmar, cash.max_drawdown) == (0.0, 0.0, 0.0, 0.0)
    assert (cash.hit_rate, cash.annualized_volatility, cash.n_days) == (0.0, 0.0, 3)
    steady = compute_metrics(make_ledger(100 * 1.01 ** np.arange(6), bar_hours=24.0))
    assert math.isnan(steady.sharpe) and math.isnan(steady.sortino) and math.isnan(steady.calmar)
    assert steady.hit_rate == 1.0


def test_fewer_than_two_days_leave_the_ratios_undefined():
    m = compute_metrics(make_ledger([100.0, 101.0, 102.0]))
    assert m.n_days == 1 and m.total_return == pytest.approx(0.02)
    assert all(math.isnan(v) for v in (m.sharpe, m.sortino, m.annualized_volatility))


def test_liquidation_is_counted_and_a_wiped_account_annualizes_to_minus_one():
    liquidated = np.zeros(4, dtype=bool)
    liquidated[1] = True
    m = compute_metrics(
        make_ledger([100.0, 120.0, 30.0, 30.0, 30.0], bar_hours=24.0, liquidated=liquidated)
    )
    assert (m.liquidations, m.liquidated) == (1, True)
    assert m.max_drawdown == pytest.approx(0.75)
    wiped = compute_metrics(make_ledger([100.0, 0.0, 0.0], bar_hours=24.0))
    assert wiped.annualized_return == -1.0 and wiped.total_return == -1.0
    assert daily_returns(make_ledger([100.0, 0.0, 0.0], bar_hours=24.0)).tolist() == [-1.0, 0.0]


def test_as_dict_is_flat_plain_and_round_trips_through_json():
    m = compute_metrics(hand_ledger())
    values = m.as_dict()
    assert values["ror_by_symbol.BTC"] == pytest.approx(0.21)
    assert "ror_by_symbol" not in values
    assert {type(v) for v in values.values()} == {float, int, bool}
    assert type(values["n_bars"]) is int and type(values["liquidated"]) is bool
    back = PerformanceMetrics.from_dict(json.loads(json.dumps(values)))
    assert back == m
    with pytest.raises(ValueError, match="unknown \\['bogus'\\]"):
        PerformanceMetrics.from_dict({**values, "bogus": 1.0})
    with pytest.raises(ValueError, match="missing \\['sharpe'\\]"):
        PerformanceMetrics.from_dict({k: v for k, v in values.items() if k != "sharpe"})


def test_ror_table_per_symbol_and_timeframe():
    pnl = np.array([[5.0, -2.0], [1.0, 0.0]])
    hourly = make_ledger([100.0, 103.0, 104.0], asset_pnl=pnl)
    daily = make_ledger([200.0, 220.0], bar_hours=24.0, symbols=("BTC",), asset_pnl=[[20.0]])
    table = ror_table({"1h": hourly, "1d": daily})
    assert list(table.columns) == ["1h", "1d"] and list(table.index) == ["BTC", "ETH"]
    assert table.loc["BTC"].tolist() == pytest.approx([0.06, 0.10])
    assert table.loc["ETH", "1h"] == pytest.approx(-0.02) and math.isnan(table.loc["ETH", "1d"])


def test_metrics_reject_bad_ledgers():
    with pytest.raises(ValueError, match="no bars"):
        compute_metrics(make_ledger([100.0]))
    with pytest.raises(ValueError, match="finite"):
        compute_metrics(make_ledger([100.0, np.nan]))
    with pytest.raises(ValueError, match="positive start"):
        compute_metrics(make_ledger([0.0, 1.0]))
    with pytest.raises(ValueError, match="not timeframe '1d'"):
        compute_metrics(make_ledger([100.0, 101.0]), timeframe="1d")
    with pytest.raises(ValueError, match="unsupported timeframe"):
        compute_metrics(make_ledger([100.0, 101.0]), timeframe="2h")
