"""The raw DuckDB schema, atomic and conflict-checked writes into it, and opening the file.

Every source (synthetic, ccxt, file importers) writes the same tables, so nothing downstream can
tell the sources apart. Timestamps are naive UTC ``TIMESTAMP`` values (bar open time). The schema
is documented in ``docs/data.md``.

Writes are checked first (a bad row raises ``DataValidationError`` naming the table, source,
venue, symbol, timestamp and field, and nothing is written), then applied in one transaction:
rows whose key is new are inserted and identical rows are left alone, so re-ingesting a window
changes nothing, not even ``ingested_at``. A row whose key is stored with other values is a
conflict (``DataConflictError``, naming the row, the field and both values; nothing written)
unless the write passes ``replace=True``. Gap records are bookkeeping, not observations: they
are updated in place.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

RAW_SCHEMA = "raw"

EARLIEST_TS = pd.Timestamp("2009-01-01")
"""No market data is older (Bitcoin's genesis block); earlier times are misread units."""
FUTURE_SLACK = pd.Timedelta(days=1)
"""How far past now a timestamp may lie (clock skew, a bar opening soon)."""

SOURCE_FILE = "source_file"
"""Optional frame column naming the file each row came from (used in messages, not stored)."""

MARK_FROM_PERP_CLOSE = "mark=perp-close"
"""Rule tag in ``raw.ohlcv.source`` of mark bars copied from the perp bars (no mark file)."""


def derived_source(source: str, rule: str = MARK_FROM_PERP_CLOSE) -> str:
    """The ``source`` value of rows derived by ``rule``, e.g. ``freqtrade:mark=perp-close``."""
    return f"{source}:{rule}"


@dataclass(frozen=True, eq=False)
class RawTable:
    """A raw table: its columns (name -> DuckDB type) and primary key (hashable by identity).

    ``provenance`` columns say where a row came from: frames may omit them (stored as NULL) and
    a different value alone is no change. ``conflicts``: whether a stored row that would change
    is a conflict (observations) or is updated in place (bookkeeping such as gap records).
    """

    name: str
    columns: dict[str, str]
    key: tuple[str, ...]
    provenance: tuple[str, ...] = ()
    conflicts: bool = True

    @property
    def qualified(self) -> str:
        return f"{RAW_SCHEMA}.{self.name}"

    @property
    def value_columns(self) -> list[str]:
        skip = {*self.key, *self.provenance, "ingested_at"}
        return [c for c in self.columns if c not in skip]

    @property
    def written_columns(self) -> list[str]:
        return [c for c in self.columns if c != "ingested_at"]

    @property
    def frame_columns(self) -> list[str]:
        """The columns every source's frame has (provenance ones are optional)."""
        return [c for c in self.written_columns if c not in self.provenance]

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
        # Which importer wrote the row, with a rule tag when derived (NULL: ccxt, synthetic).
        "source": "VARCHAR",
        "ingested_at": "TIMESTAMP NOT NULL",
    },
    key=("venue", "market", "symbol", "timeframe", "ts"),
    provenance=("source",),
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
    conflicts=False,
)

RAW_TABLES: dict[str, RawTable] = {
    t.name: t for t in (OHLCV, FUNDING_RATES, OPEN_INTEREST, ORDER_BOOK_SNAPSHOTS, DATA_GAPS)
}


class DataValidationError(ValueError):
    """Input that must not reach the warehouse; the message names where it came from."""


class DataConflictError(DataValidationError):
    """Rows whose key is stored with other values; ``conflicts`` holds a few of them."""

    def __init__(self, message: str, count: int, conflicts: list[dict]) -> None:
        super().__init__(message)
        self.count = count
        self.conflicts = conflicts


class WarehouseLockedError(RuntimeError):
    """Another process holds the DuckDB file's lock (``pid`` when DuckDB names it)."""

    def __init__(self, message: str, path: str, pid: int | None) -> None:
        super().__init__(message)
        self.path = path
        self.pid = pid


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
    if SOURCE_FILE in row.index and isinstance(row[SOURCE_FILE], str):
        parts.insert(0, f"file {row[SOURCE_FILE]}")
    return ", ".join(parts)


def latest_plausible_ts() -> pd.Timestamp:
    """The latest timestamp a write accepts: now (naive UTC) plus ``FUTURE_SLACK``."""
    return pd.Timestamp.now(tz="UTC").tz_localize(None) + FUTURE_SLACK


