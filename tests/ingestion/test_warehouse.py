import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from ingestion.frames import MarketFrames
from ingestion.gaps import find_gaps
from ingestion.synthetic import SyntheticMarketConfig, generate_market
from ingestion.warehouse import (
    DATA_GAPS,
    FUNDING_RATES,
    OHLCV,
    RAW_TABLES,
    DataConflictError,
    DataValidationError,
    WarehouseLockedError,
    connect_warehouse,
    derived_source,
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


def test_a_changed_row_is_a_conflict_naming_row_field_and_both_values(con, market):
    upsert(con, OHLCV, market.ohlcv)
    before = table_rows(con, OHLCV)
    changed = market.ohlcv.iloc[:3].copy()
    changed[["open", "high", "low", "close"]] *= 10
    changed["source_file"] = "/data/bad.feather"
    with pytest.raises(DataConflictError, match="3 row.*differ from the stored ones") as err:
        write_batch(con, {OHLCV: pd.concat([changed, market.ohlcv.iloc[3:]])}, source="test")
    first = market.ohlcv.iloc[:3].sort_values(list(OHLCV.key)).iloc[0]
    assert err.value.count == 3
    assert f"symbol={first['symbol']}" in str(err.value) and str(first["ts"]) in str(err.value)
    close = float(first["close"])
    assert f"close stored {close!r}, new {close * 10!r}" in str(err.value)
    assert "in /data/bad.feather" in str(err.value)
    assert table_rows(con, OHLCV) == before


def test_replace_overwrites_changed_rows_and_only_those(con, market):
    upsert(con, OHLCV, market.ohlcv)
    changed = market.ohlcv.copy()
    changed.loc[:1, ["open", "high", "low", "close"]] *= 10
    assert upsert(con, OHLCV, changed, replace=True) == 2
    stored = con.execute("SELECT close FROM raw.ohlcv ORDER BY ALL").fetchall()
    assert sorted(c for (c,) in stored) == sorted(changed["close"])
    assert row_counts(con)["ohlcv"] == len(market.ohlcv)


def test_a_conflict_in_one_table_writes_no_table_of_the_batch(con, market):
    upsert(con, FUNDING_RATES, market.funding_rates)
    changed = market.funding_rates.copy()
    changed.loc[0, "funding_rate"] += 0.001
    with pytest.raises(DataConflictError, match="funding_rate stored"):
        write_batch(con, {OHLCV: market.ohlcv, FUNDING_RATES: changed})
    assert row_counts(con)["ohlcv"] == 0


def test_gap_records_are_updated_in_place_not_conflicts(con, market):
    gaps = find_gaps(
        market.ohlcv[market.ohlcv["ts"] >= pd.Timestamp("2024-01-01 03:00")],
        source="test",
        start=pd.Timestamp("2024-01-01"),
    )
    write_batch(con, {DATA_GAPS: gaps})
    longer = gaps.assign(gap_end=gaps["gap_end"] + pd.Timedelta(hours=1), missing_bars=4)
    assert write_batch(con, {DATA_GAPS: longer})["data_gaps"] == len(gaps)


def test_a_derived_mark_gives_way_to_an_observed_one_and_never_the_reverse(con, market):
    mark = market.ohlcv[market.ohlcv["market"] == "mark"]
    derived = mark.assign(source=derived_source("freqtrade"))  # equal values, derived flag
    upsert(con, OHLCV, derived)
    assert upsert(con, OHLCV, mark.assign(source="freqtrade")) == len(mark)
    assert upsert(con, OHLCV, derived) == 0
    other = derived.assign(close=mark["close"] * 1.001, high=mark["high"] * 1.001)
    assert upsert(con, OHLCV, other) == 0  # no conflict, and the observed bars stay
    stored = con.execute(
        "SELECT count(*), count(DISTINCT source) FROM raw.ohlcv WHERE source = 'freqtrade'"
    ).fetchall()
    assert stored == [(len(mark), 1)]


@pytest.mark.parametrize("ts", ["1970-01-21 00:00", "2008-12-31 23:00", "2200-01-01"])
def test_times_outside_2009_to_tomorrow_are_refused(con, market, ts):
    frame = market.ohlcv.copy()
    frame.loc[4, "ts"] = pd.Timestamp(ts)
    with pytest.raises(DataValidationError, match=r"ts .* lies outside \[2009-01-01"):
        upsert(con, OHLCV, frame)
    assert row_counts(con)["ohlcv"] == 0


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


HOLD_LOCK = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def hold_lock(path, seconds):
    """A real second process holding the warehouse open for writing."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(path), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "holding"
    return holder


def test_a_locked_warehouse_names_the_process_holding_it(tmp_path):
    path = tmp_path / "locked.duckdb"
    holder = hold_lock(path, 60)
    try:
        with pytest.raises(WarehouseLockedError, match=rf"{path} is locked by PID {holder.pid}"):
            connect_warehouse(path, wait_seconds=0.3)
        with pytest.raises(WarehouseLockedError) as err:
            connect_warehouse(path, read_only=True, wait_seconds=0)
        assert err.value.pid == holder.pid and err.value.path == str(path)
    finally:
        holder.kill()
        holder.wait()


def test_opening_waits_for_a_lock_that_is_let_go(tmp_path):
    path = tmp_path / "busy.duckdb"
    holder = hold_lock(path, 2)
    try:
        with pytest.raises(WarehouseLockedError):
            connect_warehouse(path, wait_seconds=0)
        con = connect_warehouse(path, wait_seconds=60)
        assert con.execute("SELECT 1").fetchall() == [(1,)]
        con.close()
    finally:
        holder.kill()
        holder.wait()
