"""Importers for market data users already have on disk.

* freqtrade data directories (``freqtrade download-data``): ``.feather`` or ``.json`` files named
  ``SYM_USDT_USDT-1h-futures``, ``-mark``, ``-index``, ``-funding_rate`` and spot ``SYM_USDT-1h``;
* Binance's public bulk data (data.binance.vision): monthly or daily ``klines``,
  ``markPriceKlines``, ``indexPriceKlines`` and ``fundingRate`` CSVs, zipped or not.

Both produce the same raw-table frames as the other sources, with gaps found in the bars. A file
with the wrong columns, unparsable or non-positive values raises ``DataValidationError`` naming
the file (and symbol, timestamp and field where it applies); ``import_directory`` writes
everything in one transaction, so a bad file leaves the warehouse untouched.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from ingestion.frames import MarketFrames, empty_frame
from ingestion.gaps import find_gaps
from ingestion.universe import TIMEFRAMES
from ingestion.warehouse import (
    FUNDING_RATES,
    OHLCV,
    DataValidationError,
    ensure_raw_schema,
    validate_frame,
    write_batch,
)

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
    """What an import read, wrote and skipped."""

    files: int = 0
    rows_written: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    gaps: int = 0


def _ts_from_epoch(values: pd.Series, where: str) -> pd.Series:
    """Epoch milliseconds (or microseconds, Binance spot since 2025) -> naive UTC timestamps."""
    v = pd.to_numeric(values, errors="coerce")
    if v.isna().any():
        raise DataValidationError(f"{where}: unparsable timestamp {values[v.isna()].iloc[0]!r}")
    unit = "us" if v.max() > 1e14 else "ms"
    return pd.to_datetime(v.astype("int64"), unit=unit)


def _naive_utc(values: pd.Series) -> pd.Series:
    ts = pd.to_datetime(values, utc=True)
    return ts.dt.tz_convert(None).astype("datetime64[us]")


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
    """A freqtrade candle file as a frame with ``FREQTRADE_COLUMNS`` (date = naive UTC)."""
    where = str(path)
    try:
        if path.suffix == ".feather":
            frame = pd.read_feather(path)
        else:
            opener = __import__("gzip").open if path.name.endswith(".gz") else open
            with opener(path, "rt") as fh:
                rows = json.load(fh)
            frame = pd.DataFrame(rows)
            if frame.shape[1] == len(FREQTRADE_COLUMNS):
                frame.columns = FREQTRADE_COLUMNS
    except (OSError, ValueError) as exc:
        raise DataValidationError(f"{where}: cannot read freqtrade file: {exc}") from exc
    missing = [c for c in FREQTRADE_COLUMNS if c not in frame.columns]
    if missing:
        raise DataValidationError(
            f"{where}: wrong columns, missing {missing} (found {list(frame.columns)}; "
            f"expected {FREQTRADE_COLUMNS})"
        )
    frame = _numeric(frame[FREQTRADE_COLUMNS].copy(), FREQTRADE_COLUMNS[1:], where)
    if pd.api.types.is_numeric_dtype(frame["date"]):
        frame["date"] = _ts_from_epoch(frame["date"], where)
    else:
        frame["date"] = _naive_utc(frame["date"])
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
    venue: str, symbol: str, ts: pd.Series, rates: pd.Series, intervals=None
) -> pd.DataFrame:
    ts = ts.dt.round("h")
    frame = pd.DataFrame({"venue": venue, "symbol": symbol, "ts": ts, "funding_rate": rates})
    frame = frame.drop_duplicates("ts", keep="last").sort_values("ts", ignore_index=True)
    if intervals is None:
        hours = frame["ts"].diff().dt.total_seconds().div(3600)
        typical = int(hours.mode().iloc[0]) if hours.notna().any() else 8
        hours = hours.fillna(typical).round().astype(int)
        # An interval the grid does not know (a gap in the data) falls back to the typical one.
        intervals = hours.where(hours.isin([1, 2, 4, 8]), typical)
    frame["interval_hours"] = np.asarray(intervals, dtype=np.int32)
    return frame


def import_freqtrade_frames(directory: str | Path, venue: str = "binance") -> MarketFrames:
    """Read every freqtrade file under ``directory`` (recursively) into raw-table frames."""
    frames, report = _freqtrade(Path(directory), venue)
    return frames


def _freqtrade(directory: Path, venue: str) -> tuple[MarketFrames, ImportReport]:
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
        if market != "funding" and tf not in TIMEFRAMES:
            report.skipped.append(
                f"{path}: timeframe {tf} is not stored (use one of {list(TIMEFRAMES)})"
            )
            continue
        data = read_freqtrade_file(path)
        report.files += 1
        if market == "funding":
            funding.append(_funding_from_rates(venue, base, data["date"], data["open"]))
            continue
        volume = data["volume"] if market in ("perp", "spot") else np.nan
        bars.append(
            _checked_bars(
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
                    }
                ),
                str(path),
            )
        )
    return _assemble(bars, funding, "freqtrade", report)


def _checked_bars(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """Sort, drop exact duplicate candles, and reject conflicting duplicates / bad values."""
    frame = frame.sort_values("ts", kind="stable").drop_duplicates(keep="last")
    validate_frame(OHLCV, frame, source=where)
    return frame.reset_index(drop=True)


def _assemble(bars, funding, source: str, report: ImportReport):
    ohlcv = pd.concat(bars, ignore_index=True) if bars else empty_frame(OHLCV)
    fund = pd.concat(funding, ignore_index=True) if funding else empty_frame(FUNDING_RATES)
    gaps = find_gaps(ohlcv, source=source)
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
    frame = pd.read_csv(io.StringIO(text), header=0 if has_header else None)
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


def import_binance_bulk_frames(directory: str | Path, venue: str = "binance") -> MarketFrames:
    """Read Binance bulk-data files under ``directory`` (recursively) into raw-table frames.

    The market comes from the path, as laid out on data.binance.vision: ``.../spot/...`` is
    spot, ``markPriceKlines`` mark, ``indexPriceKlines`` index, other klines perpetual.
    """
    frames, _ = _binance_bulk(Path(directory), venue)
    return frames


def _binance_bulk(directory: Path, venue: str) -> tuple[MarketFrames, ImportReport]:
    if not directory.is_dir():
        raise FileNotFoundError(f"Binance bulk-data directory not found: {directory}")
    report = ImportReport()
    bars, funding = [], []
    for path in sorted(directory.rglob("*")):
        if not path.is_file() or path.suffix not in (".csv", ".zip"):
            continue
        kl, fr = _BULK_KLINES.match(path.name), _BULK_FUNDING.match(path.name)
        if "premiumIndexKlines" in path.parts or not (kl or fr):
            report.skipped.append(f"{path}: not a klines or fundingRate file")
            continue
        if kl and kl["tf"] not in TIMEFRAMES:
            report.skipped.append(f"{path}: timeframe {kl['tf']} is not stored")
            continue
        report.files += 1
        base = _base_of((kl or fr)["pair"], str(path))
        for where, text in _read_csv_members(path):
            if fr:
                raw = _read_bulk_csv(text, FUNDING_COLUMNS, where)
                raw = _numeric(raw.copy(), FUNDING_COLUMNS, where)
                funding.append(
                    _funding_from_rates(
                        venue,
                        base,
                        _ts_from_epoch(raw["calc_time"], where),
                        raw["last_funding_rate"],
                        raw["funding_interval_hours"].round().astype(int),
                    )
                )
                continue
            raw = _read_bulk_csv(text, KLINE_COLUMNS, where)
            raw = _numeric(raw.copy(), ["open", "high", "low", "close", "volume"], where)
            market = _bulk_market(path)
            bars.append(
                _checked_bars(
                    pd.DataFrame(
                        {
                            "venue": venue,
                            "market": market,
                            "symbol": base,
                            "timeframe": kl["tf"],
                            "ts": _ts_from_epoch(raw["open_time"], where),
                            "open": raw["open"],
                            "high": raw["high"],
                            "low": raw["low"],
                            "close": raw["close"],
                            "volume": raw["volume"] if market in ("perp", "spot") else np.nan,
                        }
                    ),
                    where,
                )
            )
    # Daily files can overlap monthly ones: identical candles collapse, conflicting ones raise.
    if bars:
        merged = pd.concat(bars, ignore_index=True).drop_duplicates(keep="last")
        bars = [merged]
    if funding:
        merged = pd.concat(funding, ignore_index=True).drop_duplicates(keep="last")
        funding = [merged]
    return _assemble(bars, funding, "binance-bulk", report)


# ----------------------------------------------------------------------------- writing

IMPORTERS = {"freqtrade": _freqtrade, "binance-bulk": _binance_bulk}


def import_directory(
    con: duckdb.DuckDBPyConnection, kind: str, directory: str | Path, venue: str = "binance"
) -> ImportReport:
    """Import a directory of ``kind`` ('freqtrade' or 'binance-bulk') in one transaction."""
    if kind not in IMPORTERS:
        raise ValueError(f"unknown import kind {kind!r}; one of {sorted(IMPORTERS)}")
    frames, report = IMPORTERS[kind](Path(directory), venue)
    ensure_raw_schema(con)
    report.rows_written = write_batch(con, frames.tables(), source=f"{kind} {directory}")
    return report
