"""Importers for market data users already have on disk.

* freqtrade data directories (``freqtrade download-data``): ``.feather`` or ``.json`` files named
  ``SYM_USDT_USDT-1h-futures``, ``-mark``, ``-index``, ``-funding_rate`` and spot ``SYM_USDT-1h``;
* Binance's public bulk data (data.binance.vision): monthly or daily ``klines``,
  ``markPriceKlines``, ``indexPriceKlines`` and ``fundingRate`` CSVs, zipped or not.

Both produce the same raw-table frames as the other sources, with gaps found in the bars. Bad
input raises ``DataValidationError`` naming the file (and symbol, row, timestamp and field where
it applies): wrong columns, unparsable or non-positive values, a file without rows, timestamps
that are neither epoch numbers nor ISO 8601, times outside [2009-01-01, now + 1 day], conflicting
duplicates. Epoch numbers are read in the unit their magnitude says (s, ms, us or ns).
``import_directory`` writes everything in one transaction, so a bad file leaves the warehouse
untouched, and a stored row the import would change is a conflict unless ``replace=True``.

A symbol with perpetual bars but no mark-price file at that timeframe gets mark bars copied from
its perp bars, stored with ``source = '<kind>:mark=perp-close'``, listed in
``ImportReport.mark_from_perp_close`` and logged as a warning that says what to download.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import re
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import duckdb
import numpy as np
import pandas as pd

from ingestion.frames import MarketFrames, empty_frame
from ingestion.gaps import find_gaps
from ingestion.universe import TIMEFRAMES
from ingestion.warehouse import (
    EARLIEST_TS,
    FUNDING_RATES,
    OHLCV,
    SOURCE_FILE,
    DataValidationError,
    RawTable,
    derived_source,
    ensure_raw_schema,
    latest_plausible_ts,
    write_batch,
)

log = logging.getLogger(__name__)

FREQTRADE_COLUMNS = ["date", "open", "high", "low", "close", "volume"]
_FT_FUTURES = re.compile(
    r"^(?P<base>[A-Z0-9]+)_(?P<quote>[A-Z0-9]+)_(?P<settle>[A-Z0-9]+)-(?P<tf>\w+?)-"
    r"(?P<kind>futures|mark|index|funding_rate)\.(?P<ext>feather|json|json\.gz)$"
)
_FT_SPOT = re.compile(
    r"^(?P<base>[A-Z0-9]+)_(?P<quote>[A-Z0-9]+)-(?P<tf>\w+?)\.(?P<ext>feather|json|json\.gz)$"
)
_FT_MARKET = {"futures": "perp", "mark": "mark", "index": "index"}

KLINE_COLUMNS = [
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "count",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "ignore",
]
FUNDING_COLUMNS = ["calc_time", "funding_interval_hours", "last_funding_rate"]
_BULK_KLINES = re.compile(
    r"^(?P<pair>[A-Z0-9]+)-(?P<tf>\d+[mhdwM])-(?P<date>\d{4}-\d{2}(-\d{2})?)\.(csv|zip)$"
)
_BULK_FUNDING = re.compile(r"^(?P<pair>[A-Z0-9]+)-fundingRate-(?P<date>\d{4}-\d{2})\.(csv|zip)$")
QUOTES = ("USDT", "USDC", "BUSD")


@dataclass
class ImportReport:
    """What an import read, wrote and skipped, and which symbols' mark bars it derived."""

    files: int = 0
    rows_written: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    gaps: int = 0
    mark_from_perp_close: list[str] = field(default_factory=list)


# Epoch units by magnitude: a value below the bound is read in that unit. Seconds of 2009-2100
# are ~1.2e9-4.1e9, milliseconds ~1e12, microseconds ~1e15, nanoseconds ~1e18.
_EPOCH_UNITS = (("s", 1e11), ("ms", 1e14), ("us", 1e17), ("ns", 9.2e18))
_UNIT_NAMES = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}


