"""The raw DuckDB schema and atomic, idempotent upserts into it.

Every source (synthetic, ccxt, file importers) writes the same tables, so nothing downstream can
tell the sources apart. Timestamps are naive UTC ``TIMESTAMP`` values (bar open time). The schema
is documented in ``docs/data.md``.

Writes are validated first (a bad row raises ``DataValidationError`` naming the table, venue,
symbol, timestamp and field, and nothing is written), then applied in one transaction: rows whose
key is new are inserted, rows whose values changed are updated, identical rows are left alone, so
re-ingesting a window changes nothing, not even ``ingested_at``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

RAW_SCHEMA = "raw"


@dataclass(frozen=True, eq=False)
class RawTable:
    """A raw table: its columns (name -> DuckDB type) and primary key (hashable by identity)."""

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


class DataValidationError(ValueError):
    """Input that must not reach the warehouse; the message names where it came from."""


# Columns that must be finite and strictly positive / finite and >= 0 / merely finite.
_POSITIVE = {
    "ohlcv": ("open", "high", "low", "close"),
    "order_book_snapshots": ("price",),
    "funding_rates": ("interval_hours",),
}
_NON_NEGATIVE = {
    "ohlcv": ("volume",),
    "open_interest": ("open_interest", "open_interest_value"),
    "order_book_snapshots": ("amount",),
    "data_gaps": ("missing_bars",),
}
_FINITE = {"funding_rates": ("funding_rate",)}
_NULLABLE = {"volume", "open_interest_value"}


def _where(table: RawTable, row: pd.Series, field: str | None = None) -> str:
    parts = [f"{k}={row[k]}" for k in table.key if k in row.index]
    if field is not None:
        parts.append(f"{field}={row[field]!r}")
    return ", ".join(parts)


def validate_frame(table: RawTable, frame: pd.DataFrame, source: str = "") -> None:
    """Raise ``DataValidationError`` on the first bad row of ``frame`` for ``table``.

    Checks: required columns, nulls in key or NOT NULL columns, duplicate keys in the batch,
    NaN/infinite/non-positive prices, negative volumes and amounts, and OHLC consistency
    (low <= open, close <= high).
    """
    where = f"{table.qualified}{f' from {source}' if source else ''}"
    missing = [c for c in table.columns if c != "ingested_at" and c not in frame.columns]
    if missing:
        raise DataValidationError(f"{where}: frame lacks column(s) {missing}")
    if frame.empty:
        return
    for col, dtype in table.columns.items():
        if col == "ingested_at" or "NOT NULL" not in dtype:
            continue
        bad = frame[col].isna().to_numpy()
        if bad.any():
            row = frame[bad].iloc[0]
            raise DataValidationError(f"{where}: missing {col} ({_where(table, row)})")
    for cols, test, what in (
        (_POSITIVE.get(table.name, ()), lambda v: v > 0, "must be a finite positive number"),
        (_NON_NEGATIVE.get(table.name, ()), lambda v: v >= 0, "must be finite and >= 0"),
        (_FINITE.get(table.name, ()), lambda v: v == v, "must be finite"),
    ):
        for col in cols:
            values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)
            with np.errstate(invalid="ignore"):
                ok = np.isfinite(values) & test(values)
            if col in _NULLABLE:
                ok |= frame[col].isna().to_numpy()
            if not ok.all():
                row = frame[~ok].iloc[0]
                raise DataValidationError(f"{where}: {col} {what} ({_where(table, row, col)})")
    if table.name == "ohlcv":
        o, h, lo, c = (frame[k].to_numpy(dtype=float) for k in ("open", "high", "low", "close"))
        tol = 1e-9 * h
        bad = (lo > np.minimum(o, c) + tol) | (h < np.maximum(o, c) - tol)
        if bad.any():
            row = frame[bad].iloc[0]
            raise DataValidationError(
                f"{where}: inconsistent OHLC, need low <= open, close <= high "
                f"({_where(table, row)}, open={row['open']}, high={row['high']}, "
                f"low={row['low']}, close={row['close']})"
            )
    duplicated = frame.duplicated(subset=list(table.key), keep=False).to_numpy()
    if duplicated.any():
        row = frame[duplicated].iloc[0]
        raise DataValidationError(f"{where}: duplicate key in the batch ({_where(table, row)})")


def ensure_raw_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the raw schema and tables when missing."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {RAW_SCHEMA}")
    for table in RAW_TABLES.values():
        con.execute(table.ddl())


def _apply(con: duckdb.DuckDBPyConnection, table: RawTable, frame: pd.DataFrame) -> int:
    """Insert new keys and update changed rows of ``frame``; caller holds the transaction."""
    data = frame[[c for c in table.columns if c != "ingested_at"]]
    names = ", ".join(data.columns)
    key = ", ".join(table.key)
    view = f"_batch_{table.name}"
    con.register(view, data)
    try:
        inserted = con.execute(
            f"INSERT INTO {table.qualified} ({names}, ingested_at) "
            f"SELECT {', '.join(f'b.{c}' for c in data.columns)}, now()::TIMESTAMP "
            f"FROM {view} b ANTI JOIN {table.qualified} t USING ({key})"
        ).fetchall()[0][0]
        updated = 0
        if table.value_columns:
            sets = ", ".join(f"{c} = b.{c}" for c in table.value_columns)
            match = " AND ".join(f"t.{k} = b.{k}" for k in table.key)
            changed = " OR ".join(f"t.{c} IS DISTINCT FROM b.{c}" for c in table.value_columns)
            updated = con.execute(
                f"UPDATE {table.qualified} t SET {sets}, ingested_at = now()::TIMESTAMP "
                f"FROM {view} b WHERE {match} AND ({changed})"
            ).fetchall()[0][0]
    finally:
        con.unregister(view)
    return int(inserted) + int(updated)


def write_batch(
    con: duckdb.DuckDBPyConnection,
    frames: Mapping[RawTable, pd.DataFrame],
    source: str = "",
) -> dict[str, int]:
    """Validate, then upsert several tables in ONE transaction (all or nothing).

    Returns rows inserted or changed per table name (0 when re-writing identical rows).
    """
    for table, frame in frames.items():
        validate_frame(table, frame, source)
    written = {table.name: 0 for table in frames}
    if all(frame.empty for frame in frames.values()):
        return written
    con.execute("BEGIN TRANSACTION")
    try:
        for table, frame in frames.items():
            if not frame.empty:
                written[table.name] = _apply(con, table, frame)
        if any(t is OHLCV and not f.empty for t, f in frames.items()):
            _clear_filled_gaps(con)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return written


def _clear_filled_gaps(con: duckdb.DuckDBPyConnection) -> None:
    """Drop gap records whose bars have all arrived since (e.g. a later incremental run)."""
    con.execute(
        f"DELETE FROM {DATA_GAPS.qualified} g WHERE g.missing_bars <= ("
        f"SELECT count(*) FROM {OHLCV.qualified} o WHERE o.venue = g.venue "
        "AND o.market = g.market AND o.symbol = g.symbol AND o.timeframe = g.timeframe "
        "AND o.ts BETWEEN g.gap_start AND g.gap_end)"
    ).fetchall()


def upsert(con: duckdb.DuckDBPyConnection, table: RawTable, frame: pd.DataFrame) -> int:
    """Insert or update ``frame`` in one transaction; returns rows inserted or changed.

    Re-writing the same rows leaves the table unchanged (and returns 0); a bad row or a failure
    part-way writes nothing.
    """
    return write_batch(con, {table: frame})[table.name]


def row_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Row count of every raw table."""
    return {
        name: con.execute(f"SELECT count(*) FROM {t.qualified}").fetchall()[0][0]
        for name, t in RAW_TABLES.items()
    }
