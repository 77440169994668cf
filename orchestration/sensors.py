"""Sensors: serve a new champion as soon as the registry alias moves."""

import dagster as dg

from orchestration.jobs import serving_job
from orchestration.resources.mlflow_registry import MlflowRegistry


@dg.sensor(job=serving_job, minimum_interval_seconds=60)
def new_champion_sensor(context: dg.SensorEvaluationContext, mlflow_registry: MlflowRegistry):
    """Request a serving run once per new champion version (the cursor holds the last one)."""
    champion = mlflow_registry.champion()
    if champion is None:
        return dg.SkipReason("no champion yet")
    if context.cursor == champion.version:
        return dg.SkipReason(f"champion v{champion.version} already served")
    context.update_cursor(champion.version)
    return dg.RunRequest(
        run_key=f"champion-v{champion.version}", tags={"champion_version": champion.version}
    )