def _refuse_row(where: str, column: str, values: pd.Series, bad: np.ndarray, why: str) -> NoReturn:
    i = int(np.flatnonzero(bad)[0])
    value = values.iloc[i]
    if isinstance(value, str):
        shown = repr(value)
    elif isinstance(value, (int, float, np.number)):
        shown = str(int(value)) if float(value).is_integer() else str(float(value))
    else:
        shown = str(value)
    raise DataValidationError(f"{where}: {column} at row {i} is {shown}: {why}")


def parse_timestamps(values: pd.Series, where: str, column: str) -> pd.Series:
    """Naive UTC times from epoch numbers, datetimes or ISO 8601 strings, range-checked.

    Epoch numbers are read in the unit their magnitude says (s, ms, us, ns: the largest value
    decides); strings must be ISO 8601 (``2026-01-31 13:00[:00][+00:00]``), so a ``dd/mm/YYYY``
    date is refused rather than guessed. A time before 2009-01-01 or after now + 1 day is
    refused (a unit mix-up), naming ``where``, the column, the row and the value.
    """
    values = values.reset_index(drop=True)
    if values.isna().any():
        _refuse_row(where, column, values, values.isna().to_numpy(), "a missing timestamp")
    numbers = pd.to_numeric(values, errors="coerce") if values.dtype == object else values
    if pd.api.types.is_numeric_dtype(numbers) and not numbers.isna().any():
        return _from_epoch(numbers.astype(float), where, column)
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        ts = values.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(values):
        ts = values.dt.tz_localize("UTC")
    else:
        ts = pd.to_datetime(values.astype(str), utc=True, format="ISO8601", errors="coerce")
        if ts.isna().any():
            _refuse_row(
                where, column, values, ts.isna().to_numpy(),
                "not a timestamp (use epoch numbers or ISO 8601, e.g. 2026-01-31 13:00:00)",
            )  # fmt: skip
    ts = ts.dt.tz_convert(None).astype("datetime64[us]")
    latest = latest_plausible_ts()
    bad = ((ts < EARLIEST_TS) | (ts > latest)).to_numpy()
    if bad.any():
        _refuse_row(where, column, values, bad, f"outside [{EARLIEST_TS.date()}, now + 1 day]")
    return ts


def _from_epoch(numbers: pd.Series, where: str, column: str) -> pd.Series:
    top = float(numbers.abs().max())
    unit = next((u for u, below in _EPOCH_UNITS if top < below), None)
    if unit is None:
        _refuse_row(where, column, numbers, (numbers.abs() >= top).to_numpy(), "too large")
    per_second = {"s": 1, "ms": 1e3, "us": 1e6, "ns": 1e9}[unit]
    lo = (EARLIEST_TS - pd.Timestamp(0)).total_seconds() * per_second
    hi = (latest_plausible_ts() - pd.Timestamp(0)).total_seconds() * per_second
    bad = ((numbers < lo) | (numbers > hi)).to_numpy()
    if bad.any():
        _refuse_row(
            where, column, numbers, bad,
            f"read as epoch {_UNIT_NAMES[unit]} (the unit of the file's largest value) it lies "
            f"outside [{EARLIEST_TS.date()}, now + 1 day]",
        )  # fmt: skip
    return pd.to_datetime(numbers.astype("int64"), unit=unit)


def _numeric(frame: pd.DataFrame, cols: list[str], where: str) -> pd.DataFrame:
    for col in cols:
        parsed = pd.to_numeric(frame[col], errors="coerce")
        bad = parsed.isna() & frame[col].notna()
        if bad.any():
            i = bad.to_numpy().nonzero()[0][0]
            raise DataValidationError(f"{where}: {col} is not a number: {frame[col].iloc[i]!r}")
        frame[col] = parsed.astype(float)
    return frame


# ----------------------------------------------------------------------------- freqtrade


