import numpy as np
import pytest

from evaluation.gate import GateConfig, decide_promotion
from evaluation.metrics import compute_metrics


def test_metrics_of_a_hand_computed_curve():
    equity = np.array([100.0, 110.0, 99.0, 108.9])
    m = compute_metrics(equity, bar_hours=24.0, turnover=2.0, fees_paid=1.5)
    returns = np.array([0.10, -0.10, 0.10])
    assert m.total_return == pytest.approx(0.089)
    assert m.max_drawdown == pytest.approx(0.10)
    expected_sharpe = returns.mean() / returns.std(ddof=1) * np.sqrt(365)
    assert m.sharpe == pytest.approx(expected_sharpe)
    assert m.sortino == pytest.approx(returns.mean() / np.sqrt(0.01 / 3) * np.sqrt(365))
    assert m.n_bars == 3
    assert m.turnover == 2.0 and m.fees_paid == 1.5


def test_flat_curve_has_zero_sharpe_and_drawdown():
    m = compute_metrics(np.full(10, 5.0), bar_hours=1.0)
    assert (m.sharpe, m.sortino, m.max_drawdown, m.total_return) == (0.0, 0.0, 0.0, 0.0)


def test_metrics_reject_bad_curves():
    with pytest.raises(ValueError, match="at least 2 points"):
        compute_metrics(np.array([1.0]), bar_hours=1.0)
    with pytest.raises(ValueError, match="finite"):
        compute_metrics(np.array([1.0, np.nan]), bar_hours=1.0)


def _metrics(sharpe_scale: float, liquidated: bool = False):
    rng = np.random.default_rng(0)
    returns = 0.001 * sharpe_scale + 0.01 * rng.standard_normal(500)
    return compute_metrics(100 * np.cumprod(np.r_[1.0, 1 + returns]), 1.0, liquidated=liquidated)


def test_gate_promotes_only_a_candidate_that_beats_baseline_and_champion():
    good, mid, bad = _metrics(3.0), _metrics(1.0), _metrics(-1.0)
    assert decide_promotion(good, mid, bad, GateConfig(max_drawdown=1.0)).promote
    beaten = decide_promotion(bad, mid, None, GateConfig(max_drawdown=1.0))
    assert not beaten.promote
    assert "equal-weight baseline" in beaten.reasons[0]
    vs_champion = decide_promotion(mid, bad, good, GateConfig(max_drawdown=1.0))
    assert not vs_champion.promote and "champion" in vs_champion.summary


def test_gate_rejects_liquidation_and_deep_drawdown_with_reasons():
    liquidated = _metrics(3.0, liquidated=True)
    decision = decide_promotion(liquidated, _metrics(-1.0), None, GateConfig(max_drawdown=0.0))
    assert not decision.promote
    assert any("liquidated" in r for r in decision.reasons)
    assert any("max drawdown" in r for r in decision.reasons)
