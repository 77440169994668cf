"""Fixtures of the training tests."""

import pytest

from tests.support.markets import make_synthetic_market
from training.market import MarketData


@pytest.fixture
def synthetic_market() -> MarketData:
    """Three assets, 600 hourly bars."""
    return make_synthetic_market()
