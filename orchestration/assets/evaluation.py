"""Evaluation: the new version against every baseline and the champion, out of sample.

The candidate, the six baselines and the champion are replayed through the environment's
accounting on the same held-out bars; their per-bar ledgers go to the warehouse
(``evaluation.ledger_bars``, ``evaluation.ledger_assets``) and to the candidate's MLflow run with
the tear sheet; the materialization shows the plots, the metrics and a link to the run.
"""

import json
import tempfile
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from evaluation.engine import write_ledgers
from evaluation.evaluate import (
    CANDIDATE,
    Evaluation,
    champion_ledger,
    evaluate_strategies,
    policy_actor,
)
from evaluation.report import markdown_image, tear_sheet
from evaluation.strategies import BENCHMARKS
from orchestration.resources.mlflow_registry import MlflowRegistry
from orchestration.resources.warehouse import DuckDBWarehouse
from training.data import load_market
from training.market import MarketData
from training.policy_model import PolicySpec, load_policy

SUMMARY_METRICS = ("sharpe", "total_return", "max_drawdown", "turnover_cost", "sortino")


def spec_market(warehouse: DuckDBWarehouse, spec: PolicySpec) -> MarketData:
    """The feature mart of the policy's venue, timeframe, symbols and features."""
    return load_market(
        warehouse.path, spec.venue, spec.timeframe, spec.feature_columns, symbols=spec.symbols
    )


def run_link(registry: MlflowRegistry, run_id: str) -> str:
    """The MLflow UI's address of a run, relative to the MLflow server (``make ui``)."""
    experiment = registry.client().get_run(run_id).info.experiment_id
    return f"#/experiments/{experiment}/runs/{run_id}"


def contender_metadata(result: Evaluation) -> dict[str, Any]:
    """Typed metadata: each contender's main metrics and Sharpe interval."""
    metadata: dict[str, Any] = {}
    for name, metrics in result.metrics.items():
        values = metrics.as_dict()
        for key in SUMMARY_METRICS:
            metadata[f"{name}_{key}"] = dg.MetadataValue.float(float(values[key]))
        ci = result.comparison.sharpe_ci[name]
        metadata[f"{name}_sharpe_ci"] = f"[{ci.low:.2f}, {ci.high:.2f}]"
    return metadata


def metrics_table(result: Evaluation) -> str:
    """A markdown table of every contender's metrics (benchmarks labelled)."""
    rows = []
    for name, metrics in result.metrics.items():
        m, ci = metrics.as_dict(), result.comparison.sharpe_ci[name]
        label = f"{name} (benchmark)" if name in BENCHMARKS else name
        rows.append(
            {
                "strategy": label,
                "Sharpe": round(m["sharpe"], 2),
                "Sharpe 95% CI": f"[{ci.low:.2f}, {ci.high:.2f}]",
                "return": f"{m['total_return']:.2%}",
                "max DD": f"{m['max_drawdown']:.2%}",
                "turnover cost": f"{m['turnover_cost']:.2%}",
                "liquidated": m["liquidated"],
            }
        )
    return pd.DataFrame(rows).to_markdown(index=False)


