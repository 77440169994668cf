import json
import zipfile

import numpy as np
import pandas as pd
import pytest

from ingestion.importers import (
    KLINE_COLUMNS,
    import_binance_bulk_frames,
    import_directory,
    import_freqtrade_frames,
)
from ingestion.warehouse import DataValidationError, row_counts


def test_freqtrade_sample_imports_everything_once(con, sample_dir):
    report = import_directory(con, "freqtrade", sample_dir)
    counts = row_counts(con)
    # 10 symbols x 1416 perp, spot and mark bars: SOL's mark file is 8h (skipped), so its
    # hourly mark bars are copies of its perp bars, flagged.
    assert counts["ohlcv"] == 10 * 1416 * 3
    assert report.mark_from_perp_close == ["SOL"]
    assert counts["funding_rates"] == 9 * 177 + 354
    assert any("SOL_USDT_USDT-8h-mark" in s for s in report.skipped)
    xtz = con.execute(
        "SELECT DISTINCT interval_hours FROM raw.funding_rates WHERE symbol = 'XTZ'"
    ).fetchall()
    assert xtz == [(4,)]
    jitter = con.execute(
        "SELECT count(*) FROM raw.funding_rates WHERE date_trunc('hour', ts) <> ts"
    ).fetchall()[0][0]
    assert jitter == 0
    again = import_directory(con, "freqtrade", sample_dir)
    assert set(again.rows_written.values()) == {0}
    assert row_counts(con) == counts


def write_freqtrade(path, frame):
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.reset_index(drop=True).to_feather(path)


def sample_frame(n=48, start="2026-01-01"):
    ts = pd.date_range(start, periods=n, freq="h", tz="UTC")
    close = 100 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.01, n)))
    return pd.DataFrame(
        {"date": ts, "open": close, "high": close * 1.01, "low": close * 0.99, "close": close,
         "volume": 10.0}
    )  # fmt: skip


def test_freqtrade_json_gaps_and_duplicate_candles(tmp_path, con):
    frame = sample_frame()
    frame = pd.concat([frame.iloc[:10], frame.iloc[13:], frame.iloc[[20]]])  # gap + duplicate
    rows = [
        [int(d.timestamp() * 1000), o, h, lo, c, v]
        for d, o, h, lo, c, v in frame.itertuples(index=False)
    ]
    (tmp_path / "futures").mkdir()
    (tmp_path / "futures" / "ABC_USDT_USDT-1h-futures.json").write_text(json.dumps(rows))
    import_directory(con, "freqtrade", tmp_path)
    assert row_counts(con)["ohlcv"] == 2 * 45  # perp, and mark copied from it (no mark file)
    gaps = con.execute(
        "SELECT symbol, market, gap_start, missing_bars, source FROM raw.data_gaps ORDER BY ALL"
    ).fetchall()
    gap = (pd.Timestamp("2026-01-01 10:00"), 3, "freqtrade")
    assert gaps == [("ABC", "mark", *gap), ("ABC", "perp", *gap)]


def test_freqtrade_file_with_wrong_columns_names_the_file_and_writes_nothing(tmp_path, con):
    write_freqtrade(tmp_path / "futures" / "AAA_USDT_USDT-1h-futures.feather", sample_frame())
    bad = sample_frame().rename(columns={"close": "last"})
    write_freqtrade(tmp_path / "futures" / "BBB_USDT_USDT-1h-futures.feather", bad)
    with pytest.raises(DataValidationError, match=r"BBB_USDT_USDT-1h-futures.*missing \['close'\]"):
        import_directory(con, "freqtrade", tmp_path)
    assert row_counts(con)["ohlcv"] == 0


def test_freqtrade_non_positive_price_names_file_symbol_and_time(tmp_path, con):
    frame = sample_frame()
    frame.loc[5, "low"] = 0.0
    write_freqtrade(tmp_path / "CCC_USDT-1h.feather", frame)
    with pytest.raises(DataValidationError, match=r"CCC_USDT-1h.*symbol=CCC.*2026-01-01 05:00"):
        import_directory(con, "freqtrade", tmp_path)


def test_conflicting_duplicate_candles_are_refused(tmp_path, con):
    frame = sample_frame()
    clash = frame.iloc[[7]].copy()
    clash["close"] = clash["close"] * 1.001
    write_freqtrade(tmp_path / "DDD_USDT-1h.feather", pd.concat([frame, clash]))
    with pytest.raises(DataValidationError, match="duplicate key.*symbol=DDD"):
        import_directory(con, "freqtrade", tmp_path)


