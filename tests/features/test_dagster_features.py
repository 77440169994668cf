"""Through Dagster: dbt tests are asset checks, the mart reports statistics, raw checks block."""

from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from orchestration.assets.features import (
    FEATURE_MART,
    FeatureBuildConfig,
    dbt_build_args,
    dbt_features,
)
from orchestration.assets.ingestion import DAILY
from orchestration.assets.training import trained_policy
from orchestration.checks import QUALITY_CHECKS, RAW_FUNDING, RAW_OHLCV
from orchestration.resources import build_resources
from orchestration.resources.warehouse import DuckDBWarehouse
from tests.support.warehouses import synthetic_raw, write_raw

pytestmark = pytest.mark.slow


def _definitions(frames: dict) -> dg.Definitions:
    """The feature and training assets behind a raw asset that writes ``frames``."""

    @dg.multi_asset(
        specs=[dg.AssetSpec(RAW_OHLCV), dg.AssetSpec(RAW_FUNDING)], group_name="ingestion"
    )
    def raw_market_data(warehouse: DuckDBWarehouse):
        write_raw(Path(warehouse.path), frames)
        yield dg.MaterializeResult(asset_key=RAW_OHLCV)
        yield dg.MaterializeResult(asset_key=RAW_FUNDING)

    return dg.Definitions(
        assets=[raw_market_data, dbt_features, trained_policy],
        asset_checks=QUALITY_CHECKS,
        resources=build_resources("test"),
        executor=dg.in_process_executor,
    )


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PERPFOLIO_HOME", str(tmp_path))
    return tmp_path


def test_dbt_build_args_pass_the_window_as_vars():
    config = FeatureBuildConfig(window_start="2024-01-02", full_refresh=True)
    assert dbt_build_args(config) == [
        "build",
        "--exclude-resource-type",
        "unit_test",
        "--vars",
        '{"window_start": "2024-01-02"}',
        "--full-refresh",
    ]


def test_a_partition_run_passes_its_day_to_dbt_and_rebuilds_only_that_day(home):
    path = home / "warehouse.duckdb"
    write_raw(path, synthetic_raw(n_symbols=2, days=10, venues=("synthetic",)))
    resources = build_resources("test")
    assert dg.materialize([dbt_features], resources=resources).success
    with duckdb.connect(str(path)) as con:  # move every perp price from Jan 5 on up by 10%
        con.execute(
            "UPDATE raw.ohlcv SET open = open * 1.1, high = high * 1.1, low = low * 1.1, "
            "close = close * 1.1 WHERE market = 'perp' AND ts >= '2024-01-05'"
        )

    @dg.multi_asset(
        specs=[dg.AssetSpec(RAW_OHLCV), dg.AssetSpec(RAW_FUNDING)],
        group_name="ingestion",
        partitions_def=DAILY,
    )
    def raw_market_data():
        yield dg.MaterializeResult(asset_key=RAW_OHLCV)
        yield dg.MaterializeResult(asset_key=RAW_FUNDING)

    defs = dg.Definitions(assets=[raw_market_data, dbt_features], resources=resources)
    job = dg.define_asset_job("day", selection=dg.AssetSelection.all()).resolve(
        asset_graph=defs.resolve_asset_graph()
    )
    result = job.execute_in_process(partition_key="2024-01-05", resources=resources)
    assert result.success
    with duckdb.connect(str(path), read_only=True) as con:
        rebuilt = con.execute(
            "SELECT f.ts::DATE::VARCHAR AS day, count(*), "
            "count(*) FILTER (WHERE abs(f.close / r.close - 1) < 1e-12) "
            "FROM marts.fct_features f JOIN raw.ohlcv r "
            "ON r.venue = f.venue AND r.symbol = f.symbol AND r.ts = f.ts "
            "AND r.timeframe = '1h' AND r.market = 'perp' "
            "WHERE f.timeframe = '1h' GROUP BY ALL ORDER BY day"
        ).fetchall()
    by_day = {day: (bars, current) for day, bars, current in rebuilt}
    assert by_day["2024-01-05"] == (48, 48)  # the partition's bars carry the new prices
    assert by_day["2024-01-04"] == (48, 48)  # untouched before it
    assert by_day["2024-01-06"] == (48, 0)  # and not rebuilt after it


