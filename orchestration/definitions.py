"""The perpfolio code location: one ``defs``."""

import dagster as dg

from orchestration.assets.evaluation import policy_evaluation
from orchestration.assets.features import dbt_features
from orchestration.assets.ingestion import raw_market_data
from orchestration.assets.promotion import champion_model, day_one_champion
from orchestration.assets.serving import serving_cycle, serving_feature_drift
from orchestration.assets.sweep import training_sweep, training_sweep_report
from orchestration.assets.training import trained_policy
from orchestration.assets.walk_forward import walk_forward_fold, walk_forward_report
from orchestration.checks import QUALITY_CHECKS
from orchestration.jobs import (
    ingest_features_job,
    paper_sweep_job,
    retraining_job,
    rollback_job,
    serving_cycle_job,
    serving_job,
    sweep_report_job,
    walk_forward_job,
    walk_forward_report_job,
)
from orchestration.resources import build_resources
from orchestration.schedules import (
    hourly_ingestion_schedule,
    hourly_serving_schedule,
    weekly_retraining_schedule,
)
from orchestration.sensors import new_champion_sensor

ASSETS = [
    raw_market_data,
    dbt_features,
    trained_policy,
    policy_evaluation,
    day_one_champion,
    champion_model,
    serving_cycle,
    walk_forward_fold,
    walk_forward_report,
    training_sweep,
    training_sweep_report,
]
JOBS = [
    ingest_features_job,
    retraining_job,
    serving_job,
    serving_cycle_job,
    walk_forward_job,
    walk_forward_report_job,
    paper_sweep_job,
    sweep_report_job,
    rollback_job,
]


def build_definitions(
    environment: str | None = None, resources: dict[str, object] | None = None
) -> dg.Definitions:
    """The definitions with the resources of ``environment`` (see ``build_resources``).

    ``resources`` replaces individual resources, e.g. a different market source.
    """
    return dg.Definitions(
        assets=ASSETS,
        asset_checks=[*QUALITY_CHECKS, serving_feature_drift],
        jobs=JOBS,
        schedules=[hourly_ingestion_schedule, hourly_serving_schedule, weekly_retraining_schedule],
        sensors=[new_champion_sensor],
        resources={**build_resources(environment), **(resources or {})},
        executor=dg.in_process_executor,
    )


defs = build_definitions()