def read_freqtrade_file(path: Path) -> pd.DataFrame:
    """A freqtrade candle file as a frame with ``FREQTRADE_COLUMNS`` (date = naive UTC).

    A file without rows is refused: freqtrade writes none, so it is a broken download.
    """
    where = str(path)
    try:
        if path.suffix == ".feather":
            frame = pd.read_feather(path)
        else:
            opener: Callable = gzip.open if path.name.endswith(".gz") else open
            with opener(path, "rt") as fh:
                rows = json.load(fh)
            frame = pd.DataFrame(rows)
            if frame.shape[1] == len(FREQTRADE_COLUMNS):
                frame.columns = FREQTRADE_COLUMNS
    except (OSError, ValueError) as exc:
        raise DataValidationError(f"{where}: cannot read freqtrade file: {exc}") from exc
    if frame.empty:
        raise DataValidationError(f"{where}: the file has no rows; download it again or delete it")
    missing = [c for c in FREQTRADE_COLUMNS if c not in frame.columns]
    if missing:
        raise DataValidationError(
            f"{where}: wrong columns, missing {missing} (found {list(frame.columns)}; "
            f"expected {FREQTRADE_COLUMNS})"
        )
    frame = _numeric(frame[FREQTRADE_COLUMNS].copy(), FREQTRADE_COLUMNS[1:], where)
    frame["date"] = parse_timestamps(frame["date"], where, "date").to_numpy()
    return frame


def _classify_freqtrade(name: str) -> tuple[str, str, str] | None:
    """(kind, base, timeframe) of a freqtrade file name; kind in perp/mark/index/funding/spot."""
    m = _FT_FUTURES.match(name)
    if m:
        kind = m["kind"]
        return ("funding" if kind == "funding_rate" else _FT_MARKET[kind]), m["base"], m["tf"]
    m = _FT_SPOT.match(name)
    if m:
        return "spot", m["base"], m["tf"]
    return None


def _funding_from_rates(
    venue: str,
    symbol: str,
    ts: pd.Series,
    rates: pd.Series,
    where: str,
    intervals: pd.Series | None = None,
) -> pd.DataFrame:
    """Funding rows (settlement times rounded to the hour); the same settlement twice with the
    same rate collapses, with two different rates it is refused naming both."""
    frame = pd.DataFrame(
        {
            "venue": venue,
            "symbol": symbol,
            "ts": pd.Series(ts).dt.round("h").to_numpy(),
            "funding_rate": np.asarray(rates, dtype=float),
        }
    )
    if intervals is not None:
        frame["interval_hours"] = np.asarray(intervals, dtype=np.int32)
    frame = frame.drop_duplicates().sort_values("ts", ignore_index=True)
    clash = frame.duplicated("ts", keep=False).to_numpy()
    if clash.any():
        at = frame["ts"][clash].iloc[0]
        both = frame.loc[frame["ts"] == at, "funding_rate"].tolist()
        raise DataValidationError(
            f"{where}: conflicting funding rates for symbol={symbol} at ts={at}: {both} "
            "(one settlement, two rates; which one is right cannot be told)"
        )
    if intervals is None:
        hours = frame["ts"].diff().dt.total_seconds().div(3600)
        typical = int(hours.mode().iloc[0]) if hours.notna().any() else 8
        hours = hours.fillna(typical).round().astype(int)
        # An interval the grid does not know (a gap in the data) falls back to the typical one.
        frame["interval_hours"] = hours.where(hours.isin([1, 2, 4, 8]), typical).astype(np.int32)
    frame[SOURCE_FILE] = where
    return frame


def import_freqtrade_frames(
    directory: str | Path, venue: str = "binance", symbols: Iterable[str] | None = None
) -> MarketFrames:
    """Read every freqtrade file under ``directory`` (recursively) into raw-table frames."""
    frames, _ = _freqtrade(Path(directory), venue, _symbol_set(symbols))
    return frames


def _symbol_set(symbols: Iterable[str] | None) -> set[str] | None:
    return None if symbols is None else {s.strip().upper() for s in symbols if s.strip()}


