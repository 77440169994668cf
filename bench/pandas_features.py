"""The feature mart, straightforwardly in pandas: the reference that bench_features.py times.

Run as a script it is the end-to-end pandas build, the counterpart of one `dbt run`: a process
that reads the raw bars and funding from a warehouse, computes every feature, and writes the
table back (to `bench_pandas.features`). It imports numpy, pandas, duckdb and the project's
timeframe table, and prints the seconds from after its imports (read, compute, write).

    .venv/bin/python bench/pandas_features.py WAREHOUSE BASE_TIMEFRAME
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingestion.universe import MART_TIMEFRAMES, TIMEFRAMES  # noqa: E402

BAR_MINUTES = {name: tf.minutes for name, tf in TIMEFRAMES.items()}
Z_WINDOW, VOL_WINDOW, VOLUME_WINDOW, FUNDING_WINDOW = 24, 24, 24, 21
HORIZONS, VELOCITY_LAGS = (1, 4, 24), (1, 24)


def pandas_features(ohlcv: pd.DataFrame, funding: pd.DataFrame, base: str) -> pd.DataFrame:
    """The mart's features, straightforwardly in pandas (groupby, resample, rolling, merge_asof)."""
    wide = ohlcv.pivot_table(
        index=["venue", "symbol", "ts"],
        columns="market",
        values=["open", "high", "low", "close", "volume"],
    )
    bars = pd.DataFrame(
        {
            "open": wide[("open", "perp")],
            "high": wide[("high", "perp")],
            "low": wide[("low", "perp")],
            "close": wide[("close", "perp")],
            "volume": wide[("volume", "perp")],
            "spot_close": wide[("close", "spot")],
            "mark_close": wide[("close", "mark")],
        }
    ).reset_index()
    funding = funding.sort_values(["venue", "symbol", "ts"]).reset_index(drop=True)
    froll = funding.groupby(["venue", "symbol"]).funding_rate.rolling(FUNDING_WINDOW)
    fmean = froll.mean().reset_index(level=[0, 1], drop=True)
    fstd = froll.std().reset_index(level=[0, 1], drop=True)
    funding["funding_zscore"] = (funding.funding_rate - fmean) / fstd
    marts = []
    for timeframe in MART_TIMEFRAMES:
        minutes = BAR_MINUTES[timeframe]
        if minutes < BAR_MINUTES[base]:
            continue
        if minutes == BAR_MINUTES[base]:
            tf = bars.copy()
        else:
            bucket = bars.ts.dt.floor(f"{minutes}min")
            grouped = bars.assign(bucket=bucket).groupby(["venue", "symbol", "bucket"])
            tf = (
                grouped.agg(
                    open=("open", "first"),
                    high=("high", "max"),
                    low=("low", "min"),
                    close=("close", "last"),
                    volume=("volume", "sum"),
                    spot_close=("spot_close", "last"),
                    mark_close=("mark_close", "last"),
                    n=("close", "count"),
                )
                .reset_index()
                .rename(columns={"bucket": "ts"})
            )
            tf = tf[tf.n == minutes // BAR_MINUTES[base]].drop(columns="n")
        tf["timeframe"] = timeframe
        tf["close_ts"] = tf.ts + pd.Timedelta(minutes=minutes)
        tf = tf.sort_values(["venue", "symbol", "ts"]).reset_index(drop=True)
        g = tf.groupby(["venue", "symbol"])
        tf["basis"] = (tf.close - tf.spot_close) / tf.spot_close
        tf["mark_spread"] = (tf.mark_close - tf.close) / tf.close
        for h in HORIZONS:
            tf[f"log_return_{h}"] = np.log(tf.close / g.close.shift(h))
        for n in VELOCITY_LAGS:
            tf[f"basis_velocity_{n}"] = tf.basis - g.basis.shift(n)
        roll = g.basis.rolling(Z_WINDOW)
        mean = roll.mean().reset_index(level=[0, 1], drop=True)
        std = roll.std().reset_index(level=[0, 1], drop=True)
        tf["basis_zscore"] = (tf.basis - mean) / std
        tf["log_volume"] = np.log(tf.volume)
        vroll = tf.groupby(["venue", "symbol"]).log_volume.rolling(VOLUME_WINDOW)
        vmean = vroll.mean().reset_index(level=[0, 1], drop=True)
        vstd = vroll.std().reset_index(level=[0, 1], drop=True)
        tf["volume_zscore"] = (tf.log_volume - vmean) / vstd
        squared = (tf.log_return_1**2).groupby([tf.venue, tf.symbol]).rolling(VOL_WINDOW).mean()
        tf["realized_vol"] = np.sqrt(squared.reset_index(level=[0, 1], drop=True))
        tf = pd.merge_asof(
            tf.sort_values("close_ts"),
            funding.rename(columns={"ts": "settled_at"}).sort_values("settled_at"),
            left_on="close_ts",
            right_on="settled_at",
            by=["venue", "symbol"],
        )
        settled_bar = funding.assign(
            ts=(funding.ts - pd.Timedelta(microseconds=1)).dt.floor(f"{minutes}min")
        )
        paid = (
            settled_bar.groupby(["venue", "symbol", "ts"])
            .funding_rate.sum()
            .rename("funding_rate_settled")
        )
        tf = tf.merge(paid.reset_index(), on=["venue", "symbol", "ts"], how="left")
        tf["funding_rate_settled"] = tf.funding_rate_settled.fillna(0.0)
        rate_8h = tf.funding_rate * 8 / tf.interval_hours
        tf["funding_carry_annualized"] = tf.funding_rate * 24 * 365 / tf.interval_hours
        close_minute = (tf.close_ts - pd.Timestamp("1970-01-01")) // pd.Timedelta(minutes=1)
        tf["hours_to_funding"] = (
            tf.interval_hours * 60 - close_minute % (tf.interval_hours * 60)
        ) / 60
        tf["regime"] = np.select(
            [(tf.basis > 0.0005) & (rate_8h >= 0.0001), (tf.basis < -0.0005) & (rate_8h < 0)],
            ["contango_high_funding", "backwardation_negative_funding"],
            "flat",
        )
        dispersion = tf.groupby(["symbol", "ts"]).basis.agg(["std", "max", "min", "count"])
        tf = tf.merge(dispersion.reset_index(), on=["symbol", "ts"], how="left")
        marts.append(tf)
    return pd.concat(marts, ignore_index=True)


def pandas_end_to_end(path: Path, base: str) -> None:
    """Read the raw bars and funding from the warehouse, compute the features, write them back."""
    with duckdb.connect(str(path)) as con:
        ohlcv = con.execute(
            "SELECT venue, market, symbol, timeframe, ts, open, high, low, close, volume "
            "FROM raw.ohlcv WHERE market IN ('perp', 'spot', 'mark')"
        ).df()
        funding = con.execute(
            "SELECT venue, symbol, ts, funding_rate, interval_hours FROM raw.funding_rates"
        ).df()
        for frame in (ohlcv, funding):  # as the in-memory frames
            frame["ts"] = frame["ts"].astype("datetime64[ns]")
        features = pandas_features(ohlcv, funding, base)
        con.execute("CREATE SCHEMA IF NOT EXISTS bench_pandas")
        con.register("features", features)
        con.execute("CREATE OR REPLACE TABLE bench_pandas.features AS SELECT * FROM features")


if __name__ == "__main__":
    started = time.perf_counter()
    pandas_end_to_end(Path(sys.argv[1]), sys.argv[2])
    print(time.perf_counter() - started)
