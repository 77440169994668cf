"""Jobs are asset selections."""

import dagster as dg

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
    description="Serve the champion: latest observation -> clamped target weights in DuckDB.",
)
