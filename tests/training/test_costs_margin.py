"""Unit tests of the fee, slippage, funding and margin models (numbers by hand)."""

import numpy as np
import pytest

from training.costs import FeeModel, SlippageModel, funding_cash_flow
from training.margin import MAJOR_TIERS, MarginModel, liquidation_fraction


def test_fee_defaults_are_binance_regular_tier():
    fees = FeeModel()
    assert fees.rate == 0.0005
    assert fees.fee(np.array([10_000.0, -2_000.0])).tolist() == pytest.approx([5.0, 1.0])
    assert FeeModel(maker_fraction=0.5).rate == pytest.approx(0.00035)


def test_slippage_is_half_spread_plus_square_root_impact():
    model = SlippageModel(half_spread=1e-4, impact_coef=0.005)
    # 10k traded against 100M of quote volume: participation 1e-4, sqrt 1e-2.
    assert model.cost(np.array([10_000.0]), np.array([1e8]))[0] == pytest.approx(1.5)
    # 4x the size: impact per unit doubles (square root law).
    assert model.rate(np.array([40_000.0]), np.array([1e8]))[0] == pytest.approx(1e-4 + 1e-4)
    assert model.cost(np.array([0.0]), np.array([0.0]))[0] == 0.0
    capped = SlippageModel(max_impact=0.01).rate(np.array([1e6]), np.array([1.0]))[0]
    assert capped == pytest.approx(1e-4 + 0.01)


def test_funding_longs_pay_positive_rate_shorts_receive():
    qty, mark = np.array([2.0, -2.0, 2.0]), np.full(3, 50.0)
    flows = funding_cash_flow(qty, mark, np.array([1e-4, 1e-4, -1e-4]))
    assert flows.tolist() == pytest.approx([-0.01, 0.01, 0.01])


def test_maintenance_margin_is_continuous_across_tiers():
    table = MarginModel().table(("BTCUSDT", "DOGEUSDT"))
    for j, (floor, _) in enumerate(MAJOR_TIERS[1:], start=1):
        below = table.maintenance(np.array([floor - 1e-6, 1.0]))[0]
        at = table.maintenance(np.array([floor, 1.0]))[0]
        assert at == pytest.approx(below, abs=1e-5), j
    assert table.maintenance(np.array([10_000.0, -10_000.0])).tolist() == pytest.approx(
        [40.0, 10_000 * 0.015 - 5_000 * 0.005]
    )
    assert table.maintenance(np.array([0.0, 0.0])).tolist() == [0.0, 0.0]


def test_maintenance_keeps_the_shape_of_its_input():
    table = MarginModel().table(("BTCUSDT", "DOGEUSDT"))
    first_tier, mixed = np.array([[1.0, -2.0]]), np.array([[1e6, -2.0], [3.0, 1e7]])
    assert table.maintenance(first_tier[0]).shape == (2,)
    assert table.maintenance(first_tier).shape == (1, 2)
    assert table.maintenance(np.repeat(first_tier, 3, axis=0)).shape == (3, 2)
    # 1M BTC: 1% - (50k x 0.1% + 600k x 0.5%); 10M DOGE: 50% - its maintenance amount 1,665,650
    expected = [[1e4 - 3_050.0, 0.02], [0.012, 5e6 - 1_665_650.0]]
    np.testing.assert_allclose(table.maintenance(mixed), expected, rtol=1e-12)


def test_liquidation_fraction_matches_closed_form_liquidation_price():
    cash, qty, entry, mmr = np.array([1_000.0]), np.array([[100.0]]), np.array([[100.0]]), 0.01
    p_liq = (qty * entry - cash) / (qty * (1 - mmr))  # cash + q (p - e) = mmr q p
    p0 = np.array([[100.0]])
    for low, hit in ((p_liq - 0.01, True), (p_liq + 0.01, False)):
        lam = liquidation_fraction(cash, qty, entry, p0, low, np.array([mmr]), np.array([0.0]))
        if hit:
            assert p0 + lam[:, None] * (low - p0) == pytest.approx(p_liq, rel=1e-12)
        else:
            assert np.isinf(lam).all()
