"""Sensors: serve a new champion as soon as the registry alias moves."""

import dagster as dg

from orchestration.jobs import serving_job
from orchestration.resources.mlflow_registry import MlflowRegistry


@dg.sensor(job=serving_job, minimum_interval_seconds=60)
def new_champion_sensor(context: dg.SensorEvaluationContext, mlflow_registry: MlflowRegistry):
    """Request a serving run once per new champion version (the cursor holds the last one)."""
    version = mlflow_registry.champion_version()
    if version is None:
        return dg.SkipReason("no champion yet")
    if context.cursor == version:
        return dg.SkipReason(f"champion v{version} already served")
    context.update_cursor(version)
    return dg.RunRequest(run_key=f"champion-v{version}", tags={"champion_version": version})