def check_raw_frame(table: RawTable, frame: pd.DataFrame, source: str = "") -> None:
    """Raise ``DataValidationError`` on the first bad row of ``frame`` for ``table``.

    Checks: required columns, nulls in key or NOT NULL columns, times outside
    [``EARLIEST_TS``, now + ``FUTURE_SLACK``], NaN/infinite/non-positive prices, negative
    volumes and amounts, OHLC consistency (low <= open, close <= high) and duplicate keys in the
    batch.
    """
    where = f"{table.qualified}{f' from {source}' if source else ''}"
    missing = [c for c in table.frame_columns if c not in frame.columns]
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
    if "ts" in frame.columns:
        ts = pd.to_datetime(frame["ts"])
        bad = ((ts < EARLIEST_TS) | (ts > latest_plausible_ts())).to_numpy()
        if bad.any():
            row = frame[bad].iloc[0]
            raise DataValidationError(
                f"{where}: ts {row['ts']} lies outside [{EARLIEST_TS.date()}, now + 1 day] "
                f"(a timestamp in the wrong unit?) ({_where(table, row)})"
            )
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
        rows = frame[duplicated]
        first = rows.iloc[0]
        same = rows[(rows[list(table.key)] == first[list(table.key)]).all(axis=1)]
        raise DataValidationError(
            f"{where}: duplicate key in the batch ({_where(table, first)}): "
            + " vs ".join(
                ", ".join(f"{c}={r[c]!r}" for c in table.value_columns) for _, r in same.iterrows()
            )
            + _files_of(same)
        )


def _files_of(rows: pd.DataFrame) -> str:
    if SOURCE_FILE not in rows.columns:
        return ""
    return f" (files {', '.join(sorted(set(rows[SOURCE_FILE].dropna().astype(str))))})"


def ensure_raw_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the raw schema and tables when missing (and add columns newer than the file)."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {RAW_SCHEMA}")
    for table in RAW_TABLES.values():
        con.execute(table.ddl())
        for col in table.provenance:
            con.execute(
                f"ALTER TABLE {table.qualified} ADD COLUMN IF NOT EXISTS {col} {table.columns[col]}"
            )


def _derived(alias: str, table: RawTable) -> str:
    """SQL: the row ``alias`` was derived by a rule (only tables with a ``source`` column)."""
    if "source" not in table.provenance:
        return "false"
    return f"coalesce(ends_with({alias}.source, ':{MARK_FROM_PERP_CLOSE}'), false)"


def _same_key(table: RawTable) -> str:
    """SQL: stored row ``t`` and batch row ``b`` have the same key."""
    return " AND ".join(f"t.{k} = b.{k}" for k in table.key)


def _values_differ(table: RawTable) -> str:
    """SQL: stored row ``t`` and batch row ``b`` differ in a value column (NULL-aware)."""
    return " OR ".join(f"t.{c} IS DISTINCT FROM b.{c}" for c in table.value_columns)


def _conflicts(
    con: duckdb.DuckDBPyConnection, table: RawTable, view: str, has_file: bool, limit: int = 5
) -> tuple[int, list[dict]]:
    """Stored rows the batch would change (derived rows on either side excepted)."""
    cols = [f"b.{k}" for k in table.key]
    cols += [f"t.{c} AS old_{c}, b.{c} AS new_{c}" for c in table.value_columns]
    if has_file:
        cols.append(f"b.{SOURCE_FILE}")
    where = (
        f"({_values_differ(table)}) AND NOT {_derived('t', table)} AND NOT {_derived('b', table)}"
    )
    frame = con.execute(
        f"SELECT {', '.join(cols)}, count(*) OVER () AS n FROM {view} b "
        f"JOIN {table.qualified} t ON {_same_key(table)} WHERE {where} "
        f"ORDER BY {', '.join(f'b.{k}' for k in table.key)} LIMIT {limit}"
    ).df()
    if frame.empty:
        return 0, []
    rows = []
    for _, r in frame.iterrows():
        row = {k: r[k] for k in table.key}
        if has_file:
            row["file"] = r[SOURCE_FILE]
        row["changes"] = {
            c: (r[f"old_{c}"], r[f"new_{c}"])
            for c in table.value_columns
            if not _same(r[f"old_{c}"], r[f"new_{c}"])
        }
        rows.append(row)
    return int(frame["n"].iloc[0]), rows


def _same(a: object, b: object) -> bool:
    if pd.isna(a) or pd.isna(b):
        return bool(pd.isna(a) and pd.isna(b))
    return bool(a == b)


def _plain(value: object) -> str:
    return repr(float(value)) if isinstance(value, (float, np.floating)) else str(value)


def _describe_conflict(row: dict) -> str:
    where = ", ".join(f"{k}={v}" for k, v in row.items() if k not in ("changes", "file"))
    changes = ", ".join(
        f"{c} stored {_plain(a)}, new {_plain(b)}" for c, (a, b) in row["changes"].items()
    )
    file = f" in {row['file']}" if row.get("file") else ""
    return f"{where}{file}: {changes}"