@dg.asset(group_name="evaluation", deps=["day_one_champion"], kinds={"mlflow", "duckdb"})
def policy_evaluation(
    context: dg.AssetExecutionContext,
    trained_policy: dict,
    warehouse: DuckDBWarehouse,
    mlflow_registry: MlflowRegistry,
) -> dg.Output[dict]:
    """Out-of-sample ledgers, metrics and statistics of the candidate, every baseline and the
    current champion on the same bars, and the evidence the promotion gate decides on."""
    client = mlflow_registry.client()
    version, run_id = trained_policy["version"], trained_policy["run_id"]
    candidate = load_policy(mlflow_registry.model_uri(version))
    spec = candidate.spec
    market = spec_market(warehouse, spec)
    first = int(market.timestamps.searchsorted(np.datetime64(trained_policy["test_start"])))

    champion_version = mlflow_registry.champion_version()
    champion = None
    if champion_version not in (None, version):
        policy = load_policy(mlflow_registry.model_uri(champion_version))
        champion_market = spec_market(warehouse, policy.spec)
        start = int(champion_market.timestamps.searchsorted(market.timestamps[first]))
        stop = int(champion_market.timestamps.searchsorted(market.timestamps[-1], side="right"))
        champion = champion_ledger(policy, champion_market, start, stop, costs_of=spec.env_config)
    trials, variance = mlflow_registry.trial_sharpes(spec.venue, spec.timeframe, spec.symbols)
    result = evaluate_strategies(
        market,
        spec.env_config,
        spec.builder.normalizer,
        first,
        policy_actor(CANDIDATE, candidate),
        champion=champion,
        champion_version=champion_version if champion is not None else None,
        n_trials=trials,
        trial_sharpe_variance=variance,
    )
    evaluation_id = f"v{version}"
    with warehouse.connect() as con:
        write_ledgers(con, evaluation_id, result.ledgers.values())
    for name, metrics in result.metrics.items():
        for key, value in metrics.as_dict().items():
            if isinstance(value, bool | int | float):
                client.log_metric(run_id, f"oos_{name}_{key}", float(value))
    client.log_metric(run_id, "oos_deflated_sharpe", result.evidence.deflated_sharpe)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        bars = pd.concat([ledger.bar_frame() for ledger in result.ledgers.values()])
        bars.to_parquet(out / "ledger_bars.parquet", index=False)
        assets = pd.concat([ledger.asset_frame() for ledger in result.ledgers.values()])
        assets.to_parquet(out / "ledger_assets.parquet", index=False)
        (out / "gate_evidence.json").write_text(json.dumps(result.evidence.to_dict(), indent=2))
        sheet = tear_sheet(
            result.ledgers,
            out,
            candidate=CANDIDATE,
            benchmarks=BENCHMARKS,
            metrics={n: m.as_dict() for n, m in result.metrics.items()},
        )
        client.log_artifacts(run_id, tmp, artifact_path="evaluation")
        plots = {name: markdown_image(path) for name, path in sheet.images.items()}

    candidate_metrics = result.metrics[CANDIDATE]
    summary = {
        "version": version,
        "run_id": run_id,
        "evaluation_id": evaluation_id,
        "first_oos_ts": str(pd.Timestamp(result.first_oos_timestamp)),
        "n_oos_bars": candidate_metrics.n_bars,
        "metrics": {name: m.as_dict() for name, m in result.metrics.items()},
        "sharpe_ci": {n: [ci.low, ci.high] for n, ci in result.comparison.sharpe_ci.items()},
        "probabilistic_sharpe": result.comparison.probabilistic_sharpe,
        "gate_evidence": result.evidence.to_dict(),
    }
    metadata: dict[str, Any] = {
        "version": version,
        "first_oos_ts": summary["first_oos_ts"],
        "n_oos_bars": summary["n_oos_bars"],
        "n_oos_days": candidate_metrics.n_days,
        "best_baseline": result.evidence.best_baseline,
        "sharpe_difference_ci": str([round(v, 3) for v in result.evidence.sharpe_difference_ci]),
        "deflated_sharpe": dg.MetadataValue.float(result.evidence.deflated_sharpe),
        "n_trials": result.evidence.n_trials,
        "metrics": dg.MetadataValue.md(metrics_table(result)),
        "mlflow_run": dg.MetadataValue.url(
            mlflow_registry.ui_url.rstrip("/") + "/" + run_link(mlflow_registry, run_id)
        ),
        "ledger_table": "evaluation.ledger_bars / evaluation.ledger_assets "
        f"(evaluation_id = '{evaluation_id}')",
        **contender_metadata(result),
        **{f"plot_{name}": dg.MetadataValue.md(image) for name, image in plots.items()},
    }
    context.log.info(
        "candidate Sharpe %.2f vs best baseline %s %.2f",
        candidate_metrics.sharpe,
        result.evidence.best_baseline,
        result.metrics[result.evidence.best_baseline].sharpe,
    )
    return dg.Output(summary, metadata=metadata)
