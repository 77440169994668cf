"""Hand-computed single-asset scenarios through the full environment step.

Flat market at 100 with 1e6 base volume per bar (1e8 quote): a 10,000 notional trade pays
fee 0.0005 x 10,000 = 5 and slippage 10,000 x (1e-4 + 0.005 x sqrt(1e-4)) = 1.5.
"""

import numpy as np
import pytest

from tests.support.markets import make_flat_market, to_market
from training.env import PerpPortfolioEnv
from training.env_config import EnvConfig, RandomizationConfig
from training.margin import MarginModel

T0 = 1  # first decision bar with window=2


def _env(fields, **overrides) -> PerpPortfolioEnv:
    config = EnvConfig(window=2, episode_length=None, random_start=False, **overrides)
    env = PerpPortfolioEnv(to_market(fields), config)
    env.reset(seed=0)
    return env


def _act(weight: float, leverage: float = 3.0) -> np.ndarray:
    return np.array([weight / leverage])  # float64: exact hand arithmetic


def test_round_trip_pays_both_fees_plus_slippage():
    env = _env(make_flat_market())
    *_, opened = env.step(_act(1.0))
    assert opened["fees"] == pytest.approx(5.0, rel=1e-12)
    assert opened["slippage"] == pytest.approx(1.5, rel=1e-12)
    *_, closed = env.step(_act(0.0))
    # selling all 100 units at 100 costs the same again; flat prices, so no PnL
    assert closed["fees"] == pytest.approx(5.0, rel=1e-12)
    assert closed["slippage"] == pytest.approx(1.5, rel=1e-12)
    assert closed["equity"] == pytest.approx(10_000 - 2 * (5.0 + 1.5), rel=1e-12)
    assert closed["weights"].tolist() == [0.0]


def test_fill_is_at_next_open_not_at_decision_close():
    fields = make_flat_market()
    fields["open"][T0 + 1] = fields["high"][T0 + 1] = 110.0
    env = _env(fields)
    *_, info = env.step(_act(1.0))
    qty = 10_000 / 100.0  # sized at the decision bar's close
    assert info["fees"] == pytest.approx(0.0005 * qty * 110.0, rel=1e-12)
    # bought at 110, marked at 100: unrealized loss of 100 x 10
    assert info["unrealized_pnl"][0] == pytest.approx(-1_000.0, rel=1e-12)


@pytest.mark.parametrize(("side", "expected"), [(1.0, -1.0), (-1.0, 1.0)])
def test_funding_settlement_pays_notional_at_mark_times_rate(side, expected):
    fields = make_flat_market()
    fields["funding_rate"][T0 + 2] = 1e-4  # settles at the close of bar T0 + 2
    fields["mark"][T0 + 2] = 100.5
    env = _env(fields, no_trade_band=0.05)  # hold the position through the second bar
    *_, first = env.step(_act(side))
    assert first["funding"] == 0.0
    *_, second = env.step(_act(side))
    assert second["fees"] == 0.0
    qty = side * 100.0
    assert second["funding"] == pytest.approx(-qty * 100.5 * 1e-4, rel=1e-12)
    assert second["funding"] == pytest.approx(expected * 1.005, rel=1e-12)


def _liquidation_setup(side: float, margin_gap: float):
    """20x position, 1% flat maintenance; the adverse extreme sits ``margin_gap`` past p_liq."""
    fields = make_flat_market()
    config = dict(
        max_leverage=20.0,
        gross_leverage_cap=20.0,
        no_trade_band=5.0,
        margin=MarginModel(alt_tiers=((0.0, 0.01),), liquidation_fee_rate=0.005),
    )
    qty = side * 2_000.0  # 20 x 10,000 / 100
    notional = 200_000.0
    cash = 10_000 - 0.0005 * notional - notional * (1e-4 + 0.005 * np.sqrt(notional / 1e8))
    p_liq = (qty * 100.0 - cash) / (qty * (1 - 0.01 * side))
    bar = T0 + 2
    if side > 0:
        fields["low"][bar] = p_liq - margin_gap
    else:
        fields["high"][bar] = p_liq + margin_gap
    env = _env(fields, **config)
    env.step(np.array([side], np.float32))
    return env, qty, p_liq


@pytest.mark.parametrize("side", [1.0, -1.0])
def test_adverse_extreme_through_liquidation_price_liquidates_in_that_bar(side):
    env, qty, p_liq = _liquidation_setup(side, margin_gap=0.01)
    _, reward, terminated, truncated, info = env.step(np.array([side], np.float32))
    assert info["liquidated"] and terminated and not truncated
    assert info["liquidation_fee"] == pytest.approx(0.005 * abs(qty) * p_liq, rel=1e-9)
    # at p_liq equity equals maintenance margin (1%); the 0.5% fee leaves 0.5% of notional
    assert info["equity"] == pytest.approx(0.005 * abs(qty) * p_liq, rel=1e-9)
    assert info["weights"].tolist() == [0.0]
    assert reward < -1.0  # loss of most equity minus beta = 1


