import numpy as np
import pytest

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
