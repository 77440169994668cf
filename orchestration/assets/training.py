"""Training: fit an agent on the in-sample bars and register it in MLflow."""

from dataclasses import replace

import dagster as dg
import mlflow

from evaluation.walkforward import Fold, feature_lookback_bars, make_folds
from orchestration.assets.features import FEATURE_MART
from orchestration.resources.market_source import MarketSource
from orchestration.resources.mlflow_registry import MlflowRegistry
from orchestration.resources.settings import TrainingSettings, WalkForwardSettings
from orchestration.resources.warehouse import DuckDBWarehouse
from training.config import TrainConfig
from training.data import load_market
from training.policy_model import PolicySpec, log_policy
from training.train import train_end_timestamp, train_policy


def single_split(n_bars: int, config: TrainConfig, walk_forward: WalkForwardSettings) -> Fold:
    """The one-fold walk-forward split: train, the purge gap, then the trailing
    ``config.test_fraction`` of the bars out of sample (no validation window)."""
    folds_config = replace(
        walk_forward.walk_forward_config(1), test_fraction=config.test_fraction, validation_bars=0
    )
    folds_config.check_purge(config.env.window, feature_lookback_bars(config.timeframe))
    return make_folds(n_bars, folds_config)[0]


@dg.asset(group_name="training", deps=[FEATURE_MART], kinds={"pytorch", "mlflow"})
def trained_policy(
    context: dg.AssetExecutionContext,
    warehouse: DuckDBWarehouse,
    market_source: MarketSource,
    training: TrainingSettings,
    mlflow_registry: MlflowRegistry,
    walk_forward: WalkForwardSettings,
) -> dg.Output[dict]:
    """A new policy version, trained on the bars before the out-of-sample window and its purge
    gap (the one-fold walk-forward split), on the venue and symbols of the market source's
    configuration."""
    config = training.train_config(venue=market_source.venue)
    symbols = market_source.universe()
    market = load_market(
        warehouse.path, config.venue, config.timeframe, config.feature_columns, symbols=symbols
    )
    fold = single_split(market.n_bars, config, walk_forward)
    train_market = market.slice(*fold.train)
    cut = fold.train[1]
    experiment_id = mlflow_registry.activate()
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"train-{config.algorithm}") as run:
        mlflow.set_tags({"dagster_run_id": context.run.run_id, "stage": "training"})
        mlflow.log_params({**config.as_params(), "symbols": ",".join(symbols)})
        trained = train_policy(train_market, config)
        mlflow.log_metrics({"train_seconds": trained.train_seconds, "train_bars": cut})
        spec = PolicySpec(
            algorithm=config.algorithm,
            symbols=market.symbols,
            venue=config.venue,
            timeframe=config.timeframe,
            env_config=config.env,
            builder=trained.builder,
            train_end=train_end_timestamp(train_market),
        )
        version = log_policy(trained.algorithm, spec, mlflow_registry.model_name)
    summary = {
        "model_name": mlflow_registry.model_name,
        "version": str(version.version),
        "run_id": run.info.run_id,
        "train_end": spec.train_end,
        "test_start": str(market.timestamps[fold.test[0]]),
        "algorithm": config.algorithm,
        "total_timesteps": config.total_timesteps,
        "train_seconds": trained.train_seconds,
        "venue": spec.venue,
        "symbols": list(spec.symbols),
    }
    return dg.Output(
        summary,
        metadata={
            **summary,
            "symbols": ", ".join(spec.symbols),
            "train_bars": cut,
            "purge_bars": fold.test[0] - cut,
            "test_bars": fold.test[1] - fold.test[0],
            "bars_loaded": market.n_bars,
            "first_bar": str(market.timestamps[0]),
            "last_bar": str(market.timestamps[-1]),
            "filled_asset_bars": int((~market.tradable).sum()),
            "train_seconds": round(trained.train_seconds, 1),
        },
    )
