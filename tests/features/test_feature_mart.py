"""The mart built by dbt from a synthetic two-venue market: shape, timeframes, optional data."""

import duckdb
import numpy as np
import pytest

from tests.support.warehouses import read_mart

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mart(built_warehouse):
    return read_mart(built_warehouse)


def test_hourly_and_daily_marts_from_hourly_bars(mart, raw_frames):
    counts = mart.groupby(["venue", "timeframe"]).size().to_dict()
    # 2 symbols x 20 days: 480 hourly bars and 20 complete days each; no 10m/30m from 1h bars.
    assert counts == {("a", "1d"): 40, ("a", "1h"): 960, ("b", "1d"): 40, ("b", "1h"): 960}
    daily = mart[(mart.timeframe == "1d") & (mart.venue == "a") & (mart.symbol == "BTC")]
    hourly = mart[(mart.timeframe == "1h") & (mart.venue == "a") & (mart.symbol == "BTC")]
    day = hourly[hourly.ts.dt.normalize() == daily.ts.iloc[3]]
    row = daily.iloc[3]
    assert row.open == day.open.iloc[0] and row.close == day.close.iloc[-1]
    assert row.high == day.high.max() and row.low == day.low.min()
    assert row.volume == pytest.approx(day.volume.sum())
    # Three 8h settlements are paid inside each day.
    assert row.funding_settlements == 3
    assert row.funding_rate_settled == pytest.approx(day.funding_rate_settled.sum())


def test_contract_columns_keep_their_meaning(mart):
    h = mart[(mart.timeframe == "1h") & (mart.venue == "a") & (mart.symbol == "ETH")]
    h = h.sort_values("ts").reset_index(drop=True)
    assert (h.close_ts - h.ts == np.timedelta64(1, "h")).all()
    np.testing.assert_allclose(h.basis, (h.close - h.spot_close) / h.spot_close)
    np.testing.assert_allclose(h.log_return_1[1:], np.log(h.close / h.close.shift(1))[1:])
    settles = h[h.funding_rate_settled != 0]
    assert (settles.close_ts.dt.hour % 8 == 0).all() and len(settles) == 60
    assert set(h.hours_to_funding) == set(range(1, 9))
    # Rolling windows are NULL until full (24 bars), then defined.
    assert h.basis_zscore[:23].isna().all() and h.basis_zscore[23:].notna().all()


def test_dispersion_needs_two_venues_and_order_books_are_null_where_absent(mart):
    h = mart[mart.timeframe == "1h"]
    assert h.basis_dispersion_std.notna().all() and (h.basis_venues == 2).all()
    a = h[(h.venue == "a")].sort_values(["symbol", "ts"])
    b = h[(h.venue == "b")].sort_values(["symbol", "ts"])
    np.testing.assert_allclose(
        a.basis_dispersion_range.to_numpy(), np.abs(a.basis.to_numpy() - b.basis.to_numpy())
    )
    # Venue a has a snapshot in every third bar, venue b none: NULL, never zero-filled.
    with_book = a.order_book_imbalance.notna()
    assert with_book.sum() == len(a) // 3 and a.order_book_imbalance.abs().max() <= 1
    assert b.order_book_imbalance.isna().all()


def test_regime_labels_follow_basis_and_funding(mart):
    h = mart[mart.timeframe == "1h"]
    contango = (h.basis > 0.0005) & (h.last_funding_rate_8h >= 0.0001)
    backwardation = (h.basis < -0.0005) & (h.last_funding_rate_8h < 0)
    expected = np.select([contango, backwardation], [1, -1], 0)
    assert (h.regime_code.to_numpy() == expected).all()
    assert (h.regime[expected == 0] == "flat").all() and (expected == 0).any()
    assert (h.regime[expected == -1] == "backwardation_negative_funding").all()
    assert (h.regime[expected == 1] == "contango_high_funding").all()


def test_sources_declare_freshness(built_warehouse):
    from tests.support.warehouses import run_dbt

    done = run_dbt(built_warehouse, "source", "freshness", "--select", "source:raw.ohlcv")
    assert "PASS" in done.stdout
    with duckdb.connect(str(built_warehouse), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM raw.open_interest").fetchall()[0][0] == 0