@pytest.mark.parametrize("side", [1.0, -1.0])
def test_adverse_extreme_short_of_liquidation_price_does_not_liquidate(side):
    env, _, _ = _liquidation_setup(side, margin_gap=-0.01)
    *_, terminated, _, info = env.step(np.array([side], np.float32))
    assert not info["liquidated"] and not terminated
    assert info["weights"][0] == pytest.approx(side * 20, rel=0.05)


def test_wash_trading_on_flat_prices_loses_exactly_fees_and_slippage():
    fields = make_flat_market(n_assets=2, n_bars=60)
    env = _env(fields)
    start = env.sim.equity[0]
    fees = slip = reward = expected_reward = 0.0
    truncated, step = False, 0
    while not truncated:
        side = 1.0 if step % 2 == 0 else -1.0
        equity_before = env.sim.equity[0]
        _, r, terminated, truncated, info = env.step(np.array([side, -side], np.float32))
        assert not terminated
        assert info["funding"] == 0.0
        fees += info["fees"]
        slip += info["slippage"]
        reward += r
        expected_reward += -(info["fees"] + info["slippage"]) / equity_before
        step += 1
    assert step == 60 - 2
    assert fees > 0 and slip > 0
    assert env.sim.equity[0] == pytest.approx(start - fees - slip, rel=1e-12)
    assert reward == pytest.approx(expected_reward, rel=1e-9)
    assert reward < 0


def test_gross_leverage_cap_scales_targets_down():
    env = _env(make_flat_market(n_assets=2), gross_leverage_cap=2.0)
    *_, info = env.step(np.array([1.0, -1.0], np.float32))  # 3x + 3x requested, 2x gross allowed
    assert info["weights"][0] == pytest.approx(1.0, rel=5e-3)
    assert info["weights"][1] == pytest.approx(-1.0, rel=5e-3)


def test_no_trade_band_keeps_positions_for_small_changes():
    env = _env(make_flat_market(), no_trade_band=0.1)
    env.step(_act(1.0))
    *_, small = env.step(_act(1.05))
    assert small["fees"] == 0.0 and small["turnover"] == 0.0
    *_, large = env.step(_act(1.5))
    assert large["fees"] > 0


def test_fee_and_slippage_multipliers_scale_costs():
    mult = RandomizationConfig(fee_mult_range=(2.0, 2.0), slippage_mult_range=(3.0, 3.0))
    env = _env(make_flat_market(), randomization=mult)
    *_, info = env.step(_act(1.0))
    assert info["fees"] == pytest.approx(10.0, rel=1e-12)
    assert info["slippage"] == pytest.approx(4.5, rel=1e-12)


@pytest.mark.parametrize("tradable", [True, False])
def test_an_untradable_bar_fills_no_order_for_that_asset(tradable):
    fields = make_flat_market(n_assets=2)
    mask = np.ones_like(fields["close"], dtype=bool)
    mask[T0, 0] = tradable  # the first decision's bar, first asset only
    env = _env({**fields, "tradable": mask})
    *_, info = env.step(np.full(2, 1.5 / 3.0))  # 1.5x equity in each asset
    # a 15,000 notional fill pays 0.0005 x 15,000 = 7.5 fee and 15,000 x (1e-4 + 0.005 x
    # sqrt(1.5e-4)) slippage
    fee, slippage = 7.5, 15_000 * (1e-4 + 0.005 * np.sqrt(1.5e-4))
    n_filled = 2 if tradable else 1
    assert info["fees"] == pytest.approx(n_filled * fee, rel=1e-12)
    assert info["slippage"] == pytest.approx(n_filled * slippage, rel=1e-12)
    assert env.sim.qty[0].tolist() == pytest.approx([150.0 if tradable else 0.0, 150.0])


def test_an_untradable_bar_holds_the_position_and_still_settles_and_marks():
    fields = make_flat_market(n_assets=2)
    fields["funding_rate"][T0 + 2] = 1e-4
    fields["mark"][T0 + 2] = 101.0  # carried-forward prices may still mark differently
    mask = np.ones_like(fields["close"], dtype=bool)
    mask[T0 + 1, 0] = False  # the second decision's bar
    env = _env({**fields, "tradable": mask})
    env.step(np.full(2, 1.5 / 3.0))
    held = env.sim.qty[0].copy()
    *_, info = env.step(np.array([0.0, 0.0]))  # close both: only the second asset can
    assert env.sim.qty[0].tolist() == [held[0], 0.0]
    assert info["fees"] == pytest.approx(0.0005 * 150 * 100.0, rel=1e-12)  # the second asset's
    assert info["funding"] == pytest.approx(-held[0] * 101.0 * 1e-4, rel=1e-12)
    assert info["unrealized_pnl"][0] == pytest.approx(held[0] * (101.0 - 100.0), rel=1e-9)