def test_features_materialize_with_statistics_and_passing_checks(home):
    frames = synthetic_raw(n_symbols=2, days=10, venues=("synthetic",))
    defs = _definitions(frames)
    graph = defs.resolve_asset_graph()
    dbt_check = dg.AssetCheckKey(
        FEATURE_MART, "unique_key_columns_fct_features_venue__symbol__timeframe__ts"
    )
    assert dbt_check in graph.asset_check_keys
    selection = dg.AssetSelection.groups("ingestion", "features")
    job = dg.define_asset_job("features", selection=selection).resolve(asset_graph=graph)
    result = job.execute_in_process(resources=defs.resources)
    assert result.success
    [mart] = [
        e.materialization
        for e in result.get_asset_materialization_events()
        if e.asset_key == FEATURE_MART
    ]
    assert mart.metadata["rows_1h"].value == 2 * 240 and mart.metadata["rows_1d"].value == 20
    assert "basis_zscore" in mart.metadata["feature_summary"].value
    checks = {c.asset_check_key.name: c for c in result.get_asset_check_evaluations()}
    assert checks["unique_key_columns_fct_features_venue__symbol__timeframe__ts"].passed
    for name in ("raw_ohlcv", "raw_funding", "feature_mart"):
        check = checks[f"{name}_expectations_check"]
        assert check.passed
        report = Path(check.metadata["report"].value)
        assert report.is_file() and "passed" in report.read_text()


def test_a_failing_raw_check_stops_features_and_training(home):
    frames = synthetic_raw(n_symbols=2, days=10, venues=("synthetic",))
    funding = frames["funding_rates"]
    funding.loc[
        (funding.symbol == "BTC") & (funding.ts == pd.Timestamp("2024-01-05 16:00")), "funding_rate"
    ] = 0.05
    defs = _definitions(frames)
    job = dg.define_asset_job("all", selection=dg.AssetSelection.all()).resolve(
        asset_graph=defs.resolve_asset_graph()
    )
    result = job.execute_in_process(resources=defs.resources, raise_on_error=False)
    checks = {c.asset_check_key.name: c for c in result.get_asset_check_evaluations()}
    failed = checks["raw_funding_expectations_check"]
    assert not failed.passed
    assert "funding_rate_8h" in failed.description
    assert "symbol=BTC, ts=2024-01-05 16:00:00" in failed.description
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert RAW_FUNDING in materialized
    assert FEATURE_MART not in materialized and dg.AssetKey("trained_policy") not in materialized


def test_a_failing_dbt_test_is_a_failed_check_and_stops_the_build(home):
    frames = synthetic_raw(n_symbols=2, days=10, venues=("synthetic",))
    ohlcv = frames["ohlcv"]
    odd = ohlcv[(ohlcv.market == "perp") & (ohlcv.symbol == "BTC")].head(3).assign(timeframe="7m")
    write_raw(home / "warehouse.duckdb", {**frames, "ohlcv": pd.concat([ohlcv, odd])})
    result = dg.materialize([dbt_features], resources=build_resources("test"), raise_on_error=False)
    assert not result.success
    checks = {c.asset_check_key.name: c for c in result.get_asset_check_evaluations()}
    assert not checks["not_null_stg_market__ohlcv_bar_minutes"].passed
    assert checks["accepted_values_stg_market__ohlcv_market__perp__spot__mark__index"].passed
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert dg.AssetKey(["staging", "stg_market__ohlcv"]) in materialized
    assert FEATURE_MART not in materialized
    [failure] = result.get_step_failure_events()
    message = failure.step_failure_data.error.message
    assert "test.perpfolio.not_null_stg_market__ohlcv_bar_minutes" in message
