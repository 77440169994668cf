"""Raw warehouses built from the synthetic market, and dbt run against them for real."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from ingestion.synthetic import SyntheticMarketConfig, generate_market
from ingestion.warehouse import ensure_raw_schema
from orchestration.resources.dbt_cli import DBT_PROJECT_DIR, dbt_executable

MART = "marts.fct_features"
KEY = ["venue", "symbol", "timeframe", "ts"]


def synthetic_raw(n_symbols: int = 2, days: int = 20, venues: tuple[str, ...] = ("a",)) -> dict:
    """Raw frames: synthetic perp/spot/mark bars and funding per venue, plus order books."""
    ohlcv, funding = [], []
    for i, venue in enumerate(venues):
        market = generate_market(
            SyntheticMarketConfig(n_symbols=n_symbols, n_bars=24 * days, seed=7 + i, venue=venue)
        )
        ohlcv.append(market.ohlcv)
        funding.append(market.funding_rates)
    ohlcv = pd.concat(ohlcv, ignore_index=True)
    perp = ohlcv[(ohlcv["market"] == "perp") & (ohlcv["venue"] == venues[0])]
    rng = np.random.default_rng(0)
    book = []
    for _, bar in perp.iloc[::3].iterrows():  # a snapshot in every third bar
        for side, sign in (("bid", -1), ("ask", 1)):
            for level in (1, 2, 3):
                book.append(
                    (bar["venue"], "perp", bar["symbol"], bar["ts"] + pd.Timedelta(minutes=30))
                    + (side, level, bar["close"] * (1 + sign * 1e-4 * level), rng.uniform(1, 5))
                )
    book = pd.DataFrame(
        book, columns=["venue", "market", "symbol", "ts", "side", "level", "price", "amount"]
    )
    return {
        "ohlcv": ohlcv,
        "funding_rates": pd.concat(funding, ignore_index=True),
        "order_book_snapshots": book,
    }


def write_raw(path: Path, frames: dict[str, pd.DataFrame]) -> None:
    """Create the raw schema and insert the frames as they are (no ingestion-side validation)."""
    with duckdb.connect(str(path)) as con:
        ensure_raw_schema(con)
        for table, frame in frames.items():
            con.register("frame", frame)
            con.execute(
                f"INSERT OR REPLACE INTO raw.{table} BY NAME "
                "SELECT *, now()::TIMESTAMP AS ingested_at FROM frame"
            )
            con.unregister("frame")


def run_dbt(path: Path, *args: str) -> subprocess.CompletedProcess:
    """``dbt <args>`` on the warehouse file ``path`` (``<home>/warehouse.duckdb``, as the profile
    reads it); dbt's artifacts and log go to ``<home>/dbt-target``. Raises with dbt's output when
    it fails."""
    if path.name != "warehouse.duckdb":
        raise ValueError(f"dbt builds $PERPFOLIO_HOME/warehouse.duckdb, not {path}")
    target = path.parent / "dbt-target"
    env = {
        **os.environ,
        "PERPFOLIO_HOME": str(path.parent),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
    }
    done = subprocess.run(
        [
            dbt_executable(),
            *args,
            "--profiles-dir",
            DBT_PROJECT_DIR,
            "--project-dir",
            DBT_PROJECT_DIR,
            "--target-path",
            str(target),
            "--log-path",
            str(target),
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=DBT_PROJECT_DIR,
    )
    if done.returncode != 0:
        raise AssertionError(f"dbt {' '.join(args)} failed:\n{done.stdout[-4000:]}")
    return done


def read_mart(path: Path) -> pd.DataFrame:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(f"SELECT * FROM {MART} ORDER BY ALL").df()
