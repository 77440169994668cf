"""Serving: the champion's target weights for the latest bar, through the safety layer."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from serving.safety import enforce_limits
from training.market import MarketData
from training.observation import PortfolioState
from training.policy_model import PolicyModel

TARGET_WEIGHTS_TABLE = "serving.target_weights"


@dataclass(frozen=True)
class ServingDecision:
    """Target weights decided at the close of one bar."""

    decision_ts: np.datetime64
    """Close time of the bar the decision was taken on (orders go in at the next open)."""
    symbols: tuple[str, ...]
    raw_weights: np.ndarray
    target_weights: np.ndarray
    interventions: tuple[str, ...]


def decide_target_weights(
    policy: PolicyModel, market: MarketData, portfolio: PortfolioState | None = None
) -> ServingDecision:
    """Target weights at the last bar's close: the policy's own observation, then the clamp."""
    if tuple(policy.spec.symbols) != tuple(market.symbols):
        raise ValueError(
            f"policy trades {policy.spec.symbols} but the feature mart has {market.symbols}"
        )
    t = market.n_bars - 1
    if portfolio is None:
        portfolio = PortfolioState.flat(market.n_assets, market.hours_to_funding[t])
    observation = policy.spec.builder.build(market.features, t, portfolio)
    raw = np.asarray(policy.predict(None, observation[None]))[0]
    safe = enforce_limits(raw, market.symbols)
    return ServingDecision(
        market.close_times[t], market.symbols, raw, safe.weights, safe.interventions
    )


def write_decision(
    con: duckdb.DuckDBPyConnection, decision: ServingDecision, model_version: str
) -> int:
    """Upsert the decision (one row per symbol); re-serving the same bar replaces its rows."""
    con.execute("CREATE SCHEMA IF NOT EXISTS serving")
    con.execute(
        f"""CREATE TABLE IF NOT EXISTS {TARGET_WEIGHTS_TABLE} (
            decision_ts TIMESTAMP NOT NULL,
            symbol VARCHAR NOT NULL,
            model_version VARCHAR NOT NULL,
            raw_weight DOUBLE NOT NULL,
            target_weight DOUBLE NOT NULL,
            interventions VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL,
            PRIMARY KEY (decision_ts, symbol)
        )"""
    )
    frame = pd.DataFrame(
        {
            "decision_ts": pd.Timestamp(decision.decision_ts),
            "symbol": list(decision.symbols),
            "model_version": str(model_version),
            "raw_weight": decision.raw_weights.astype(float),
            "target_weight": decision.target_weights.astype(float),
            "interventions": "; ".join(decision.interventions),
        }
    )
    con.register("_decision", frame)
    try:
        con.execute(
            f"INSERT OR REPLACE INTO {TARGET_WEIGHTS_TABLE} "
            "SELECT decision_ts, symbol, model_version, raw_weight, target_weight, interventions, "
            "now()::TIMESTAMP FROM _decision"
        )
    finally:
        con.unregister("_decision")
    return len(frame)
