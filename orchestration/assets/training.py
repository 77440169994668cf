"""Training: fit an agent on the in-sample bars and register it in MLflow."""

from dataclasses import replace

import dagster as dg
import mlflow
import numpy as np

from evaluation.walkforward import (
    Fold,
    feature_lookback_bars,
    make_folds,
    validation_bars,
    validation_scorer,
)
from orchestration.assets.features import FEATURE_MART
from orchestration.resources.dbt_cli import dbt_project
from orchestration.resources.market_source import MarketSource
from orchestration.resources.mlflow_registry import MlflowRegistry
from orchestration.resources.settings import TrainingRun, TrainingSettings, WalkForwardSettings
from orchestration.resources.warehouse import DuckDBWarehouse
from training.config import TrainConfig
from training.data import load_market
from training.lineage import file_hash, git_commit, market_hash
from training.market import MarketData
from training.policy_model import PolicySpec, log_policy
from training.train import TrainedPolicy, train_end_timestamp, train_policy


def training_symbols(config: TrainConfig, market_source: MarketSource) -> tuple[str, ...]:
    """The config's symbols (all of them in the market source's universe), else the universe."""
    universe = market_source.universe()
    if config.symbols is None:
        return universe
    missing = [s for s in config.symbols if s not in universe]
    if missing:
        raise ValueError(
            f"training symbols {', '.join(missing)} are not in the market source's universe "
            f"({', '.join(universe)}): configure the market source's symbols or the config's"
        )
    return config.symbols


def training_market(
    warehouse: DuckDBWarehouse, market_source: MarketSource, config: TrainConfig
) -> MarketData:
    """The feature mart at the config's venue and timeframe, of training_symbols."""
    return load_market(
        warehouse.path,
        config.venue,
        config.timeframe,
        config.feature_columns,
        symbols=training_symbols(config, market_source),
    )


def lineage(config: TrainConfig, train_market: MarketData) -> dict[str, str]:
    """What a policy came from, as MLflow tags: data window and hash, universe, algorithm,
    timeframe, the dbt manifest's hash and the code's commit."""
    stamps = train_market.timestamps
    return {
        "algorithm": config.algorithm,
        "timeframe": config.timeframe,
        "venue": config.venue,
        "universe": ",".join(train_market.symbols),
        "data_hash": market_hash(train_market),
        "train_start": str(np.datetime_as_string(stamps[0], unit="s")),
        "train_end": str(np.datetime_as_string(stamps[-1], unit="s")),
        "train_rows": str(train_market.n_bars),
        "dbt_manifest_hash": file_hash(dbt_project.manifest_path) or "missing",
        "git_commit": git_commit(),
    }


def log_training(config: TrainConfig, trained: TrainedPolicy, tags: dict[str, str]) -> None:
    """Log a training run to the active MLflow run: the config as YAML, its flat parameters (with
    the symbols trained on), the feature list, the lineage tags and the learning curves (one
    metric point per logged step)."""
    mlflow.log_params({**config.as_params(), "symbols": tags["universe"]})
    mlflow.set_tags({f"lineage.{k}": v for k, v in tags.items()})
    mlflow.log_text(config.to_yaml(), "config.yaml")
    mlflow.log_text("\n".join(config.feature_columns) + "\n", "features.txt")
    run = mlflow.active_run()
    assert run is not None
    points = [
        mlflow.entities.Metric(key.replace("/", "."), value, 0, step)
        for key, curve in trained.curves.items()
        for step, value in curve
    ]
    client = mlflow.MlflowClient()
    for start in range(0, len(points), 1_000):  # MLflow's batch limit
        client.log_batch(run.info.run_id, metrics=points[start : start + 1_000])
    metrics = {"train_seconds": trained.train_seconds}
    if trained.best_timesteps is not None:
        metrics["best_checkpoint_timesteps"] = trained.best_timesteps
    mlflow.log_metrics(metrics)


