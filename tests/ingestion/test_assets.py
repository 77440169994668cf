"""The Dagster ingestion asset with synthetic, local-ccxt, file and warehouse sources; the
market source chosen by the environment; a killed run re-run."""

import subprocess
import sys
import textwrap
import time

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from ingestion.importers import KLINE_COLUMNS
from ingestion.warehouse import row_counts
from orchestration.assets.ingestion import RAW_DATA_GAPS, RAW_OHLCV, raw_market_data
from orchestration.resources.market_source import (
    FileMarketSource,
    LocalCcxtMarketSource,
    SyntheticMarketSource,
    WarehouseMarketSource,
    market_source_for,
)
from orchestration.resources.warehouse import DuckDBWarehouse
from tests.support.real_data import REAL_SYMBOLS, cut_copy, real_1h_dir


def run(tmp_path, source, partition_key=None):
    warehouse = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"))
    result = dg.materialize(
        [raw_market_data],
        resources={"market_source": source, "warehouse": warehouse},
        partition_key=partition_key,
    )
    assert result.success
    meta = {
        e.asset_key: e.materialization.metadata for e in result.get_asset_materialization_events()
    }
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        counts = row_counts(con)
    return meta, counts


def test_unpartitioned_run_writes_the_whole_window_and_reruns_change_nothing(tmp_path):
    source = SyntheticMarketSource(n_symbols=2, n_bars=72)
    meta, counts = run(tmp_path, source)
    assert counts["ohlcv"] == 2 * 72 * 4 and counts["order_book_snapshots"] == 2 * 72 * 10
    ohlcv = meta[RAW_OHLCV]
    assert ohlcv["rows_written"].value == counts["ohlcv"]
    assert ohlcv["first_ts"].value == "2024-01-01 00:00:00"
    assert ohlcv["last_ts"].value == "2024-01-03 23:00:00"
    assert ohlcv["gaps_found"].value == 0
    meta, again = run(tmp_path, source)
    assert again == counts and meta[RAW_OHLCV]["rows_written"].value == 0


def test_a_daily_partition_writes_exactly_its_day(tmp_path):
    meta, counts = run(tmp_path, SyntheticMarketSource(n_symbols=2, n_bars=72), "2024-01-02")
    assert counts["ohlcv"] == 2 * 24 * 4
    assert meta[RAW_OHLCV]["first_ts"].value == "2024-01-02 00:00:00"
    assert meta[RAW_OHLCV]["last_ts"].value == "2024-01-02 23:00:00"


def test_local_ccxt_source_backfill_then_incremental(tmp_path):
    source = LocalCcxtMarketSource(symbols="BTC,ETH", n_bars=72, order_book_levels=2)
    meta, day = run(tmp_path, source, "2024-01-01")
    assert day["ohlcv"] == 2 * 24 * 4 and meta[RAW_DATA_GAPS]["rows_written"].value == 0
    meta, full = run(tmp_path, source)  # incremental: resumes after the stored day
    assert full["ohlcv"] == 2 * 72 * 4
    assert meta[RAW_OHLCV]["first_ts"].value == "2024-01-02 00:00:00"
    assert meta[RAW_OHLCV]["source"].value == "ccxt (local exchange)"
    assert not any("key" in k.lower() or "secret" in k.lower() for k in meta[RAW_OHLCV])


def test_a_file_source_partition_imports_its_day_only_and_records_the_spot_gap(tmp_path):
    data = cut_copy(tmp_path / "ft", ("BTC", "ETH"), "2021-04-20", "2021-04-30")
    source = FileMarketSource(kind="freqtrade", path=str(data))
    meta, counts = run(tmp_path, source, "2021-04-25")
    # perp and mark: 24 bars; spot: 21 (05:00-07:00 missing); 3 settlements; per symbol
    assert counts["ohlcv"] == 2 * (24 + 24 + 21) and counts["funding_rates"] == 2 * 3
    assert counts["data_gaps"] == 2
    ohlcv = meta[RAW_OHLCV]
    assert ohlcv["venue"].value == "binance" and ohlcv["symbols"].value == "BTC, ETH"
    assert ohlcv["files_read"].value == 8 and ohlcv["gaps_found"].value == 2
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        span = con.execute("SELECT min(ts), max(ts) FROM raw.ohlcv").fetchall()[0]
    assert [str(t) for t in span] == ["2021-04-25 00:00:00", "2021-04-25 23:00:00"]
    meta, again = run(tmp_path, source, "2021-04-25")
    assert again == counts and meta[RAW_OHLCV]["rows_written"].value == 0


