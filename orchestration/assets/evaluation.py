"""Evaluation: the new version against the equal-weight baseline and the champion, out of sample."""

import tempfile
from pathlib import Path

import dagster as dg
import pandas as pd

from evaluation.evaluate import evaluate
from orchestration.resources.mlflow_registry import MlflowRegistry
from orchestration.resources.warehouse import DuckDBWarehouse
from training.data import load_market
from training.policy_model import PolicySpec, load_policy


@dg.asset(group_name="evaluation", kinds={"mlflow"})
def policy_evaluation(
    trained_policy: dict, warehouse: DuckDBWarehouse, mlflow_registry: MlflowRegistry
) -> dg.Output[dict]:
    """Out-of-sample metrics of the candidate, the baseline and the current champion."""
    client = mlflow_registry.client()
    candidate = load_policy(mlflow_registry.model_uri(trained_policy["version"]))
    champion_version = mlflow_registry.champion_version()
    champion = (
        load_policy(mlflow_registry.model_uri(champion_version))
        if champion_version not in (None, trained_policy["version"])
        else None
    )

    def load(spec: PolicySpec):
        return load_market(
            warehouse.path, spec.venue, spec.timeframe, spec.feature_columns, symbols=spec.symbols
        )

    result = evaluate(candidate, load, champion)
    contenders = [result.candidate, result.baseline] + ([result.champion] if champion else [])
    run_id = trained_policy["run_id"]
    for contender in contenders:
        for key, value in contender.metrics.as_dict().items():
            client.log_metric(run_id, f"oos_{contender.name}_{key}", float(value))
    curves = pd.DataFrame(
        {c.name: c.equity[1:] for c in contenders},
        index=pd.Index(result.candidate.timestamps, name="ts"),
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "oos_equity.csv"
        curves.to_csv(path)
        client.log_artifact(run_id, str(path), artifact_path="evaluation")

    summary = {
        "version": trained_policy["version"],
        "run_id": run_id,
        "first_oos_ts": str(pd.Timestamp(result.first_oos_timestamp)),
        "n_oos_bars": result.candidate.metrics.n_bars,
        "candidate": result.candidate.metrics.as_dict(),
        "baseline": result.baseline.metrics.as_dict(),
        "champion": result.champion.metrics.as_dict() if result.champion else None,
        "champion_version": champion_version if champion else None,
    }
    metadata: dict[str, object] = {
        "version": summary["version"],
        "first_oos_ts": summary["first_oos_ts"],
        "n_oos_bars": summary["n_oos_bars"],
    }
    for contender in contenders:
        m = contender.metrics
        metadata[f"{contender.name}_sharpe"] = round(float(m.sharpe), 3)
        metadata[f"{contender.name}_total_return"] = round(float(m.total_return), 4)
        metadata[f"{contender.name}_max_drawdown"] = round(float(m.max_drawdown), 4)
    metadata["equity_curves"] = dg.MetadataValue.md(
        curves.iloc[:: max(1, len(curves) // 20)].round(2).to_markdown()
    )
    return dg.Output(summary, metadata=metadata)