def _freqtrade(
    directory: Path, venue: str, symbols: set[str] | None = None
) -> tuple[MarketFrames, ImportReport]:
    if not directory.is_dir():
        raise FileNotFoundError(f"freqtrade data directory not found: {directory}")
    report = ImportReport()
    bars, funding = [], []
    for path in sorted(directory.rglob("*")):
        if not path.is_file():
            continue
        kind = _classify_freqtrade(path.name)
        if kind is None:
            report.skipped.append(f"{path}: not a freqtrade candle or funding file")
            continue
        market, base, tf = kind
        if symbols is not None and base not in symbols:
            continue
        if market != "funding" and tf not in TIMEFRAMES:
            report.skipped.append(
                f"{path}: timeframe {tf} is not stored (use one of {list(TIMEFRAMES)})"
            )
            continue
        data = read_freqtrade_file(path)
        report.files += 1
        if market == "funding":
            funding.append(_funding_from_rates(venue, base, data["date"], data["open"], str(path)))
            continue
        volume = data["volume"] if market in ("perp", "spot") else np.nan
        bars.append(
            _sorted_bars(
                pd.DataFrame(
                    {
                        "venue": venue,
                        "market": market,
                        "symbol": base,
                        "timeframe": tf,
                        "ts": data["date"],
                        "open": data["open"],
                        "high": data["high"],
                        "low": data["low"],
                        "close": data["close"],
                        "volume": volume,
                        "source": "freqtrade",
                        SOURCE_FILE: str(path),
                    }
                ),
            )
        )
    return _assemble(bars, funding, "freqtrade", report, directory, symbols)


def _sorted_bars(frame: pd.DataFrame) -> pd.DataFrame:
    """Sorted, exact duplicate candles once (conflicting ones are refused when written)."""
    return (
        frame.sort_values("ts", kind="stable").drop_duplicates(keep="last").reset_index(drop=True)
    )


_DOWNLOAD_HINT = {
    "freqtrade": "freqtrade download-data --exchange binance --trading-mode futures "
    "--candle-types mark --timeframes {timeframes} --pairs {pairs}",
    "binance-bulk": "the markPriceKlines files of {symbols} from data.binance.vision",
}


def _mark_from_perp_close(ohlcv: pd.DataFrame, kind: str, report: ImportReport) -> pd.DataFrame:
    """Mark bars copied from the perp bars of series that have no mark bars, flagged."""
    series = ["venue", "symbol", "timeframe"]
    perp = ohlcv[ohlcv["market"] == "perp"]
    with_mark = ohlcv.loc[ohlcv["market"] == "mark", series].drop_duplicates()
    merged = perp.merge(with_mark, on=series, how="left", indicator=True)
    derived = merged[merged["_merge"] == "left_only"].drop(columns="_merge")
    if derived.empty:
        return derived
    derived = derived.assign(market="mark", volume=np.nan, source=derived_source(kind))
    report.mark_from_perp_close = sorted(derived["symbol"].unique())
    timeframes = sorted(derived["timeframe"].unique())
    log.warning(
        "%s import: no mark-price bars for %s (%s); their mark is the perp close, stored with "
        "source %r. To import real mark prices, download %s",
        kind,
        ", ".join(report.mark_from_perp_close),
        ", ".join(timeframes),
        derived_source(kind),
        _DOWNLOAD_HINT[kind].format(
            timeframes=" ".join(timeframes),
            pairs=" ".join(f"{s}/USDT:USDT" for s in report.mark_from_perp_close),
            symbols=", ".join(report.mark_from_perp_close),
        ),
    )
    return derived


def _assemble(
    bars: list[pd.DataFrame],
    funding: list[pd.DataFrame],
    kind: str,
    report: ImportReport,
    directory: Path,
    symbols: set[str] | None,
) -> tuple[MarketFrames, ImportReport]:
    ohlcv = pd.concat(bars, ignore_index=True) if bars else empty_frame(OHLCV)
    if symbols is not None:
        found = set(ohlcv.loc[ohlcv["market"] == "perp", "symbol"])
        if symbols - found:
            raise DataValidationError(
                f"{directory}: no perpetual bars for symbol(s) {sorted(symbols - found)} "
                f"(found {sorted(found) or 'none'})"
            )
    if not ohlcv.empty:
        ohlcv = pd.concat([ohlcv, _mark_from_perp_close(ohlcv, kind, report)], ignore_index=True)
    fund = pd.concat(funding, ignore_index=True) if funding else empty_frame(FUNDING_RATES)
    # A few distinct strings per column: as categories they cost DuckDB little to scan.
    for frame, cols in ((ohlcv, ("source", SOURCE_FILE)), (fund, (SOURCE_FILE,))):
        for col in cols:
            if col in frame.columns:
                frame[col] = frame[col].astype("category")
    gaps = find_gaps(ohlcv, source=kind)
    report.gaps = len(gaps)
    return MarketFrames(ohlcv=ohlcv, funding_rates=fund, data_gaps=gaps), report