def to_bulk(sample_dir, root):
    """Binance bulk-data files (monthly zips with a header, daily CSVs without) from the sample."""
    real = import_freqtrade_frames(sample_dir)
    layout = {"perp": "futures/um/monthly/klines", "spot": "spot/monthly/klines",
              "mark": "futures/um/monthly/markPriceKlines"}  # fmt: skip
    for (market, symbol), bars in real.ohlcv.groupby(["market", "symbol"]):
        pair = f"{symbol}USDT"
        for month, part in bars.groupby(bars["ts"].dt.strftime("%Y-%m")):
            ms = part["ts"].astype("datetime64[ms]").astype("int64")
            csv = pd.DataFrame({c: 0 for c in KLINE_COLUMNS}, index=part.index)
            csv["open_time"] = ms * (1000 if market == "spot" else 1)  # spot: microseconds
            for c in ("open", "high", "low", "close"):
                csv[c] = part[c]
            csv["volume"] = part["volume"].fillna(0)
            folder = root / layout[market] / pair / "1h"
            folder.mkdir(parents=True, exist_ok=True)
            name = f"{pair}-1h-{month}"
            with zipfile.ZipFile(folder / f"{name}.zip", "w") as zf:
                zf.writestr(f"{name}.csv", csv.to_csv(index=False))
        # One overlapping daily file, headerless, as old bulk files are.
        day = bars[bars["ts"].dt.strftime("%Y-%m-%d") == "2026-02-03"]
        if market == "perp":
            csv = pd.DataFrame({c: 0 for c in KLINE_COLUMNS}, index=day.index)
            csv["open_time"] = day["ts"].astype("datetime64[ms]").astype("int64")
            for c in ("open", "high", "low", "close", "volume"):
                csv[c] = day[c]
            folder = root / "futures/um/daily/klines" / pair / "1h"
            folder.mkdir(parents=True, exist_ok=True)
            csv.to_csv(folder / f"{pair}-1h-2026-02-03.csv", index=False, header=False)
    for symbol, f in real.funding_rates.groupby("symbol"):
        pair = f"{symbol}USDT"
        folder = root / "futures/um/monthly/fundingRate" / pair
        folder.mkdir(parents=True, exist_ok=True)
        for month, part in f.groupby(f["ts"].dt.strftime("%Y-%m")):
            csv = pd.DataFrame(
                {
                    "calc_time": part["ts"].astype("datetime64[ms]").astype("int64") + 3,
                    "funding_interval_hours": part["interval_hours"],
                    "last_funding_rate": part["funding_rate"],
                }
            )
            name = f"{pair}-fundingRate-{month}"
            with zipfile.ZipFile(folder / f"{name}.zip", "w") as zf:
                zf.writestr(f"{name}.csv", csv.to_csv(index=False))
    return real


def test_binance_bulk_files_import_to_the_same_tables(tmp_path, con, sample_dir):
    real = to_bulk(sample_dir, tmp_path / "bulk")
    bulk = import_binance_bulk_frames(tmp_path / "bulk")
    key = ["venue", "market", "symbol", "timeframe", "ts"]
    a = real.ohlcv.sort_values(key, ignore_index=True)
    b = bulk.ohlcv.sort_values(key, ignore_index=True)
    pd.testing.assert_frame_equal(a[key], b[key], check_dtype=False)
    np.testing.assert_allclose(a["close"], b["close"])
    fk = ["symbol", "ts"]
    fa = real.funding_rates.sort_values(fk, ignore_index=True)
    fb = bulk.funding_rates.sort_values(fk, ignore_index=True)
    pd.testing.assert_frame_equal(fa[fk], fb[fk], check_dtype=False)
    np.testing.assert_allclose(fa["funding_rate"], fb["funding_rate"])
    assert (fa["interval_hours"].to_numpy() == fb["interval_hours"].to_numpy()).all()
    import_directory(con, "binance-bulk", tmp_path / "bulk")
    assert row_counts(con)["ohlcv"] == len(real.ohlcv)


def test_binance_bulk_wrong_column_count_names_the_file(tmp_path, con):
    folder = tmp_path / "futures/um/daily/klines/BTCUSDT/1h"
    folder.mkdir(parents=True)
    (folder / "BTCUSDT-1h-2026-01-01.csv").write_text("1767225600000,1,2,0.5,1.5\n")
    with pytest.raises(
        DataValidationError, match=r"BTCUSDT-1h-2026-01-01.csv.*expected 12 columns"
    ):
        import_directory(con, "binance-bulk", tmp_path)


def test_cli_import_command(tmp_path, sample_dir, monkeypatch, capsys):
    from orchestration.cli import main

    monkeypatch.setenv("PERPFOLIO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home" / "dagster"))
    assert main(["import", "freqtrade", str(sample_dir)]) == 0
    out = capsys.readouterr().out
    assert "rows written" in out and "'ohlcv': 42480" in out
    bad = tmp_path / "bad"
    write_freqtrade(bad / "XYZ_USDT-1h.feather", sample_frame().drop(columns="volume"))
    assert main(["import", "freqtrade", str(bad)]) == 1
    assert "XYZ_USDT-1h.feather" in capsys.readouterr().err
