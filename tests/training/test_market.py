"""``MarketData``: close times, the ``tradable`` mask, validation and slicing."""

from dataclasses import replace

import numpy as np
import pytest

from tests.support.markets import make_synthetic_market


def test_close_times_are_open_times_plus_one_bar():
    market = make_synthetic_market(n_bars=5)
    assert market.close_times.dtype == np.dtype("datetime64[ns]")
    assert str(market.close_times[0]) == "2024-01-01T01:00:00.000000000"
    ten_minutes = replace(market, bar_hours=1 / 6)
    assert str(ten_minutes.close_times[-1]) == "2024-01-01T04:10:00.000000000"


def test_tradable_defaults_to_all_true_and_is_sliced():
    market = make_synthetic_market(n_assets=2, n_bars=10)
    assert market.tradable.shape == (10, 2) and market.tradable.all()
    mask = np.ones((10, 2), dtype=bool)
    mask[6, 1] = False
    part = replace(market, tradable=mask).slice(5, 8).validate()
    assert part.tradable.tolist() == [[True, True], [True, False], [True, True]]
    assert part.close_times.tolist() == market.close_times[5:8].tolist()


@pytest.mark.parametrize(
    "mask", [np.ones((10, 3), dtype=bool), np.ones((10, 2)), np.ones((9, 2), dtype=bool)]
)
def test_tradable_of_the_wrong_shape_or_dtype_is_refused(mask):
    market = make_synthetic_market(n_assets=2, n_bars=10)
    with pytest.raises(ValueError, match=r"tradable: .* expected bool \(10, 2\)"):
        replace(market, tradable=mask).validate()