def _apply(
    con: duckdb.DuckDBPyConnection,
    table: RawTable,
    frame: pd.DataFrame,
    replace: bool,
    source: str,
) -> int:
    """Insert new keys and update changed rows of ``frame``; caller holds the transaction.

    Without ``replace`` a stored row that would change raises ``DataConflictError``. A derived
    row never replaces an observed one; an observed row always replaces a derived one.
    """
    data = frame[[c for c in table.written_columns if c in frame.columns]].copy()
    for col in table.provenance:
        if col not in data.columns:
            data[col] = pd.Series([None] * len(data), index=data.index, dtype=object)
    names = ", ".join(table.written_columns)
    has_file = SOURCE_FILE in frame.columns
    if has_file:
        data[SOURCE_FILE] = frame[SOURCE_FILE]
    view = f"_batch_{table.name}"
    con.register(view, data)
    try:
        if table.conflicts and not replace and table.value_columns:
            count, rows = _conflicts(con, table, view, has_file)
            if count:
                raise DataConflictError(
                    f"{table.qualified}{f' from {source}' if source else ''}: {count} row(s) "
                    "differ from the stored ones; nothing written (pass replace=True, or "
                    "`perpfolio import --replace`, to overwrite them). First: "
                    + "; ".join(_describe_conflict(r) for r in rows),
                    count,
                    rows,
                )
        key = ", ".join(table.key)
        inserted = con.execute(
            f"INSERT INTO {table.qualified} ({names}, ingested_at) "
            f"SELECT {', '.join(f'b.{c}' for c in table.written_columns)}, now()::TIMESTAMP "
            f"FROM {view} b ANTI JOIN {table.qualified} t USING ({key})"
        ).fetchall()[0][0]
        updated = 0
        if table.value_columns:
            sets = ", ".join(f"{c} = b.{c}" for c in [*table.value_columns, *table.provenance])
            t_derived, b_derived = _derived("t", table), _derived("b", table)
            updated = con.execute(
                f"UPDATE {table.qualified} t SET {sets}, ingested_at = now()::TIMESTAMP "
                f"FROM {view} b WHERE {_same_key(table)} "
                f"AND ({_values_differ(table)} OR ({t_derived} AND NOT {b_derived})) "
                f"AND (NOT {b_derived} OR {t_derived})"
            ).fetchall()[0][0]
    finally:
        con.unregister(view)
    return int(inserted) + int(updated)


def write_batch(
    con: duckdb.DuckDBPyConnection,
    frames: Mapping[RawTable, pd.DataFrame],
    source: str = "",
    replace: bool = False,
) -> dict[str, int]:
    """Check, then write several tables in ONE transaction (all or nothing).

    Returns rows inserted or changed per table name (0 when re-writing identical rows). A row
    whose key is stored with other values raises ``DataConflictError`` and writes nothing,
    unless ``replace``.
    """
    for table, frame in frames.items():
        check_raw_frame(table, frame, source)
    written = {table.name: 0 for table in frames}
    if all(frame.empty for frame in frames.values()):
        return written
    con.execute("BEGIN TRANSACTION")
    try:
        for table, frame in frames.items():
            if not frame.empty:
                written[table.name] = _apply(con, table, frame, replace, source)
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


def upsert(
    con: duckdb.DuckDBPyConnection, table: RawTable, frame: pd.DataFrame, replace: bool = False
) -> int:
    """Write ``frame`` in one transaction; returns rows inserted or changed.

    Re-writing the same rows leaves the table unchanged (and returns 0); a bad row, a conflict
    (without ``replace``) or a failure part-way writes nothing.
    """
    return write_batch(con, {table: frame}, replace=replace)[table.name]


def row_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Row count of every raw table."""
    return {
        name: con.execute(f"SELECT count(*) FROM {t.qualified}").fetchall()[0][0]
        for name, t in RAW_TABLES.items()
    }


LOCK_WAIT_SECONDS = 10.0
"""How long opening the warehouse waits for another process's lock by default."""

_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<program>.*?) \(PID (?P<pid>\d+)\)")


def _describe_process(pid: int, program: str) -> str:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        cmdline = ""
    return f"PID {pid} ({cmdline or program})"


def connect_warehouse(
    path: str | os.PathLike,
    read_only: bool = False,
    wait_seconds: float = LOCK_WAIT_SECONDS,
) -> duckdb.DuckDBPyConnection:
    """Open the DuckDB file, waiting up to ``wait_seconds`` while another process holds it.

    DuckDB lets one process write a file (or several read it). When the lock is still held
    after the wait, ``WarehouseLockedError`` names the file and the process holding it.
    """
    deadline = time.monotonic() + wait_seconds
    delay = 0.05
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as err:
            holder = _LOCK_HOLDER.search(str(err))
            if holder is None and "lock" not in str(err).lower():
                raise
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pid = int(holder["pid"]) if holder else None
                who = (
                    _describe_process(pid, holder["program"])
                    if holder and pid is not None
                    else "another process"
                )
                raise WarehouseLockedError(
                    f"warehouse {path} is locked by {who}; still locked after waiting "
                    f"{wait_seconds:g} s. Let that process finish (or stop it), then retry.",
                    str(path),
                    pid,
                ) from None
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 1.0)
