"""Hostile inputs on cut copies of the real freqtrade directories: each is refused with a clear
message and nothing written, or follows a documented rule (epoch units, mark from perp close)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ingestion.importers import import_directory
from ingestion.warehouse import DataConflictError, DataValidationError, row_counts

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "binance-1h-2020-2023"
START, END = pd.Timestamp("2021-04-24", tz="UTC"), pd.Timestamp("2021-04-28", tz="UTC")
PERP = "futures/{}_USDT_USDT-1h-futures.feather"
MARK = "futures/{}_USDT_USDT-1h-mark.feather"
FUNDING = "futures/{}_USDT_USDT-1h-funding_rate.feather"
SPOT = "spot/{}_USDT-1h.feather"


@pytest.fixture(scope="module")
def real_dir() -> Path:
    if not (REAL / "futures").is_dir():
        pytest.skip(f"real Binance 1h data not found at {REAL} (../shared/data/)")
    return REAL


def cut(real_dir: Path, target: Path, symbols=("BTC", "ETH"), mark=True) -> Path:
    """Four days (2021-04-24..27, with a real spot gap) of the real files of ``symbols``."""
    for symbol in symbols:
        for pattern in (PERP, FUNDING, SPOT, *((MARK,) if mark else ())):
            frame = pd.read_feather(real_dir / pattern.format(symbol))
            kept = frame[(frame["date"] >= START) & (frame["date"] < END)]
            write(target / pattern.format(symbol), kept)
    return target


def write(path: Path, frame: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.reset_index(drop=True).to_feather(path)


def rewrite_dates(path: Path, convert) -> pd.DataFrame:
    frame = pd.read_feather(path)
    original = frame.copy()
    frame["date"] = convert(frame["date"])
    write(path, frame)
    return original


def stored(con, sql: str) -> list:
    return con.execute(sql).fetchall()


def epoch(dates: pd.Series, unit: str) -> pd.Series:
    return dates.dt.tz_convert(None).astype(f"datetime64[{unit}]").astype("int64")


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_epoch_numbers_are_read_in_the_unit_their_magnitude_says(tmp_path, con, real_dir, unit):
    folder = cut(real_dir, tmp_path / "data", symbols=("BTC",))
    perp = rewrite_dates(folder / PERP.format("BTC"), lambda d: epoch(d, unit))
    funding = rewrite_dates(folder / FUNDING.format("BTC"), lambda d: epoch(d, unit))
    import_directory(con, "freqtrade", folder)
    bars = stored(con, "SELECT min(ts), max(ts), count(*) FROM raw.ohlcv WHERE market = 'perp'")
    naive = perp["date"].dt.tz_convert(None)
    assert bars == [(naive.min(), naive.max(), len(perp))]
    settlements = stored(con, "SELECT count(*), min(ts) FROM raw.funding_rates")
    assert settlements == [(len(funding), funding["date"].dt.tz_convert(None).min())]
    assert len(funding) == 12  # 4 days x 3 settlements, none collapsed


def test_times_before_2009_are_refused_naming_file_column_and_row(tmp_path, con, real_dir):
    folder = cut(real_dir, tmp_path / "data")
    # Epoch milliseconds divided by 1000 in one row only: that row reads as January 1970.
    path = folder / PERP.format("ETH")
    ms = epoch(pd.read_feather(path)["date"], "ms")
    rewrite_dates(path, lambda d: ms.where(ms.index != 7, ms // 1000))
    with pytest.raises(DataValidationError) as err:
        import_directory(con, "freqtrade", folder)
    message = str(err.value)
    assert "ETH_USDT_USDT-1h-futures.feather" in message and "date at row 7" in message
    assert "epoch milliseconds" in message and "2009-01-01" in message
    assert row_counts(con)["ohlcv"] == 0


@pytest.mark.parametrize("value", ["13/04/2021 00:00", "01/02/2021 00:00", "yesterday"])
def test_date_strings_other_than_iso_8601_are_refused_naming_the_value(
    tmp_path, con, real_dir, value
):
    folder = cut(real_dir, tmp_path / "data")
    path = folder / SPOT.format("BTC")
    iso = pd.read_feather(path)["date"].dt.strftime("%Y-%m-%d %H:%M:%S")
    rewrite_dates(path, lambda d: iso.where(iso.index != 3, value))
    with pytest.raises(DataValidationError) as err:
        import_directory(con, "freqtrade", folder)
    assert f"BTC_USDT-1h.feather: date at row 3 is {value!r}" in str(err.value)
    assert row_counts(con)["ohlcv"] == 0


def test_a_column_of_dd_mm_yyyy_dates_is_refused_not_guessed(tmp_path, con, real_dir):
    folder = cut(real_dir, tmp_path / "data")
    rewrite_dates(folder / PERP.format("ETH"), lambda d: d.dt.strftime("%d/%m/%Y %H:%M"))
    with pytest.raises(DataValidationError, match=r"date at row 0 is '24/04/2021 00:00'"):
        import_directory(con, "freqtrade", folder)
    assert row_counts(con)["ohlcv"] == 0


def test_iso_8601_strings_are_read_as_utc(tmp_path, con, real_dir):
    folder = cut(real_dir, tmp_path / "data", symbols=("BTC",))
    path = folder / SPOT.format("BTC")
    original = rewrite_dates(path, lambda d: d.dt.strftime("%Y-%m-%dT%H:%M:%S+00:00"))
    import_directory(con, "freqtrade", folder)
    spot = stored(con, "SELECT min(ts), count(*) FROM raw.ohlcv WHERE market = 'spot'")
    assert spot == [(original["date"].dt.tz_convert(None).min(), len(original))]


@pytest.mark.parametrize("pattern", [PERP, SPOT, FUNDING])
def test_a_file_without_rows_is_refused_so_no_symbol_vanishes(tmp_path, con, real_dir, pattern):
    folder = cut(real_dir, tmp_path / "data")
    path = folder / pattern.format("ETH")
    write(path, pd.read_feather(path).iloc[:0])
    with pytest.raises(DataValidationError, match=rf"{path.name}: the file has no rows"):
        import_directory(con, "freqtrade", folder)
    assert sum(row_counts(con).values()) == 0


def test_conflicting_funding_duplicates_are_refused_naming_both_rates(tmp_path, con, real_dir):
    folder = cut(real_dir, tmp_path / "data")
    path = folder / FUNDING.format("BTC")
    funding = pd.read_feather(path)
    clash = funding.iloc[[4]].assign(date=funding["date"].iloc[4] + pd.Timedelta(milliseconds=7))
    clash["open"] = funding["open"].iloc[4] * 2
    write(path, pd.concat([funding, clash]))
    with pytest.raises(DataValidationError) as err:
        import_directory(con, "freqtrade", folder)
    at = funding["date"].iloc[4].tz_convert(None)
    rate = funding["open"].iloc[4]
    assert f"conflicting funding rates for symbol=BTC at ts={at}: [{rate}, {rate * 2}]" in str(
        err.value
    )
    assert sum(row_counts(con).values()) == 0
    # The same settlement twice with the same rate (ms jitter) is one settlement.
    write(path, pd.concat([funding, clash.assign(open=rate)]))
    import_directory(con, "freqtrade", folder)
    assert stored(con, "SELECT count(*) FROM raw.funding_rates WHERE symbol = 'BTC'") == [(12,)]


def test_a_changed_file_over_good_data_is_a_conflict_unless_replaced(tmp_path, con, real_dir):
    folder = cut(real_dir, tmp_path / "data")
    first = import_directory(con, "freqtrade", folder)
    before = stored(con, "SELECT * FROM raw.ohlcv ORDER BY ALL")
    again = import_directory(con, "freqtrade", folder)
    assert sum(first.rows_written.values()) > 0 and set(again.rows_written.values()) == {0}
    path = folder / PERP.format("BTC")
    good = pd.read_feather(path)
    write(path, good.assign(**{c: good[c] * 10 for c in ("open", "high", "low", "close")}))
    with pytest.raises(DataConflictError) as err:
        import_directory(con, "freqtrade", folder)
    message = str(err.value)
    assert f"{len(good)} row(s) differ from the stored ones; nothing written" in message
    first_ts = good["date"].iloc[0].tz_convert(None)
    close = float(good["close"].iloc[0])
    assert f"market=perp, symbol=BTC, timeframe=1h, ts={first_ts} in {path}" in message
    assert f"close stored {close!r}, new {close * 10!r}" in message
    assert stored(con, "SELECT * FROM raw.ohlcv ORDER BY ALL") == before
    # Another symbol's prices under BTC's name are a conflict too.
    write(path, pd.read_feather(folder / PERP.format("ETH")))
    with pytest.raises(DataConflictError, match="symbol=BTC"):
        import_directory(con, "freqtrade", folder)
    assert stored(con, "SELECT * FROM raw.ohlcv ORDER BY ALL") == before
    # Only an explicit replace overwrites, and only the changed rows.
    write(path, good.assign(**{c: good[c] * 10 for c in ("open", "high", "low", "close")}))
    replaced = import_directory(con, "freqtrade", folder, replace=True)
    assert replaced.rows_written["ohlcv"] == len(good)
    closes = stored(con, "SELECT close FROM raw.ohlcv WHERE symbol = 'BTC' AND market = 'perp'")
    np.testing.assert_allclose(sorted(c for (c,) in closes), sorted(good["close"] * 10))


def test_without_mark_files_the_mark_is_the_perp_close_flagged(tmp_path, con, real_dir):
    folder = cut(real_dir, tmp_path / "data", mark=False)
    report = import_directory(con, "freqtrade", folder)
    assert report.mark_from_perp_close == ["BTC", "ETH"]
    rows = stored(
        con,
        "SELECT count(*), count(*) FILTER (m.close = p.close), min(m.source), max(m.source) "
        "FROM raw.ohlcv m JOIN raw.ohlcv p USING (venue, symbol, timeframe, ts) "
        "WHERE m.market = 'mark' AND p.market = 'perp'",
    )
    assert rows == [(2 * 96, 2 * 96, "freqtrade:mark=perp-close", "freqtrade:mark=perp-close")]
    # The real mark files, once downloaded, replace the derived bars without a conflict.
    with_mark = cut(real_dir, tmp_path / "data", mark=True)
    later = import_directory(con, "freqtrade", with_mark)
    assert later.mark_from_perp_close == [] and later.rows_written["ohlcv"] == 2 * 96
    marks = stored(con, "SELECT DISTINCT source FROM raw.ohlcv WHERE market = 'mark'")
    assert marks == [("freqtrade",)]
    # And a later import without them leaves the real mark bars alone.
    for symbol in ("BTC", "ETH"):
        (folder / MARK.format(symbol)).unlink()
    assert import_directory(con, "freqtrade", folder).rows_written["ohlcv"] == 0
    assert stored(con, "SELECT DISTINCT source FROM raw.ohlcv WHERE market = 'mark'") == marks


def test_a_window_and_symbols_keep_only_those_rows(tmp_path, con, real_dir):
    folder = cut(real_dir, tmp_path / "data")
    start, end = pd.Timestamp("2021-04-25"), pd.Timestamp("2021-04-26")
    aware = end.tz_localize("UTC").tz_convert("Europe/Paris")  # the same instant
    report = import_directory(con, "freqtrade", folder, start=start, end=aware, symbols=["eth"])
    bars = stored(con, "SELECT DISTINCT symbol, min(ts), max(ts) FROM raw.ohlcv GROUP BY ALL")
    assert bars == [("ETH", start, end - pd.Timedelta(hours=1))]
    funding = stored(con, "SELECT count(*) FROM raw.funding_rates WHERE symbol = 'ETH'")
    assert funding == [(3,)] and report.files == 4
    with pytest.raises(DataValidationError, match=r"no perpetual bars for symbol\(s\) \['DOGE'\]"):
        import_directory(con, "freqtrade", folder, symbols=["ETH", "DOGE"])


def test_cli_import_refuses_a_conflict_and_replaces_on_request(
    tmp_path, real_dir, monkeypatch, capsys
):
    from orchestration.cli import main

    monkeypatch.setenv("PERPFOLIO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home" / "dagster"))
    folder = cut(real_dir, tmp_path / "data", symbols=("BTC",))
    assert main(["import", "freqtrade", str(folder)]) == 0
    path = folder / SPOT.format("BTC")
    spot = pd.read_feather(path)
    write(path, spot.assign(close=spot["close"] * 1.01, high=spot["high"] * 1.01))
    capsys.readouterr()
    assert main(["import", "freqtrade", str(folder)]) == 1
    err = capsys.readouterr().err
    assert "import failed, nothing written" in err and "differ from the stored ones" in err
    assert main(["import", "freqtrade", str(folder), "--replace"]) == 0
    assert f"'ohlcv': {len(spot)}" in capsys.readouterr().out