def single_split(n_bars: int, config: TrainConfig, walk_forward: WalkForwardSettings) -> Fold:
    """The one-fold walk-forward split: train, the purge gap, then the trailing
    ``config.test_fraction`` of the bars out of sample; when the config validates
    (``validation_every``), a 60-day validation window and a second purge gap sit between
    train and test, as in the walk-forward folds."""
    validation = validation_bars(config.timeframe) if config.validation_every > 0 else 0
    folds_config = replace(
        walk_forward.walk_forward_config(1),
        test_fraction=config.test_fraction,
        validation_bars=validation,
    )
    folds_config.check_purge(config.env.window, feature_lookback_bars(config.timeframe))
    return make_folds(n_bars, folds_config)[0]


@dg.asset(
    group_name="training", deps=[FEATURE_MART, "day_one_champion"], kinds={"pytorch", "mlflow"}
)
def trained_policy(
    context: dg.AssetExecutionContext,
    config: TrainingRun,
    warehouse: DuckDBWarehouse,
    market_source: MarketSource,
    training: TrainingSettings,
    mlflow_registry: MlflowRegistry,
    walk_forward: WalkForwardSettings,
) -> dg.Output[dict]:
    """A new policy version, trained on the bars before the out-of-sample window and its purge
    gap (the one-fold walk-forward split), on the venue and symbols of the market source's
    configuration (or the config's own symbols among them). The run config picks a preset and
    overrides any ``TrainConfig`` field."""
    train_config = training.train_config(venue=market_source.venue, run=config)
    market = training_market(warehouse, market_source, train_config)
    fold = single_split(market.n_bars, train_config, walk_forward)
    train_market = market.slice(*fold.train)
    cut = fold.train[1]
    tags = lineage(train_config, train_market)
    experiment_id = mlflow_registry.activate()
    run_name = f"train-{train_config.algorithm}-{train_config.timeframe}-seed{train_config.seed}"
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
        mlflow.set_tags({"dagster_run_id": context.run.run_id, "stage": "training"})
        validate = (
            validation_scorer(market, fold.validation, train_config)
            if fold.validation is not None
            else None
        )
        trained = train_policy(train_market, train_config, validate)
        log_training(train_config, trained, tags)
        mlflow.log_metrics({"train_bars": cut})
        spec = PolicySpec(
            algorithm=train_config.algorithm,
            symbols=market.symbols,
            venue=train_config.venue,
            timeframe=train_config.timeframe,
            env_config=train_config.env,
            builder=trained.builder,
            train_end=train_end_timestamp(train_market),
        )
        version = log_policy(
            trained.algorithm, spec, mlflow_registry.model_name, scaling=trained.scaling
        )
        client = mlflow.MlflowClient()
        for key, value in tags.items():
            client.set_model_version_tag(mlflow_registry.model_name, version.version, key, value)
    summary = {
        "model_name": mlflow_registry.model_name,
        "version": str(version.version),
        "run_id": run.info.run_id,
        "train_end": spec.train_end,
        "test_start": str(market.timestamps[fold.test[0]]),
        "algorithm": train_config.algorithm,
        "total_timesteps": train_config.total_timesteps,
        "train_seconds": trained.train_seconds,
        "trained_timesteps": int(trained.algorithm.num_timesteps),
        "best_timesteps": trained.best_timesteps,
        "venue": spec.venue,
        "symbols": list(spec.symbols),
    }
    return dg.Output(
        summary,
        metadata={
            **summary,
            "symbols": ", ".join(spec.symbols),
            "train_bars": cut,
            "validation_bars": 0
            if fold.validation is None
            else fold.validation[1] - fold.validation[0],
            "purge_bars": (fold.validation or fold.test)[0] - cut,
            "test_bars": fold.test[1] - fold.test[0],
            "bars_loaded": market.n_bars,
            "first_bar": str(market.timestamps[0]),
            "last_bar": str(market.timestamps[-1]),
            "filled_asset_bars": int((~market.tradable).sum()),
            "train_seconds": round(trained.train_seconds, 1),
        },
    )
