"""Sensors: serve a new champion as soon as the registry alias moves."""

import dagster as dg

from orchestration.jobs import serving_job
from orchestration.resources.mlflow_registry import MlflowRegistry


@dg.sensor(job=serving_job, minimum_interval_seconds=60)
def new_champion_sensor(context: dg.SensorEvaluationContext, mlflow_registry: MlflowRegistry):
    """Request a serving run each time the champion alias moves to another version (the cursor
    holds the version last served). No run key: a rollback to a version served before is served
    again."""
    version = mlflow_registry.champion_version()
    if version is None:
        return dg.SkipReason("no champion yet")
    if context.cursor == version:
        return dg.SkipReason(f"champion v{version} already served")
    context.update_cursor(version)
    return dg.RunRequest(tags={"champion_version": version})
