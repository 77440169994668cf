import numpy as np
import pytest

from serving.safety import MAX_ABS_WEIGHT, MAX_GROSS_LEVERAGE, enforce_limits

SYMBOLS = ("BTC", "ETH", "SOL")


def test_weights_within_limits_pass_unchanged():
    safe = enforce_limits(np.array([0.5, -0.5, 1.0]), SYMBOLS)
    np.testing.assert_array_equal(safe.weights, [0.5, -0.5, 1.0])
    assert safe.interventions == ()


def test_per_asset_then_gross_clamp():
    safe = enforce_limits(np.array([5.0, -2.5, 1.0]), SYMBOLS)
    clipped = np.array([MAX_ABS_WEIGHT, -MAX_ABS_WEIGHT, 1.0])
    np.testing.assert_allclose(safe.weights, clipped * MAX_GROSS_LEVERAGE / np.abs(clipped).sum())
    assert np.abs(safe.weights).sum() == pytest.approx(MAX_GROSS_LEVERAGE)
    assert any("BTC" in note for note in safe.interventions)
    assert any("gross leverage" in note for note in safe.interventions)


def test_non_finite_weight_flattens_the_book_and_names_the_symbol():
    safe = enforce_limits(np.array([0.5, np.nan, 0.2]), SYMBOLS)
    np.testing.assert_array_equal(safe.weights, [0.0, 0.0, 0.0])
    assert "ETH" in safe.interventions[0]


def test_wrong_shape_is_an_error():
    with pytest.raises(ValueError, match="expected 3 weights"):
        enforce_limits(np.zeros(2), SYMBOLS)
