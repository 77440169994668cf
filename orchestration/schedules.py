"""Cron schedules (UTC)."""

import dagster as dg

from orchestration.jobs import ingest_features_job, retraining_job, serving_cycle_job

hourly_ingestion_schedule = dg.ScheduleDefinition(
    name="hourly_ingestion_schedule",
    job=ingest_features_job,
    cron_schedule="5 * * * *",
    execution_timezone="UTC",
    description="Five minutes past every hour: ingest the closed bar and rebuild features.",
)

weekly_retraining_schedule = dg.ScheduleDefinition(
    name="weekly_retraining_schedule",
    job=retraining_job,
    cron_schedule="0 3 * * 1",
    execution_timezone="UTC",
    description="Mondays 03:00 UTC: retrain, evaluate out of sample, promote if the gate passes.",
)

hourly_serving_schedule = dg.ScheduleDefinition(
    name="hourly_serving_schedule",
    job=serving_cycle_job,
    cron_schedule="2 * * * *",
    execution_timezone="UTC",
    description="Two minutes past every hour: ingest the closed bar, update the features, then "
    "serve the champion on the paper account (fills of the last decision, new orders). Turn on "
    "this one or hourly_ingestion_schedule, not both.",
)
