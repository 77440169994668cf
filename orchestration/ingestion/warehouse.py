"""The raw DuckDB schema and atomic, idempotent upserts into it.

Every source (synthetic, ccxt, file importers) writes the same tables, so nothing downstream can
tell the sources apart. Timestamps are naive UTC ``TIMESTAMP`` values (bar open time).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pandas as pd

RAW_SCHEMA = "raw"


@dataclass(frozen=True)
class RawTable:
    """A raw table: its columns (name -> DuckDB type) and primary key."""

    name: str
    columns: dict[str, str]
    key: tuple[str, ...]

    @property
    def qualified(self) -> str:
        return f"{RAW_SCHEMA}.{self.name}"

    @property
    def value_columns(self) -> list[str]:
        return [c for c in self.columns if c not in self.key and c != "ingested_at"]

    def ddl(self) -> str:
        cols = ",\n  ".join(f"{name} {dtype}" for name, dtype in self.columns.items())
        return (
            f"CREATE TABLE IF NOT EXISTS {self.qualified} (\n  {cols},\n"
            f"  PRIMARY KEY ({', '.join(self.key)})\n)"
        )


OHLCV = RawTable(
    name="ohlcv",
    columns={
        "venue": "VARCHAR NOT NULL",
        "market": "VARCHAR NOT NULL",  # perp | spot | mark | index
        "symbol": "VARCHAR NOT NULL",  # base asset, e.g. BTC (quote USDT)
        "timeframe": "VARCHAR NOT NULL",
        "ts": "TIMESTAMP NOT NULL",
        "open": "DOUBLE NOT NULL",
        "high": "DOUBLE NOT NULL",
        "low": "DOUBLE NOT NULL",
        "close": "DOUBLE NOT NULL",
        "volume": "DOUBLE",
        "ingested_at": "TIMESTAMP NOT NULL",
    },
    key=("venue", "market", "symbol", "timeframe", "ts"),
)

FUNDING_RATES = RawTable(
    name="funding_rates",
    columns={
        "venue": "VARCHAR NOT NULL",
        "symbol": "VARCHAR NOT NULL",
        "ts": "TIMESTAMP NOT NULL",  # settlement time
        "funding_rate": "DOUBLE NOT NULL",
        "interval_hours": "INTEGER NOT NULL",
        "ingested_at": "TIMESTAMP NOT NULL",
    },
    key=("venue", "symbol", "ts"),
)

OPEN_INTEREST = RawTable(
    name="open_interest",
    columns={
        "venue": "VARCHAR NOT NULL",
        "symbol": "VARCHAR NOT NULL",
        "timeframe": "VARCHAR NOT NULL",
        "ts": "TIMESTAMP NOT NULL",
        "open_interest": "DOUBLE NOT NULL",  # base asset
        "open_interest_value": "DOUBLE",  # quote (USDT)
        "ingested_at": "TIMESTAMP NOT NULL",
    },
    key=("venue", "symbol", "timeframe", "ts"),
)

ORDER_BOOK_SNAPSHOTS = RawTable(
    name="order_book_snapshots",
    columns={
        "venue": "VARCHAR NOT NULL",
        "market": "VARCHAR NOT NULL",  # perp | spot
        "symbol": "VARCHAR NOT NULL",
        "ts": "TIMESTAMP NOT NULL",  # snapshot time
        "side": "VARCHAR NOT NULL",  # bid | ask
        "level": "INTEGER NOT NULL",  # 1 = best
        "price": "DOUBLE NOT NULL",
        "amount": "DOUBLE NOT NULL",  # base asset
        "ingested_at": "TIMESTAMP NOT NULL",
    },
    key=("venue", "market", "symbol", "ts", "side", "level"),
)

DATA_GAPS = RawTable(
    name="data_gaps",
    columns={
        "venue": "VARCHAR NOT NULL",
        "market": "VARCHAR NOT NULL",
        "symbol": "VARCHAR NOT NULL",
        "timeframe": "VARCHAR NOT NULL",
        "gap_start": "TIMESTAMP NOT NULL",  # first missing bar
        "gap_end": "TIMESTAMP NOT NULL",  # last missing bar
        "missing_bars": "INTEGER NOT NULL",
        "source": "VARCHAR NOT NULL",
        "ingested_at": "TIMESTAMP NOT NULL",
    },
    key=("venue", "market", "symbol", "timeframe", "gap_start"),
)

RAW_TABLES: dict[str, RawTable] = {
    t.name: t for t in (OHLCV, FUNDING_RATES, OPEN_INTEREST, ORDER_BOOK_SNAPSHOTS, DATA_GAPS)
}


def ensure_raw_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the raw schema and tables when missing."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {RAW_SCHEMA}")
    for table in RAW_TABLES.values():
        con.execute(table.ddl())


def upsert(con: duckdb.DuckDBPyConnection, table: RawTable, frame: pd.DataFrame) -> int:
    """Insert or update ``frame`` in one transaction; returns the number of rows written.

    Re-writing the same rows leaves the table unchanged apart from ``ingested_at``; a failure
    part-way rolls the whole frame back.
    """
    missing = [c for c in table.columns if c != "ingested_at" and c not in frame.columns]
    if missing:
        raise ValueError(f"{table.qualified}: frame lacks column(s) {missing}")
    if frame.empty:
        return 0
    data = frame[[c for c in table.columns if c != "ingested_at"]]
    duplicated = data.duplicated(subset=list(table.key), keep=False)
    if duplicated.any():
        first = data[duplicated].iloc[0]
        where = ", ".join(f"{k}={first[k]}" for k in table.key)
        raise ValueError(f"{table.qualified}: duplicate key in the batch ({where})")
    names = ", ".join(data.columns)
    updates = ", ".join(f"{c} = excluded.{c}" for c in table.value_columns)
    con.register("_upsert_batch", data)
    try:
        con.execute("BEGIN TRANSACTION")
        con.execute(
            f"INSERT INTO {table.qualified} ({names}, ingested_at) "
            f"SELECT {names}, now()::TIMESTAMP FROM _upsert_batch "
            f"ON CONFLICT ({', '.join(table.key)}) DO UPDATE SET {updates}, "
            f"ingested_at = excluded.ingested_at"
        )
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    finally:
        con.unregister("_upsert_batch")
    return len(data)


def row_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Row count of every raw table."""
    return {
        name: con.execute(f"SELECT count(*) FROM {t.qualified}").fetchall()[0][0]
        for name, t in RAW_TABLES.items()
    }