def test_a_file_source_run_resumes_at_the_latest_stored_bar(tmp_path):
    cut_copy(tmp_path / "ft", ("BTC",), "2021-05-01", "2021-05-04")
    source = FileMarketSource(kind="freqtrade", path=str(tmp_path / "ft"))
    meta, first = run(tmp_path, source)
    assert meta[RAW_OHLCV]["imported_from"].value == ""
    assert first["ohlcv"] == 3 * 3 * 24
    cut_copy(tmp_path / "ft", ("BTC",), "2021-05-01", "2021-05-05")  # a day more on disk
    meta, second = run(tmp_path, source)
    assert meta[RAW_OHLCV]["imported_from"].value == "2021-05-03 23:00:00"
    assert meta[RAW_OHLCV]["rows_written"].value == 3 * 24
    assert second["ohlcv"] == first["ohlcv"] + 3 * 24


def test_a_directory_without_mark_files_is_flagged_in_the_metadata(tmp_path):
    data = cut_copy(tmp_path / "ft", ("BTC",), "2021-05-01", "2021-05-03", with_mark=False)
    meta, counts = run(tmp_path, FileMarketSource(kind="freqtrade", path=str(data)))
    assert meta[RAW_OHLCV]["mark_from_perp_close"].value == "BTC"
    assert counts["ohlcv"] == 3 * 2 * 24


def _bulk_klines(root, layout: str, pair: str, hours: int) -> None:
    ts = pd.date_range("2024-01-01", periods=hours, freq="h")
    price = 100.0 + np.arange(hours)
    csv = pd.DataFrame({c: 0 for c in KLINE_COLUMNS}, index=range(hours))
    csv["open_time"] = ts.astype("datetime64[ms]").astype("int64")
    csv["open"] = csv["high"] = csv["low"] = csv["close"] = price
    csv["volume"] = 1.0
    folder = root / layout / pair / "1h"
    folder.mkdir(parents=True, exist_ok=True)
    csv.to_csv(folder / f"{pair}-1h-2024-01.csv", index=False, header=False)


def test_a_bulk_data_source_finds_its_symbols_and_imports_a_partition(tmp_path):
    root = tmp_path / "bulk"
    for pair in ("BTCUSDT", "ETHUSDT"):
        _bulk_klines(root, "futures/um/monthly/klines", pair, 72)
        _bulk_klines(root, "spot/monthly/klines", pair, 72)
    source = _source_for(f"binance-bulk:{root}")
    assert source.universe() == ("BTC", "ETH")
    meta, counts = run(tmp_path, source, "2024-01-02")
    assert counts["ohlcv"] == 2 * 3 * 24, "perp, spot and the mark taken from the perp close"
    assert meta[RAW_OHLCV]["mark_from_perp_close"].value == "BTC, ETH"


def _source_for(kind: str):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PERPFOLIO_MARKET_SOURCE", kind)
        mp.delenv("PERPFOLIO_SYMBOLS", raising=False)
        return market_source_for("local")


def test_the_warehouse_source_writes_nothing(tmp_path):
    run(tmp_path, SyntheticMarketSource(n_symbols=2, n_bars=48))
    meta, counts = run(tmp_path, WarehouseMarketSource(symbols="BTC"))
    assert counts["ohlcv"] == 2 * 48 * 4
    assert meta[RAW_OHLCV]["rows_written"].value == 0
    assert meta[RAW_OHLCV]["symbols"].value == "BTC"


