"""Jobs: asset selections, and the op-based rollback of the champion."""

import dagster as dg

from orchestration.resources.mlflow_registry import MlflowRegistry, RollbackError

ingest_features_job = dg.define_asset_job(
    "ingest_features_job",
    selection=dg.AssetSelection.groups("ingestion", "features"),
    description="Ingest market data and rebuild features; quality checks run with them.",
)

retraining_job = dg.define_asset_job(
    "retraining_job",
    selection=dg.AssetSelection.groups(
        "ingestion", "features", "training", "evaluation", "promotion"
    ),
    description="Fresh data and features, then train, evaluate and (if the gate passes) promote.",
)

serving_job = dg.define_asset_job(
    "serving_job",
    selection=dg.AssetSelection.groups("serving"),
    description="One serving cycle of the champion on the bars already in the feature mart: "
    "fills of the previous decision, the observation of the paper account, the safety layer, "
    "the orders (run on demand, by the new-champion sensor, and by the demo).",
)

serving_cycle_job = dg.define_asset_job(
    "serving_cycle_job",
    selection=dg.AssetSelection.groups("ingestion", "features", "serving"),
    description="The serving cycle of a new bar: incremental ingestion, incremental features "
    "(with their quality checks), then one serving cycle of the champion.",
)


walk_forward_job = dg.define_asset_job(
    "walk_forward_job",
    selection=dg.AssetSelection.assets("walk_forward_fold"),
    description="One walk-forward fold per partition: a fresh policy trained on the fold's train "
    "bars, it and every baseline backtested on its test window. Launch every partition (a "
    "backfill), then walk_forward_report_job.",
)

walk_forward_report_job = dg.define_asset_job(
    "walk_forward_report_job",
    selection=dg.AssetSelection.assets("walk_forward_report"),
    description="Stitch the folds' test ledgers into one out-of-sample curve per strategy, with "
    "metrics, statistics and the tear sheet.",
)

paper_sweep_job = dg.define_asset_job(
    "paper_sweep_job",
    selection=dg.AssetSelection.assets("training_sweep"),
    description="One training sweep point per partition (<algorithm>-<timeframe>-seed<n>): the "
    "cpts preset trained and backtested at that timeframe. Chun & Lee's experiment is a backfill "
    "over the A2C partitions of the timeframes the feature mart holds; then sweep_report_job.",
)

sweep_report_job = dg.define_asset_job(
    "sweep_report_job",
    selection=dg.AssetSelection.assets("training_sweep_report"),
    description="Tabulate the materialized sweep partitions beside Chun & Lee (2025) and run the "
    "ANOVA across timeframes and the high- vs low-frequency t-test on the per-symbol RORs.",
)


class RollbackConfig(dg.Config):
    """Who rolls the champion back and why (both recorded on the registry versions)."""

    by: str
    """Who asked for the rollback."""
    reason: str
    """Why the champion is rolled back."""


@dg.op(description="Move @champion back to @previous and record who, why and when.")
def rollback_champion(
    context: dg.OpExecutionContext, config: RollbackConfig, mlflow_registry: MlflowRegistry
) -> dg.Output[dict]:
    """The registry's rollback, reported as a ``champion_model`` observation too."""
    try:
        demoted, restored = mlflow_registry.rollback(config.by, config.reason)
    except (RollbackError, ValueError) as err:
        raise dg.Failure(description=str(err)) from err
    record = {"from_version": demoted, "to_version": restored, **config.model_dump()}
    context.log_event(
        dg.AssetObservation(
            asset_key="champion_model",
            metadata={
                "rolled_back_from": demoted,
                "champion_version": restored,
                "by": config.by,
                "reason": config.reason,
            },
        )
    )
    return dg.Output(record, metadata={k: str(v) for k, v in record.items()})


@dg.job(description="Roll the champion back to the version it replaced (config: by, reason).")
def rollback_job() -> None:
    rollback_champion()
