import numpy as np
import pandas as pd
import pytest

from ingestion.frames import MarketFrames
from ingestion.gaps import find_gaps
from ingestion.synthetic import SyntheticMarketConfig, generate_market
from ingestion.warehouse import (
    FUNDING_RATES,
    OHLCV,
    RAW_TABLES,
    DataValidationError,
    row_counts,
    upsert,
    write_batch,
)


@pytest.fixture(scope="module")
def market() -> MarketFrames:
    return generate_market(SyntheticMarketConfig(n_symbols=2, n_bars=48, order_book_levels=2))


def table_rows(con, table):
    return con.execute(f"SELECT * FROM {table.qualified} ORDER BY ALL").fetchall()


def test_rewriting_a_window_changes_nothing_not_even_ingested_at(con, market):
    first = write_batch(con, market.tables())
    assert first["ohlcv"] == len(market.ohlcv) and first["order_book_snapshots"] > 0
    before = {name: table_rows(con, t) for name, t in RAW_TABLES.items()}
    again = write_batch(con, market.tables())
    assert set(again.values()) == {0}
    assert {name: table_rows(con, t) for name, t in RAW_TABLES.items()} == before


def test_a_changed_value_is_updated_in_place(con, market):
    upsert(con, OHLCV, market.ohlcv)
    changed = market.ohlcv.iloc[:1].copy()
    changed["close"] = changed["open"]
    changed["high"] = changed[["open", "high"]].max(axis=1)
    assert upsert(con, OHLCV, changed) == 1
    assert row_counts(con)["ohlcv"] == len(market.ohlcv)


def test_a_bad_frame_rolls_back_every_table_of_the_batch(con, market):
    upsert(con, OHLCV, market.ohlcv.iloc[:10])
    bad_funding = market.funding_rates.copy()
    bad_funding.loc[3, "funding_rate"] = np.nan
    with pytest.raises(DataValidationError, match=r"funding_rate.*symbol="):
        write_batch(con, {OHLCV: market.ohlcv, FUNDING_RATES: bad_funding})
    assert row_counts(con)["ohlcv"] == 10 and row_counts(con)["funding_rates"] == 0


@pytest.mark.parametrize(
    ("column", "value", "match"),
    [
        ("close", np.nan, "missing close"),
        ("low", 0.0, "low must be a finite positive number"),
        ("open", -1.0, "open must be a finite positive number"),
        ("volume", -5.0, "volume must be finite and >= 0"),
        ("high", 1e-12, "inconsistent OHLC"),
    ],
)
def test_bad_prices_name_venue_symbol_time_and_field(con, market, column, value, match):
    frame = market.ohlcv.copy()
    frame.loc[7, column] = value
    row = frame.loc[7]
    with pytest.raises(DataValidationError, match=match) as err:
        upsert(con, OHLCV, frame)
    message = str(err.value)
    assert f"venue={row['venue']}" in message and f"symbol={row['symbol']}" in message
    assert str(row["ts"]) in message
    assert row_counts(con)["ohlcv"] == 0


def test_duplicate_keys_in_a_batch_are_rejected(con, market):
    frame = pd.concat([market.ohlcv, market.ohlcv.iloc[[5]]], ignore_index=True)
    with pytest.raises(DataValidationError, match="duplicate key"):
        upsert(con, OHLCV, frame)


def test_missing_columns_are_named(con, market):
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['close'\]"):
        upsert(con, OHLCV, market.ohlcv.drop(columns="close"))


def test_gaps_are_found_inside_and_at_the_edges_of_the_window(market):
    bars = market.ohlcv[market.ohlcv["market"] == "perp"]
    bars = bars[~bars["ts"].isin(pd.date_range("2024-01-01 05:00", periods=3, freq="h"))]
    bars = bars[bars["ts"] < pd.Timestamp("2024-01-02 22:00")]
    gaps = find_gaps(bars, source="test", end=pd.Timestamp("2024-01-03"))
    btc = gaps[gaps["symbol"] == "BTC"].sort_values("gap_start")
    assert btc["gap_start"].astype(str).tolist() == ["2024-01-01 05:00:00", "2024-01-02 22:00:00"]
    assert btc["missing_bars"].tolist() == [3, 2]
    assert (btc["gap_end"].astype(str) == ["2024-01-01 07:00:00", "2024-01-02 23:00:00"]).all()
