"""The serving ledger in DuckDB (schema ``serving``) and the deterministic client order ids.

Tables, each with a primary key so that a re-run can never duplicate a row:

- ``accounts``: one row per account (its symbols and initial cash);
- ``orders``: one row per client order id, with its status (pending, filled, rejected);
- ``fills``: one row per filled order (price, fee, slippage, realized PnL);
- ``funding``: one row per account, settlement bar and symbol;
- ``positions``: every position of an account at the close of every processed bar;
- ``equity``: the account (cash, equity, the bar's flows) at the close of every processed bar.

Timestamps are naive UTC. The writes of one bar go in one transaction (``transaction``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import duckdb
import numpy as np

SCHEMA = """
CREATE SCHEMA IF NOT EXISTS serving;
CREATE TABLE IF NOT EXISTS serving.accounts (
    account_id VARCHAR PRIMARY KEY,
    symbols VARCHAR NOT NULL,
    initial_cash DOUBLE NOT NULL
);
CREATE TABLE IF NOT EXISTS serving.orders (
    client_order_id VARCHAR PRIMARY KEY,
    account_id VARCHAR NOT NULL,
    decision_ts TIMESTAMP NOT NULL,
    symbol VARCHAR NOT NULL,
    qty DOUBLE NOT NULL,
    reference_price DOUBLE NOT NULL,
    reduce_only BOOLEAN NOT NULL,
    status VARCHAR NOT NULL,
    reason VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS serving.fills (
    client_order_id VARCHAR PRIMARY KEY,
    account_id VARCHAR NOT NULL,
    fill_ts TIMESTAMP NOT NULL,
    symbol VARCHAR NOT NULL,
    qty DOUBLE NOT NULL,
    price DOUBLE NOT NULL,
    fee DOUBLE NOT NULL,
    slippage DOUBLE NOT NULL,
    realized_pnl DOUBLE NOT NULL
);
CREATE TABLE IF NOT EXISTS serving.funding (
    account_id VARCHAR NOT NULL,
    ts TIMESTAMP NOT NULL,
    symbol VARCHAR NOT NULL,
    qty DOUBLE NOT NULL,
    mark DOUBLE NOT NULL,
    rate DOUBLE NOT NULL,
    cash_flow DOUBLE NOT NULL,
    PRIMARY KEY (account_id, ts, symbol)
);
CREATE TABLE IF NOT EXISTS serving.positions (
    account_id VARCHAR NOT NULL,
    ts TIMESTAMP NOT NULL,
    symbol VARCHAR NOT NULL,
    qty DOUBLE NOT NULL,
    entry_price DOUBLE NOT NULL,
    entry_basis DOUBLE NOT NULL,
    mark DOUBLE NOT NULL,
    basis DOUBLE NOT NULL,
    PRIMARY KEY (account_id, ts, symbol)
);
CREATE TABLE IF NOT EXISTS serving.equity (
    account_id VARCHAR NOT NULL,
    ts TIMESTAMP NOT NULL,
    cash DOUBLE NOT NULL,
    equity DOUBLE NOT NULL,
    realized_pnl DOUBLE NOT NULL,
    fees DOUBLE NOT NULL,
    slippage DOUBLE NOT NULL,
    funding DOUBLE NOT NULL,
    traded_notional DOUBLE NOT NULL,
    PRIMARY KEY (account_id, ts)
);
"""
"""DDL of the ledger (idempotent)."""

CLIENT_ORDER_ID_MAX_LENGTH = 36
"""Binance's limit on ``newClientOrderId``."""
_CLIENT_ORDER_ID = re.compile(r"[.A-Z:/a-z0-9_-]{1,36}")
"""Binance's pattern for ``newClientOrderId``."""
_ACCOUNT_ID = re.compile(r"[A-Za-z0-9_.]+")
"""Account ids: no '-', so that an id parses back into one (account, bar, symbol)."""


def create_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the ``serving`` ledger tables if missing."""
    con.execute(SCHEMA)


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Run the block in one transaction: committed if it returns, rolled back if it raises."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def to_datetime64(ts: np.datetime64 | datetime) -> np.datetime64:
    """A timestamp as naive-UTC ``datetime64[us]`` (aware datetimes converted to UTC)."""
    if isinstance(ts, datetime):
        naive = ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo is not None else ts
        value = np.datetime64(naive, "us")
    else:
        value = np.datetime64(ts).astype("datetime64[us]")
    if np.isnat(value):
        raise ValueError("timestamp: NaT")
    return value


def to_datetime(ts: np.datetime64 | datetime) -> datetime:
    """A timestamp as a naive-UTC ``datetime`` (what DuckDB stores in a TIMESTAMP)."""
    value: datetime = to_datetime64(ts).astype(datetime)
    return value


def check_account_id(account_id: str) -> str:
    """``account_id`` if it is a valid account id (letters, digits, '_' and '.'), else raise."""
    if not _ACCOUNT_ID.fullmatch(account_id):
        raise ValueError(
            f"account_id {account_id!r}: use letters, digits, '_' and '.' only (no '-')"
        )
    return account_id


def client_order_id(
    account_id: str, decision_ts: np.datetime64 | datetime, symbol: str, leg: int = 0
) -> str:
    """The id of the ``leg``-th order (0, 1, ...: the safety layer splits an order above its
    notional cap) of ``account_id`` in ``symbol`` decided at the close ``decision_ts``:
    ``pf-{account}-{YYYYmmddTHHMM}-{symbol}``, with ``.{leg}`` after it from the second leg on,
    within Binance's 36 characters of ``[.A-Z:/a-z0-9_-]``. Raises ``ValueError`` when the id
    would not be valid or unique (a decision time that is not a whole minute, an account id
    with '-', a negative leg)."""
    if leg < 0:
        raise ValueError(f"client order id for {symbol!r}: leg {leg} is negative")
    ts = to_datetime64(decision_ts)
    if ts != ts.astype("datetime64[m]"):
        raise ValueError(f"decision_ts {ts}: not a whole minute (the id keeps minutes only)")
    minute = str(np.datetime_as_string(ts, unit="m")).replace("-", "").replace(":", "")
    cid = f"pf-{check_account_id(account_id)}-{minute}-{symbol}" + (f".{leg}" if leg else "")
    if len(cid) > CLIENT_ORDER_ID_MAX_LENGTH or not _CLIENT_ORDER_ID.fullmatch(cid):
        raise ValueError(
            f"client order id {cid!r} for account {account_id!r} and symbol {symbol!r}: "
            f"{len(cid)} characters; Binance takes at most {CLIENT_ORDER_ID_MAX_LENGTH} "
            "of [.A-Z:/a-z0-9_-]"
        )
    return cid
