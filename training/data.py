"""Read the feature mart from DuckDB into aligned ``MarketData`` arrays."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from ingestion.universe import timeframe as timeframe_of
from training.market import MarketData

FEATURE_TABLE = "marts.fct_features"


def read_feature_frame(
    warehouse: str | Path, venue: str, timeframe: str, columns: tuple[str, ...]
) -> pd.DataFrame:
    """Rows of the feature mart for one venue and timeframe, ordered by time and symbol."""
    wanted = [
        "symbol",
        "ts",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "mark_close",
        "basis",
        "funding_rate_settled",
        "hours_to_funding",
        *columns,
    ]
    select = ", ".join(dict.fromkeys(wanted))
    with duckdb.connect(str(warehouse), read_only=True) as con:
        frame = con.execute(
            f"SELECT {select} FROM {FEATURE_TABLE} WHERE venue = ? AND timeframe = ? "
            "ORDER BY ts, symbol",
            [venue, timeframe],
        ).df()
    if frame.empty:
        raise ValueError(f"{FEATURE_TABLE}: no rows for venue={venue!r} timeframe={timeframe!r}")
    return frame


def market_from_frame(
    frame: pd.DataFrame, feature_columns: tuple[str, ...], timeframe: str
) -> MarketData:
    """Pivot long feature rows into (T, N) arrays.

    Leading bars where any feature is still undefined (warm-up of rolling windows, no funding
    settled yet) are dropped; a missing (symbol, bar) row or a NaN after that is an error naming
    the symbol and timestamp.
    """
    symbols = tuple(sorted(frame["symbol"].unique()))
    wide = frame.pivot(index="ts", columns="symbol")
    missing = wide["close"].isna()
    if missing.to_numpy().any():
        ts, symbol = missing.stack()[lambda s: s].index[0]
        raise ValueError(f"{FEATURE_TABLE}: no row for {symbol} at {ts}")
    features = np.stack([wide[c][list(symbols)].to_numpy(float) for c in feature_columns], -1)
    complete = np.isfinite(features).all(axis=(1, 2))
    if not complete.any():
        raise ValueError(f"{FEATURE_TABLE}: no bar where all of {feature_columns} are defined")
    first = int(np.argmax(complete))
    if not complete[first:].all():
        bad = first + int(np.argmin(complete[first:]))
        j, k = np.argwhere(~np.isfinite(features[bad]))[0]
        raise ValueError(
            f"{FEATURE_TABLE}: {feature_columns[k]} is NaN for {symbols[j]} at {wide.index[bad]}"
        )

    def col(name: str) -> np.ndarray:
        return wide[name][list(symbols)].to_numpy(float)[first:]

    return MarketData(
        timestamps=wide.index.to_numpy(dtype="datetime64[ns]")[first:],
        symbols=symbols,
        open=col("open"),
        high=col("high"),
        low=col("low"),
        close=col("close"),
        mark=col("mark_close"),
        volume=col("volume"),
        funding_rate=col("funding_rate_settled"),
        hours_to_funding=col("hours_to_funding"),
        basis=col("basis"),
        features=features[first:].astype(np.float32),
        feature_names=tuple(feature_columns),
        bar_hours=timeframe_of(timeframe).hours,
    ).validate()


def load_market(
    warehouse: str | Path, venue: str, timeframe: str, feature_columns: tuple[str, ...]
) -> MarketData:
    """The feature mart of one venue and timeframe as ``MarketData``."""
    frame = read_feature_frame(warehouse, venue, timeframe, feature_columns)
    return market_from_frame(frame, feature_columns, timeframe)


def split_index(market: MarketData, test_fraction: float, window: int) -> int:
    """First out-of-sample bar: training uses bars before it, evaluation the bars from it on.

    The first out-of-sample decision is taken at the close of the bar before it (with in-sample
    features, as live trading would) and fills at its open, so no bar's return is in both parts.
    """
    cut = int(round(market.n_bars * (1.0 - test_fraction)))
    if cut <= 2 * window or market.n_bars - cut < 2:
        raise ValueError(
            f"{market.n_bars} bars are too few to split at test_fraction={test_fraction} "
            f"with window={window}"
        )
    return cut
