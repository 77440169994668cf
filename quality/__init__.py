"""Great Expectations suites over frames read from DuckDB (no Dagster imports here)."""