# ----------------------------------------------------------------------------- Binance bulk


def _base_of(pair: str, where: str) -> str:
    for quote in QUOTES:
        if pair.endswith(quote) and len(pair) > len(quote):
            return pair[: -len(quote)]
    raise DataValidationError(f"{where}: cannot tell the base asset of {pair!r}")


def _read_csv_members(path: Path) -> list[tuple[str, str]]:
    """(name, text) of the CSV file, or of each CSV inside a zip."""
    if path.suffix == ".zip":
        try:
            with zipfile.ZipFile(path) as zf:
                return [
                    (f"{path}!{n}", zf.read(n).decode())
                    for n in zf.namelist()
                    if n.endswith(".csv")
                ]
        except zipfile.BadZipFile as exc:
            raise DataValidationError(f"{path}: not a valid zip file: {exc}") from exc
    return [(str(path), path.read_text())]


def _read_bulk_csv(text: str, columns: list[str], where: str) -> pd.DataFrame:
    first = text.split("\n", 1)[0]
    has_header = any(c.isalpha() for c in first.replace("e", "").replace("E", ""))
    try:
        frame = pd.read_csv(io.StringIO(text), header=0 if has_header else None)
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame()
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataValidationError(f"{where}: cannot read CSV: {exc}") from exc
    if frame.empty:
        raise DataValidationError(f"{where}: the file has no rows; download it again or delete it")
    if has_header:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise DataValidationError(
                f"{where}: wrong columns, missing {missing} (found {list(frame.columns)})"
            )
        return frame[columns]
    if frame.shape[1] != len(columns):
        raise DataValidationError(
            f"{where}: expected {len(columns)} columns ({columns}), found {frame.shape[1]}"
        )
    frame.columns = columns
    return frame


def _bulk_market(path: Path) -> str:
    parts = set(path.parts)
    if "markPriceKlines" in parts:
        return "mark"
    if "indexPriceKlines" in parts:
        return "index"
    if "spot" in parts:
        return "spot"
    return "perp"


def import_binance_bulk_frames(
    directory: str | Path, venue: str = "binance", symbols: Iterable[str] | None = None
) -> MarketFrames:
    """Read Binance bulk-data files under ``directory`` (recursively) into raw-table frames.

    The market comes from the path, as laid out on data.binance.vision: ``.../spot/...`` is
    spot, ``markPriceKlines`` mark, ``indexPriceKlines`` index, other klines perpetual.
    """
    frames, _ = _binance_bulk(Path(directory), venue, _symbol_set(symbols))
    return frames


def _binance_bulk(
    directory: Path, venue: str, symbols: set[str] | None = None
) -> tuple[MarketFrames, ImportReport]:
    if not directory.is_dir():
        raise FileNotFoundError(f"Binance bulk-data directory not found: {directory}")
    report = ImportReport()
    bars, funding = [], []
    for path in sorted(directory.rglob("*")):
        if not path.is_file() or path.suffix not in (".csv", ".zip"):
            continue
        kl, fr = _BULK_KLINES.match(path.name), _BULK_FUNDING.match(path.name)
        named = kl or fr
        if "premiumIndexKlines" in path.parts or named is None:
            report.skipped.append(f"{path}: not a klines or fundingRate file")
            continue
        timeframe = kl["tf"] if kl else ""
        if kl and timeframe not in TIMEFRAMES:
            report.skipped.append(f"{path}: timeframe {timeframe} is not stored")
            continue
        base = _base_of(named["pair"], str(path))
        if symbols is not None and base not in symbols:
            continue
        report.files += 1
        for where, text in _read_csv_members(path):
            if fr:
                raw = _read_bulk_csv(text, FUNDING_COLUMNS, where)
                raw = _numeric(raw.copy(), FUNDING_COLUMNS, where)
                funding.append(
                    _funding_from_rates(
                        venue,
                        base,
                        parse_timestamps(raw["calc_time"], where, "calc_time"),
                        raw["last_funding_rate"],
                        where,
                        raw["funding_interval_hours"].round().astype(int),
                    )
                )
                continue
            raw = _read_bulk_csv(text, KLINE_COLUMNS, where)
            raw = _numeric(raw.copy(), ["open", "high", "low", "close", "volume"], where)
            market = _bulk_market(path)
            bars.append(
                _sorted_bars(
                    pd.DataFrame(
                        {
                            "venue": venue,
                            "market": market,
                            "symbol": base,
                            "timeframe": timeframe,
                            "ts": parse_timestamps(raw["open_time"], where, "open_time"),
                            "open": raw["open"],
                            "high": raw["high"],
                            "low": raw["low"],
                            "close": raw["close"],
                            "volume": raw["volume"] if market in ("perp", "spot") else np.nan,
                            "source": "binance-bulk",
                            SOURCE_FILE: where,
                        }
                    ),
                )
            )
    # Daily files can overlap monthly ones: identical rows collapse, conflicting ones raise.
    if bars:
        bars = [_collapse_overlaps(OHLCV, bars)]
    if funding:
        funding = [_collapse_overlaps(FUNDING_RATES, funding)]
    return _assemble(bars, funding, "binance-bulk", report, directory, symbols)


