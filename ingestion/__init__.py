"""Market-data sources and the raw warehouse schema they write (no Dagster imports here)."""
