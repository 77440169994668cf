"""Walk-forward evaluation as Dagster assets: one partition per fold, then the stitched report.

``walk_forward_fold`` is partitioned by fold (``fold-0`` ... ``fold-<n-1>``, n from
``PERPFOLIO_WALK_FORWARD_FOLDS``, default 4): each partition trains a fresh policy on its fold's
train bars with training's public function and backtests it and every baseline on the fold's
test window, so folds fan out, show one by one in the UI and re-run alone.
``walk_forward_report`` stitches the folds' test ledgers into one out-of-sample curve per
strategy and adds the metrics, the statistics and the tear sheet.
"""

import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import dagster as dg
import mlflow
import pandas as pd

from evaluation.engine import write_ledgers
from evaluation.evaluate import CANDIDATE, compare
from evaluation.ledger import Ledger
from evaluation.metrics import compute_metrics
from evaluation.report import markdown_image, tear_sheet
from evaluation.statistics import trial_sharpe_variance
from evaluation.strategies import BENCHMARKS
from evaluation.walkforward import (
    WalkForwardConfig,
    feature_lookback_bars,
    fold_partition_keys,
    make_folds,
    run_fold,
    stitch,
    validation_bars,
)
from orchestration.assets.features import FEATURE_MART
from orchestration.assets.training import lineage, log_training, training_market
from orchestration.resources.market_source import MarketSource
from orchestration.resources.mlflow_registry import MlflowRegistry
from orchestration.resources.settings import TrainingRun, TrainingSettings, WalkForwardSettings
from orchestration.resources.warehouse import DuckDBWarehouse

N_FOLDS = int(os.environ.get("PERPFOLIO_WALK_FORWARD_FOLDS", WalkForwardConfig().n_folds))
"""Folds of the walk-forward partitions, fixed when the code location loads."""
FOLDS = dg.StaticPartitionsDefinition(fold_partition_keys(WalkForwardConfig(n_folds=N_FOLDS)))


def fold_index(partition_key: str) -> int:
    """The fold number of a partition key ``fold-<i>``."""
    return int(partition_key.rsplit("-", 1)[1])


@dg.asset(
    group_name="walk_forward",
    partitions_def=FOLDS,
    deps=[FEATURE_MART],
    kinds={"pytorch", "mlflow", "duckdb"},
)
def walk_forward_fold(
    context: dg.AssetExecutionContext,
    config: TrainingRun,
    warehouse: DuckDBWarehouse,
    market_source: MarketSource,
    training: TrainingSettings,
    walk_forward: WalkForwardSettings,
    mlflow_registry: MlflowRegistry,
) -> dg.Output[dict]:
    """One fold: a fresh policy trained on the fold's train bars, it and every baseline
    backtested on the fold's test window (ledgers in ``evaluation.ledger_bars``)."""
    train_config = training.train_config(venue=market_source.venue, run=config)
    folds_config = walk_forward.walk_forward_config(N_FOLDS)
    if walk_forward.validation_bars is None and train_config.validation_every > 0:
        folds_config = replace(
            folds_config, validation_bars=validation_bars(train_config.timeframe)
        )
    lookback = feature_lookback_bars(train_config.timeframe)
    folds_config.check_purge(train_config.env.window, lookback)
    market = training_market(warehouse, market_source, train_config)
    fold = make_folds(market.n_bars, folds_config)[fold_index(context.partition_key)]
    experiment_id = mlflow_registry.activate()
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"walk-forward-{fold.name}") as run:
        mlflow.set_tags(
            {"dagster_run_id": context.run.run_id, "stage": "walk_forward", "fold": fold.name}
        )
        result = run_fold(market, fold, train_config)
        log_training(train_config, result.policy, lineage(train_config, market.slice(*fold.train)))
        metrics = {name: compute_metrics(ledger) for name, ledger in result.ledgers.items()}
        for name, m in metrics.items():
            mlflow.log_metrics({f"oos_{name}_sharpe": m.sharpe, f"oos_{name}_ror": m.ror})
    with warehouse.connect() as con:
        write_ledgers(con, f"walk-forward/{fold.name}", result.ledgers.values())
    candidate = metrics[CANDIDATE]
    return dg.Output(
        {
            "fold": result.summary,
            "data": {
                "venue": train_config.venue,
                "timeframe": train_config.timeframe,
                "symbols": ",".join(market.symbols),
            },
            "run_id": run.info.run_id,
            "ledgers": result.ledgers,
            "metrics": {name: m.as_dict() for name, m in metrics.items()},
            "validation_metrics": result.validation_metrics,
            "train_seconds": result.train_seconds,
        },
        metadata={
            **{k: str(v) for k, v in result.summary.items()},
            "candidate_sharpe": dg.MetadataValue.float(candidate.sharpe),
            "candidate_ror": dg.MetadataValue.float(candidate.ror),
            **{
                f"{name}_sharpe": dg.MetadataValue.float(m.sharpe)
                for name, m in metrics.items()
                if name != CANDIDATE
            },
            "train_seconds": round(result.train_seconds, 1),
            "mlflow_run_id": run.info.run_id,
        },
    )


REPORT_STAGE = "walk_forward_report"
"""The ``stage`` tag of a walk-forward report's MLflow run."""


