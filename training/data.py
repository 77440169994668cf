"""Read the feature mart from DuckDB into aligned ``MarketData`` arrays.

The symbols come from the caller (the market source's configuration), never from whatever the
mart holds: a configured symbol without rows is an error naming it. A bar is usable when every
symbol has a row and every feature is defined there. The mart has no row where a series' gap
was too long to carry (``max_filled_hours``), and the rolling features are undefined for a
window after it, so the usable bars can come in several runs: the loader keeps the longest run
of consecutive usable bars and logs what it left out. A bar whose spot, mark or index close was
carried (``filled = 1``) is usable but not tradable: no new orders for that asset on that bar.
"""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from ingestion.universe import timeframe as timeframe_of
from training.market import MarketData

FEATURE_TABLE = "marts.fct_features"

log = logging.getLogger(__name__)


def read_feature_frame(
    warehouse: str | Path,
    venue: str,
    timeframe: str,
    columns: tuple[str, ...],
    symbols: tuple[str, ...],
) -> pd.DataFrame:
    """Rows of the feature mart for ``symbols`` at one venue and timeframe, by time and symbol.

    Raises ``ValueError`` naming each symbol that has no rows.
    """
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
        "filled",
        *columns,
    ]
    select = ", ".join(dict.fromkeys(wanted))
    with duckdb.connect(str(warehouse), read_only=True) as con:
        frame = con.execute(
            f"SELECT {select} FROM {FEATURE_TABLE} WHERE venue = ? AND timeframe = ? "
            "AND list_contains(?, symbol) ORDER BY ts, symbol",
            [venue, timeframe, list(symbols)],
        ).df()
    absent = [s for s in symbols if s not in set(frame["symbol"])]
    if absent:
        raise ValueError(
            f"{FEATURE_TABLE}: no rows for symbol(s) {', '.join(absent)} at venue={venue!r} "
            f"timeframe={timeframe!r} (configured symbols: {', '.join(symbols)})"
        )
    return frame


def _usable_runs(usable: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of consecutive True values."""
    edges = np.diff(np.concatenate([[0], usable.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def market_from_frame(
    frame: pd.DataFrame,
    feature_columns: tuple[str, ...],
    timeframe: str,
    symbols: tuple[str, ...] | None = None,
) -> MarketData:
    """Pivot long feature rows into (T, N) arrays over the longest run of usable bars.

    A bar is usable when each of ``symbols`` (default: every symbol in ``frame``, sorted) has a
    row and all ``feature_columns`` are defined for it. Bars are counted on the timeframe's
    grid, so a bar no symbol has breaks a run too. ``tradable`` is False where ``filled`` is 1.
    """
    symbols = tuple(symbols) if symbols else tuple(sorted(frame["symbol"].unique()))
    bar = timeframe_of(timeframe).delta
    grid = pd.date_range(frame["ts"].min(), frame["ts"].max(), freq=bar)
    wide = frame.pivot(index="ts", columns="symbol").reindex(grid)
    present = wide["close"][list(symbols)].notna().to_numpy()
    features = np.stack([wide[c][list(symbols)].to_numpy(float) for c in feature_columns], -1)
    finite = np.isfinite(features)
    usable = (present & finite.all(axis=2)).all(axis=1)
    runs = _usable_runs(usable)
    if not runs:
        raise ValueError(f"{FEATURE_TABLE}: no bar where all of {feature_columns} are defined")
    first, stop = max(runs, key=lambda run: run[1] - run[0])
    if first > 0 or stop < len(grid):
        only_warm_up = len(runs) == 1 and stop == len(grid)
        log.log(
            logging.INFO if only_warm_up else logging.WARNING,
            "%s: kept the longest run of usable bars, %d from %s to %s; %s",
            FEATURE_TABLE,
            stop - first,
            grid[first],
            grid[stop - 1],
            _left_out(grid, present, finite, symbols, feature_columns, first, stop),
        )

    def col(name: str) -> np.ndarray:
        return wide[name][list(symbols)].to_numpy(float)[first:stop]

    return MarketData(
        timestamps=grid.to_numpy(dtype="datetime64[ns]")[first:stop],
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
        features=features[first:stop].astype(np.float32),
        feature_names=tuple(feature_columns),
        bar_hours=timeframe_of(timeframe).hours,
        tradable=col("filled") == 0,
    ).validate()


def _left_out(
    grid: pd.DatetimeIndex,
    present: np.ndarray,
    finite: np.ndarray,
    symbols: tuple[str, ...],
    feature_columns: tuple[str, ...],
    first: int,
    stop: int,
) -> str:
    """How many bars lie before and after the kept run, and why the nearest of each is unusable."""
    reasons = []
    for i, count, side in ((first - 1, first, "before"), (stop, len(grid) - stop, "after")):
        if count == 0:
            continue
        missing = [s for s, ok in zip(symbols, present[i], strict=True) if not ok]
        if missing:
            why = f"no row for {', '.join(missing)}"
        else:
            j, k = np.argwhere(~finite[i])[0]
            why = f"{feature_columns[k]} undefined for {symbols[j]}"
        reasons.append(f"{count} bars left out {side} it ({grid[i]}: {why})")
    return "; ".join(reasons)


def load_market(
    warehouse: str | Path,
    venue: str,
    timeframe: str,
    feature_columns: tuple[str, ...],
    *,
    symbols: tuple[str, ...],
) -> MarketData:
    """The feature mart of ``symbols`` at one venue and timeframe as ``MarketData``."""
    frame = read_feature_frame(warehouse, venue, timeframe, feature_columns, tuple(symbols))
    return market_from_frame(frame, feature_columns, timeframe, tuple(symbols))
