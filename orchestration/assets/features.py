"""Features: the dbt project (staging -> intermediate -> marts) as Dagster assets.

dbt data tests appear as asset checks of the models they test; the feature mart's
materialization carries row counts per timeframe and summary statistics of its features.

A run for one of the ingestion assets' daily partitions, or for a range of them (a single-run
backfill), passes its UTC window to dbt as the ``window_start``/``window_end`` vars, so dbt
rebuilds exactly the bars opening in it. A run without a partition builds every bar after the
stored ones (or the window given in the run config). The models themselves are not
partitioned: training reads the whole mart, and dbt's tests, reported as asset checks, cover
the whole tables.

The manifest is dbt's ``target/manifest.json``: ``dagster dev`` re-parses the project on load
(``prepare_if_dev``), ``make`` parses it when the project changes, and a checkout without one
(a fresh clone) parses it on first load.
"""

import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    dbt_assets,
)

from orchestration.assets.ingestion import DAILY
from orchestration.resources.dbt_cli import dbt_project, dbt_warehouse_path, parse_dbt_project
from orchestration.resources.warehouse import DuckDBWarehouse

FEATURE_MART = dg.AssetKey(["marts", "fct_features"])
RAW_OHLCV = dg.AssetKey(["raw", "ohlcv"])
SUMMARY_FEATURES = (
    "basis",
    "basis_zscore",
    "basis_velocity_1",
    "log_return_1",
    "realized_vol",
    "volume_zscore",
    "mark_spread",
    "last_funding_rate",
    "funding_zscore",
    "order_book_imbalance",
    "basis_dispersion_std",
)

dbt_project.prepare_if_dev()
if not dbt_project.manifest_path.exists():
    parse_dbt_project()


def _produced_raw_keys() -> set[dg.AssetKey]:
    """Raw asset keys that an ingestion asset materializes."""
    from orchestration.assets import ingestion

    return {
        key
        for value in vars(ingestion).values()
        if isinstance(value, dg.AssetsDefinition)
        for key in value.keys
    }


class FeatureTranslator(DagsterDbtTranslator):
    """Every dbt model lands in the ``features`` group; sources map to the raw assets.

    A raw table no ingestion asset materializes yet (optional tables) is attributed to
    ``raw/ohlcv``, whose asset creates every raw table.
    """

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        key = super().get_asset_key(dbt_resource_props)
        if dbt_resource_props["resource_type"] == "source" and key not in _produced_raw_keys():
            return RAW_OHLCV
        return key

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "features"


class FeatureBuildConfig(dg.Config):
    """Which bars to (re)build in a run without a partition; by default every bar after the
    existing ones. A partitioned run takes its window from the partition instead."""

    window_start: str | None = None
    """First bar open time to rebuild (UTC, e.g. ``2024-01-02``), passed to dbt as a var."""
    window_end: str | None = None
    """Bar open time to stop before."""
    full_refresh: bool = False
    """Rebuild the incremental tables from scratch (after backfills or new symbols)."""


def build_window(
    context: dg.AssetExecutionContext, config: FeatureBuildConfig
) -> FeatureBuildConfig:
    """``config`` with the UTC window of the run's daily partition (or range), if it has one."""
    if not (context.has_partition_key or context.has_partition_key_range):
        return config
    keys = context.partition_key_range
    start, end = (
        pd.Timestamp(t).tz_convert("UTC").strftime("%Y-%m-%d %H:%M:%S")
        for t in (
            DAILY.time_window_for_partition_key(keys.start).start,
            DAILY.time_window_for_partition_key(keys.end).end,
        )
    )
    return config.model_copy(update={"window_start": start, "window_end": end})


def dbt_build_args(config: FeatureBuildConfig) -> list[str]:
    """The ``dbt build`` arguments for ``config``: models and data tests. The unit tests check the
    SQL, not the data, so they run where the SQL changes (``make test``), as dbt advises, not on
    every scheduled build."""
    args = ["build", "--exclude-resource-type", "unit_test"]
    window = {"window_start": config.window_start, "window_end": config.window_end}
    window = {k: v for k, v in window.items() if v}
    if window:
        args += ["--vars", json.dumps(window)]
    if config.full_refresh:
        args.append("--full-refresh")
    return args


def feature_summary(warehouse: DuckDBWarehouse) -> dict[str, Any]:
    """Row counts per timeframe and summary statistics of the main features."""
    stats = ", ".join(
        f"avg({c}), stddev_samp({c}), min({c}), max({c}), count({c})" for c in SUMMARY_FEATURES
    )
    with warehouse.connect(read_only=True) as con:
        rows = con.execute(
            f"SELECT timeframe, count(*), min(ts), max(ts), {stats} "
            "FROM marts.fct_features GROUP BY timeframe ORDER BY timeframe"
        ).fetchall()
    metadata: dict[str, Any] = {"rows": sum(r[1] for r in rows)}
    lines = ["| timeframe | feature | mean | std | min | max | non-null |", "|---" * 7 + "|"]
    for row in rows:
        timeframe, count, first, last = row[:4]
        metadata[f"rows_{timeframe}"] = count
        metadata[f"span_{timeframe}"] = f"{first} .. {last}"
        for i, name in enumerate(SUMMARY_FEATURES):
            mean, std, lo, hi, n = row[4 + 5 * i : 9 + 5 * i]
            cells = " | ".join("" if v is None else f"{v:.4g}" for v in (mean, std, lo, hi))
            lines.append(f"| {timeframe} | {name} | {cells} | {n / max(count, 1):.0%} |")
    metadata["feature_summary"] = dg.MetadataValue.md("\n".join(lines))
    return metadata


def check_same_warehouse(warehouse: DuckDBWarehouse) -> None:
    """Fail unless dbt builds into the warehouse resource's file."""
    built_by_dbt = dbt_warehouse_path()
    if Path(warehouse.path).resolve() != built_by_dbt:
        raise dg.Failure(
            f"dbt builds into {built_by_dbt} ($PERPFOLIO_HOME/warehouse.duckdb, "
            f"dbt_project/profiles.yml), not the warehouse resource's {warehouse.path}: set "
            "PERPFOLIO_HOME to the warehouse's folder"
        )


def with_feature_summary(
    context: dg.AssetExecutionContext, events: Iterable[Any], warehouse: DuckDBWarehouse
) -> Iterator[Any]:
    """dbt's Dagster events, the mart's output with ``feature_summary`` in its metadata.

    The mart's output and the events after it wait until dbt has finished: dbt holds the
    warehouse file until its process exits."""
    held: list[Any] = []
    for event in events:
        if held or (
            isinstance(event, dg.Output)
            and context.asset_key_for_output(event.output_name) == FEATURE_MART
        ):
            held.append(event)
        else:
            yield event
    if held:
        mart, *after = held
        yield mart.with_metadata({**mart.metadata, **feature_summary(warehouse)})
        yield from after


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    dagster_dbt_translator=FeatureTranslator(
        settings=DagsterDbtTranslatorSettings(enable_duplicate_source_asset_keys=True)
    ),
)
def dbt_features(
    context: dg.AssetExecutionContext,
    config: FeatureBuildConfig,
    dbt: DbtCliResource,
    warehouse: DuckDBWarehouse,
) -> Iterator[Any]:
    """Build and test the dbt models in the warehouse file."""
    check_same_warehouse(warehouse)
    args = dbt_build_args(build_window(context, config))
    invocation = dbt.cli(args, context=context, raise_on_error=False)
    yield from with_feature_summary(context, invocation.stream(), warehouse)
    error = invocation.get_error()
    if error is not None:
        raise error
