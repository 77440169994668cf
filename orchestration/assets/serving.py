"""Serving: the champion's target weights for the latest bar, written to DuckDB."""

import dagster as dg

from orchestration.project import CHAMPION_ALIAS
from orchestration.resources.mlflow_registry import MlflowRegistry
from orchestration.resources.warehouse import DuckDBWarehouse
from serving.serve import TARGET_WEIGHTS_TABLE, decide_target_weights, write_decision
from training.data import load_market
from training.policy_model import load_policy


@dg.asset(group_name="serving", kinds={"duckdb", "mlflow"})
def target_weights(warehouse: DuckDBWarehouse, mlflow_registry: MlflowRegistry):
    """Target weight per asset from ``models:/<name>@champion`` after the hard safety clamp."""
    version = mlflow_registry.champion_version()
    if version is None:
        raise dg.Failure(
            f"no model version holds the '{CHAMPION_ALIAS}' alias of "
            f"{mlflow_registry.model_name}: nothing to serve until one passes the promotion gate"
        )
    mlflow_registry.activate()
    policy = load_policy(f"models:/{mlflow_registry.model_name}@{CHAMPION_ALIAS}")
    spec = policy.spec
    market = load_market(
        warehouse.path, spec.venue, spec.timeframe, spec.feature_columns, symbols=spec.symbols
    )
    decision = decide_target_weights(policy, market)
    with warehouse.connect() as con:
        rows = write_decision(con, decision, version)
    return dg.MaterializeResult(
        metadata={
            "table": TARGET_WEIGHTS_TABLE,
            "rows": rows,
            "model_version": version,
            "decision_ts": str(decision.decision_ts),
            "gross_leverage": float(abs(decision.target_weights).sum()),
            "interventions": "; ".join(decision.interventions) or "none",
            **{
                f"weight_{s}": round(float(w), 4)
                for s, w in zip(decision.symbols, decision.target_weights, strict=True)
            },
        }
    )