def _collapse_overlaps(table: RawTable, frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Rows of several files as one frame, identical rows once (conflicting ones are refused
    when written, naming both files)."""
    merged = pd.concat(frames, ignore_index=True)
    return merged.drop_duplicates(subset=table.written_columns).reset_index(drop=True)


# ----------------------------------------------------------------------------- writing


def _naive_utc(when: pd.Timestamp | str | None) -> pd.Timestamp | None:
    """A window bound as the warehouse's naive UTC time (an aware one is converted)."""
    if when is None:
        return None
    ts = pd.Timestamp(when)
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts


IMPORTERS = {"freqtrade": _freqtrade, "binance-bulk": _binance_bulk}


def import_directory(
    con: duckdb.DuckDBPyConnection,
    kind: str,
    directory: str | Path,
    venue: str = "binance",
    *,
    start: pd.Timestamp | str | None = None,
    end: pd.Timestamp | str | None = None,
    symbols: Iterable[str] | None = None,
    replace: bool = False,
) -> ImportReport:
    """Import a directory of ``kind`` ('freqtrade' or 'binance-bulk') in one transaction.

    ``start``/``end`` keep rows whose time (bar open, settlement) lies in [start, end); gap
    records are found over the whole files and kept when they start in the window.
    ``symbols`` keeps those base assets only (each must have perpetual bars). A stored row the
    import would change raises ``DataConflictError`` and writes nothing, unless ``replace``.
    """
    if kind not in IMPORTERS:
        raise ValueError(f"unknown import kind {kind!r}; one of {sorted(IMPORTERS)}")
    frames, report = IMPORTERS[kind](Path(directory), venue, _symbol_set(symbols))
    if start is not None or end is not None:
        frames = frames.window(_naive_utc(start), _naive_utc(end))
        report.gaps = len(frames.data_gaps)
    ensure_raw_schema(con)
    report.rows_written = write_batch(
        con, frames.tables(), source=f"{kind} {directory}", replace=replace
    )
    return report


def perpetual_symbols(kind: str, directory: str | Path, timeframe: str) -> tuple[str, ...]:
    """Base assets with perpetual bars of ``timeframe`` under ``directory``, sorted; from the file
    names alone (nothing is read)."""
    if kind not in IMPORTERS:
        raise ValueError(f"unknown import kind {kind!r}; one of {sorted(IMPORTERS)}")
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{kind} data directory not found: {directory}")
    found = set()
    for path in directory.rglob("*"):
        if kind == "freqtrade":
            named = _classify_freqtrade(path.name)
            if named is not None and named[0] == "perp" and named[2] == timeframe:
                found.add(named[1])
            continue
        kl = _BULK_KLINES.match(path.name)
        if kl is None or kl["tf"] != timeframe or _bulk_market(path) != "perp":
            continue
        if "premiumIndexKlines" not in path.parts:
            found.add(_base_of(kl["pair"], str(path)))
    return tuple(sorted(found))