def test_the_environment_chooses_the_source_venue_and_symbols(monkeypatch):
    real = real_1h_dir()
    monkeypatch.setenv("PERPFOLIO_MARKET_SOURCE", f"freqtrade:{real}")
    source = market_source_for("local")
    assert isinstance(source, FileMarketSource)
    assert source.venue == "binance" and source.universe() == REAL_SYMBOLS
    monkeypatch.setenv("PERPFOLIO_SYMBOLS", "eth,btc")
    monkeypatch.setenv("PERPFOLIO_VENUES", "binance")
    assert market_source_for("local").universe() == ("ETH", "BTC")
    monkeypatch.setenv("PERPFOLIO_MARKET_SOURCE", "warehouse")
    source = market_source_for("local")
    assert (source.venue, source.universe()) == ("binance", ("ETH", "BTC"))
    monkeypatch.delenv("PERPFOLIO_SYMBOLS")
    with pytest.raises(ValueError, match="warehouse needs PERPFOLIO_SYMBOLS"):
        market_source_for("local")
    monkeypatch.setenv("PERPFOLIO_MARKET_SOURCE", "freqtrade")
    with pytest.raises(ValueError, match="freqtrade:PATH"):
        market_source_for("local")


def test_the_ccxt_resource_builds_its_fetch_plan_from_the_dataclass():
    plan = LocalCcxtMarketSource(symbols="BTC,ETH", order_book_levels=2, funding=False).plan()
    assert plan.symbols == ("BTC", "ETH") and plan.venues == ("binance",)
    assert plan.order_book_levels == 2 and not plan.funding and plan.spot and plan.mark_index


KILLABLE = textwrap.dedent(
    """
    import sys, time
    import duckdb
    from ingestion.synthetic import SyntheticMarketConfig, generate_market
    from ingestion.warehouse import ensure_raw_schema, write_batch
    market = generate_market(SyntheticMarketConfig(n_symbols=3, n_bars=24 * 20))
    con = duckdb.connect(sys.argv[1])
    ensure_raw_schema(con)
    for day in range(20):
        start = market.ohlcv["ts"].min() + day * 86400 * 10**9 * __import__("pandas").Timedelta(1)
        part = market.window(start, start + __import__("pandas").Timedelta(days=1))
        write_batch(con, part.tables())
        print(day, flush=True)
        time.sleep(float(sys.argv[2]))
    """
)


@pytest.mark.slow
def test_killing_a_run_mid_write_then_rerunning_leaves_no_duplicates_or_holes(tmp_path):
    path = str(tmp_path / "killed.duckdb")
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLABLE, path, "0.05"], stdout=subprocess.PIPE, text=True
    )
    seen = 0
    while seen < 3:  # let a few days commit, then kill it in the middle of the run
        if proc.stdout.readline():
            seen += 1
    time.sleep(0.02)
    proc.kill()
    proc.wait()
    with duckdb.connect(path) as con:
        partial = row_counts(con)["ohlcv"]
    assert 0 < partial < 3 * 24 * 20 * 4 and partial % (3 * 24 * 4) == 0  # whole days only
    subprocess.run([sys.executable, "-c", KILLABLE, path, "0"], check=True, capture_output=True)
    clean = str(tmp_path / "clean.duckdb")
    subprocess.run([sys.executable, "-c", KILLABLE, clean, "0"], check=True, capture_output=True)
    with duckdb.connect(path) as a, duckdb.connect(clean) as b:
        assert row_counts(a) == row_counts(b)
        q = "SELECT venue, market, symbol, timeframe, ts, close FROM raw.ohlcv ORDER BY ALL"
        assert a.execute(q).fetchall() == b.execute(q).fetchall()


def test_changed_rows_fail_the_step_unless_the_run_config_replaces_them(tmp_path):
    warehouse = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"))
    run(tmp_path, SyntheticMarketSource(n_symbols=1, n_bars=48, seed=7))

    def close_sum() -> float:
        with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
            return con.execute("SELECT sum(close) FROM raw.ohlcv").fetchall()[0][0]

    before = close_sum()
    other_seed = {"market_source": SyntheticMarketSource(n_symbols=1, n_bars=48, seed=8)}
    refused = dg.materialize(
        [raw_market_data], resources={**other_seed, "warehouse": warehouse}, raise_on_error=False
    )
    assert not refused.success
    failure = refused.get_step_failure_events()[0].step_failure_data.error
    assert "conflict" in str(failure).lower()
    assert close_sum() == before, "a refused batch writes nothing"
    replaced = dg.materialize(
        [raw_market_data],
        resources={**other_seed, "warehouse": warehouse},
        run_config={"ops": {"raw_market_data": {"config": {"replace": True}}}},
    )
    assert replaced.success
    assert close_sum() != pytest.approx(before)