def earlier_report_sharpes(
    registry: MlflowRegistry, experiment_id: str, data: dict[str, str]
) -> list[float]:
    """The stitched candidate Sharpe ratios of the earlier walk-forward reports on the same data
    (venue, timeframe, symbols): with this one, the deflated Sharpe's trials."""
    conditions = [f"tags.stage = '{REPORT_STAGE}'"]
    conditions += [f"tags.`data.{k}` = '{v}'" for k, v in data.items()]
    runs = registry.client().search_runs([experiment_id], " and ".join(conditions))
    return [
        run.data.metrics["oos_candidate_sharpe"]
        for run in runs
        if "oos_candidate_sharpe" in run.data.metrics
    ]


def fold_rows(folds: list[dict]) -> pd.DataFrame:
    """One row per fold: its windows and every strategy's test Sharpe and ROR."""
    rows = []
    for fold in folds:
        row = dict(fold["fold"], train_seconds=round(fold["train_seconds"], 1))
        for name, m in fold["metrics"].items():
            row[f"{name}_sharpe"] = m["sharpe"]
            row[f"{name}_ror"] = m["ror"]
        rows.append(row)
    return pd.DataFrame(rows)


@dg.asset(group_name="walk_forward", kinds={"mlflow"})
def walk_forward_report(
    context: dg.AssetExecutionContext,
    walk_forward_fold: dict[str, dict],
    mlflow_registry: MlflowRegistry,
) -> dg.Output[dict]:
    """Every fold's test ledgers stitched into one out-of-sample curve per strategy, with
    metrics, bootstrap intervals, the probabilistic and deflated Sharpe ratios and the tear
    sheet (in an MLflow run and in this materialization)."""
    keys = sorted(walk_forward_fold, key=fold_index)
    folds = [walk_forward_fold[k] for k in keys]
    names = list(folds[0]["ledgers"])
    stitched: dict[str, Ledger] = {
        name: stitch([fold["ledgers"][name] for fold in folds]) for name in names
    }
    baselines = [n for n in names if n != CANDIDATE]
    data = folds[0]["data"]
    experiment_id = mlflow_registry.activate()
    sharpes = [
        *earlier_report_sharpes(mlflow_registry, experiment_id, data),
        compute_metrics(stitched[CANDIDATE]).sharpe,
    ]
    result = compare(
        stitched,
        baselines,
        n_trials=len(sharpes),
        trial_sharpe_variance=trial_sharpe_variance(sharpes),
    )
    metrics, intervals, best = result.metrics, result.sharpe_ci, result.best_baseline
    difference, psr, dsr = (
        result.sharpe_difference_ci,
        result.probabilistic_sharpe,
        result.deflated_sharpe,
    )
    table = fold_rows(folds)
    with (
        mlflow.start_run(experiment_id=experiment_id, run_name="walk-forward-report") as run,
        tempfile.TemporaryDirectory() as tmp,
    ):
        mlflow.set_tags(
            {
                "dagster_run_id": context.run.run_id,
                "stage": REPORT_STAGE,
                **{f"data.{k}": v for k, v in data.items()},
            }
        )
        for name, m in metrics.items():
            mlflow.log_metrics({f"oos_{name}_sharpe": m.sharpe, f"oos_{name}_ror": m.ror})
        mlflow.log_metrics({"oos_candidate_psr": psr, "oos_candidate_dsr": dsr})
        sheet = tear_sheet(
            stitched,
            Path(tmp),
            candidate=CANDIDATE,
            benchmarks=BENCHMARKS,
            fold_table=table,
            metrics={n: m.as_dict() for n, m in metrics.items()},
        )
        mlflow.log_artifacts(tmp, artifact_path="walk_forward")
        plots = {name: markdown_image(path) for name, path in sheet.images.items()}
    summary: dict[str, Any] = {
        "folds": keys,
        "run_id": run.info.run_id,
        "first_oos_ts": str(pd.Timestamp(stitched[CANDIDATE].start_time)),
        "n_oos_bars": stitched[CANDIDATE].n_bars,
        "metrics": {n: m.as_dict() for n, m in metrics.items()},
        "sharpe_ci": {n: [ci.low, ci.high] for n, ci in intervals.items()},
        "best_baseline": best,
        "sharpe_difference_ci": [difference.low, difference.high],
        "probabilistic_sharpe": psr,
        "deflated_sharpe": dsr,
        "n_trials": len(sharpes),
        "fold_table": table.to_dict(orient="records"),
    }
    return dg.Output(
        summary,
        metadata={
            "folds": len(keys),
            "n_oos_bars": summary["n_oos_bars"],
            "best_baseline": best,
            "sharpe_difference_ci": str([round(difference.low, 3), round(difference.high, 3)]),
            "probabilistic_sharpe": dg.MetadataValue.float(psr),
            "deflated_sharpe": dg.MetadataValue.float(dsr),
            **{f"{n}_sharpe": dg.MetadataValue.float(m.sharpe) for n, m in metrics.items()},
            "fold_table": dg.MetadataValue.md(table.round(3).to_markdown(index=False)),
            "mlflow_run_id": run.info.run_id,
            **{f"plot_{name}": dg.MetadataValue.md(image) for name, image in plots.items()},
        },
    )
