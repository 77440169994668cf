"""What each serving cycle decided, in the warehouse beside the paper ledger: the decision per
asset, the safety layer's interventions and the safety state carried to the next bar. One
transaction per cycle; re-recording a bar replaces its rows."""

from __future__ import annotations

import json

import duckdb
import numpy as np

from serving.cycle import CycleResult
from serving.ledger import to_datetime, transaction
from serving.safety import SafetyState

_SCHEMA = """
CREATE SCHEMA IF NOT EXISTS serving;
CREATE TABLE IF NOT EXISTS serving.decisions (
    account_id VARCHAR NOT NULL,
    decision_ts TIMESTAMP NOT NULL,
    symbol VARCHAR NOT NULL,
    model_version VARCHAR NOT NULL,
    decided BOOLEAN NOT NULL,
    proposed_weight DOUBLE,
    target_weight DOUBLE NOT NULL,
    current_weight DOUBLE NOT NULL,
    PRIMARY KEY (account_id, decision_ts, symbol)
);
CREATE TABLE IF NOT EXISTS serving.interventions (
    account_id VARCHAR NOT NULL,
    decision_ts TIMESTAMP NOT NULL,
    seq INTEGER NOT NULL,
    code VARCHAR NOT NULL,
    symbol VARCHAR NOT NULL,
    message VARCHAR NOT NULL,
    PRIMARY KEY (account_id, decision_ts, seq)
);
CREATE TABLE IF NOT EXISTS serving.safety_state (
    account_id VARCHAR PRIMARY KEY,
    decision_ts TIMESTAMP NOT NULL,
    state JSON NOT NULL
);
"""


def create_journal(con: duckdb.DuckDBPyConnection) -> None:
    """Create the journal's tables if missing."""
    con.execute(_SCHEMA)


def load_safety_state(con: duckdb.DuckDBPyConnection, account_id: str) -> SafetyState:
    """The state the last recorded cycle left for ``account_id`` (a new one: ACTIVE)."""
    create_journal(con)
    row = con.execute(
        "SELECT state FROM serving.safety_state WHERE account_id = ?", [account_id]
    ).fetchone()
    return SafetyState() if row is None else SafetyState.from_dict(json.loads(row[0]))


def first_decision(
    con: duckdb.DuckDBPyConnection, account_id: str, model_version: str
) -> np.datetime64 | None:
    """The first bar ``model_version`` decided on for ``account_id`` (None: never served)."""
    create_journal(con)
    row = con.execute(
        "SELECT min(decision_ts) FROM serving.decisions WHERE account_id = ? AND model_version = ?",
        [account_id, model_version],
    ).fetchone()
    return None if row is None or row[0] is None else np.datetime64(row[0], "us")


def record_cycle(
    con: duckdb.DuckDBPyConnection, account_id: str, result: CycleResult, model_version: str
) -> None:
    """Write ``result``'s decision, interventions and new safety state in one transaction."""
    create_journal(con)
    ts = to_datetime(result.decision_ts)
    symbols = result.account.symbols
    proposed = np.asarray(result.proposed_weights, dtype=np.float64).reshape(-1)
    if proposed.shape != (len(symbols),):  # a malformed proposal is kept as NULL
        proposed = np.full(len(symbols), np.nan)
    current = result.account.weights
    with transaction(con):
        for table in ("decisions", "interventions"):
            con.execute(
                f"DELETE FROM serving.{table} WHERE account_id = ? AND decision_ts = ?",
                [account_id, ts],
            )
        con.executemany(
            "INSERT INTO serving.decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                [
                    account_id,
                    ts,
                    symbol,
                    model_version,
                    result.decided,
                    float(proposed[i]) if np.isfinite(proposed[i]) else None,
                    float(result.safety.target_weights[i]),
                    float(current[i]),
                ]
                for i, symbol in enumerate(symbols)
            ],
        )
        if result.safety.interventions:
            con.executemany(
                "INSERT INTO serving.interventions VALUES (?, ?, ?, ?, ?, ?)",
                [
                    [account_id, ts, seq, str(i.code), i.symbol, i.message]
                    for seq, i in enumerate(result.safety.interventions)
                ],
            )
        con.execute(
            "INSERT OR REPLACE INTO serving.safety_state VALUES (?, ?, ?)",
            [account_id, ts, json.dumps(result.safety.state.to_dict())],
        )
