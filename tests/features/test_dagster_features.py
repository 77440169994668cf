"""Through Dagster: dbt tests are asset checks, the mart reports statistics, raw checks block,
and dbt builds the warehouse resource's file, with artifacts outside the checkout."""

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
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
from orchestration.resources.dbt_cli import DBT_PROJECT_DIR, dbt_project
from orchestration.resources.warehouse import DuckDBWarehouse
from tests.support.warehouses import run_dbt, synthetic_raw, write_raw

pytestmark = pytest.mark.slow

REPO = Path(DBT_PROJECT_DIR).parent


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


def _features_job(defs: dg.Definitions) -> dg.JobDefinition:
    """The job of the raw asset and every dbt model (the ``ingestion`` and ``features`` groups)."""
    selection = dg.AssetSelection.groups("ingestion", "features")
    return dg.define_asset_job("features", selection=selection).resolve(
        asset_graph=defs.resolve_asset_graph()
    )


@dataclass(frozen=True)
class BuiltHome:
    """A PERPFOLIO_HOME whose warehouse the features job built from a two-symbol, ten-day
    synthetic market (one venue)."""

    home: Path
    """The folder that was PERPFOLIO_HOME during the run."""
    warehouse: Path
    """The warehouse resource's file, as the run's resources had it."""
    result: dg.ExecuteInProcessResult
    """The features job's result (materializations, checks, run id)."""


@pytest.fixture(scope="module")
def built_home(tmp_path_factory) -> BuiltHome:
    """One features-job run, shared read-only: tests that change its warehouse copy it first."""
    home = tmp_path_factory.mktemp("built-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PERPFOLIO_HOME", str(home))
        defs = _definitions(synthetic_raw(n_symbols=2, days=10, venues=("synthetic",)))
        result = _features_job(defs).execute_in_process(resources=defs.resources)
    assert result.success
    return BuiltHome(home, Path(defs.resources["warehouse"].path), result)


def _copy_warehouse(built: BuiltHome, home: Path) -> Path:
    """A copy of ``built``'s warehouse file (and its WAL, if any) as ``home``'s warehouse."""
    for suffix in ("", ".wal"):
        source = built.warehouse.with_name(built.warehouse.name + suffix)
        if source.exists():
            shutil.copy(source, home / source.name)
    return home / built.warehouse.name


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


def test_a_partition_run_passes_its_day_to_dbt_and_rebuilds_only_that_day(home, built_home):
    path = _copy_warehouse(built_home, home)  # every bar of the two symbols' ten days built
    resources = build_resources("test")
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


def test_features_materialize_with_statistics_and_passing_checks(home, built_home):
    graph = _definitions(synthetic_raw(n_symbols=1, days=1)).resolve_asset_graph()
    dbt_check = dg.AssetCheckKey(
        FEATURE_MART, "unique_key_columns_fct_features_venue__symbol__timeframe__ts"
    )
    assert dbt_check in graph.asset_check_keys
    result = built_home.result  # the features job on two symbols x ten days
    assert result.success
    [mart] = [
        e.materialization
        for e in result.get_asset_materialization_events()
        if e.asset_key == FEATURE_MART
    ]
    assert mart.metadata["rows_1h"].value == 2 * 240 and mart.metadata["rows_1d"].value == 20
    assert "basis_zscore" in mart.metadata["feature_summary"].value
    assert dbt_features.keys <= {e.asset_key for e in result.get_asset_materialization_events()}
    # dbt's artifacts for this run are in DBT_TARGET_PATH (a temporary folder), not the checkout.
    run = f"dbt_features-{result.run_id[:7]}-*"
    assert list(Path(os.environ["DBT_TARGET_PATH"]).glob(f"{run}/run_results.json"))
    assert not list(Path(DBT_PROJECT_DIR, "target").glob(run))
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
    assert "Failure in test not_null_stg_market__ohlcv_bar_minutes" in _message(failure)


def _message(failure: dg.DagsterEvent) -> str:
    error = failure.step_failure_data.error
    return f"{error.message}\n{failure.step_failure_data.user_failure_data}"


def test_a_failing_model_is_a_failed_step_naming_it_with_dbt_s_message(home):
    write_raw(home / "warehouse.duckdb", synthetic_raw(n_symbols=1, days=3, venues=("a",)))
    result = dg.materialize(
        [dbt_features],
        resources=build_resources("test"),
        run_config=dg.RunConfig({"dbt_features": FeatureBuildConfig(window_start="not a time")}),
        raise_on_error=False,
    )
    assert not result.success
    [failure] = result.get_step_failure_events()
    assert "in model int_bars_aligned" in _message(failure)
    assert "not a time" in _message(failure)
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert dg.AssetKey(["intermediate", "int_bars_aligned"]) not in materialized
    assert FEATURE_MART not in materialized


def test_dbt_builds_the_warehouse_of_each_perpfolio_home(home, built_home):
    # built_home: two symbols x ten days, built in its own PERPFOLIO_HOME by the same job; then
    # this test's home, one symbol x three days, in the same process.
    assert built_home.warehouse == built_home.home / "warehouse.duckdb"
    defs = _definitions(synthetic_raw(n_symbols=1, days=3, venues=("synthetic",)))
    assert Path(defs.resources["warehouse"].path) == home / "warehouse.duckdb"
    assert _features_job(defs).execute_in_process(resources=defs.resources).success
    for folder, n_symbols, days in ((home, 1, 3), (built_home.home, 2, 10)):
        with duckdb.connect(str(folder / "warehouse.duckdb"), read_only=True) as con:
            symbols, rows = con.execute(
                "SELECT count(DISTINCT symbol), count(*) FROM marts.fct_features "
                "WHERE timeframe = '1h'"
            ).fetchone()
        assert (symbols, rows) == (n_symbols, n_symbols * days * 24)


def test_a_warehouse_outside_perpfolio_home_fails_before_dbt_runs(home, tmp_path):
    elsewhere = tmp_path / "elsewhere" / "warehouse.duckdb"
    elsewhere.parent.mkdir()
    write_raw(elsewhere, synthetic_raw(n_symbols=1, days=3))
    resources = {**build_resources("test"), "warehouse": DuckDBWarehouse(path=str(elsewhere))}
    result = dg.materialize([dbt_features], resources=resources, raise_on_error=False)
    assert not result.success
    [failure] = result.get_step_failure_events()
    assert str(home / "warehouse.duckdb") in _message(failure)
    assert str(elsewhere) in _message(failure)
    assert not (home / "warehouse.duckdb").exists()
    with duckdb.connect(str(elsewhere), read_only=True) as con:
        assert con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'marts'"
        ).fetchone() == (0,)


def test_a_dbt_run_in_the_tests_leaves_the_checkout_s_manifest_alone(tmp_path):
    before = dbt_project.manifest_path.stat().st_mtime_ns
    path = tmp_path / "perturbed" / "warehouse.duckdb"
    path.parent.mkdir()
    write_raw(path, synthetic_raw(n_symbols=1, days=2))
    run_dbt(path, "run", "--select", "stg_market__ohlcv")
    assert (path.parent / "dbt-target" / "manifest.json").is_file()
    assert (path.parent / "dbt-target" / "dbt.log").is_file()
    assert dbt_project.manifest_path.stat().st_mtime_ns == before


BUILD_WITHOUT_THE_VENV = """
import sys
from pathlib import Path
import dagster as dg
import duckdb
from orchestration.definitions import defs
from orchestration.assets.features import FEATURE_MART, dbt_features
from orchestration.resources import build_resources
from tests.support.warehouses import synthetic_raw, write_raw
warehouse = Path(sys.argv[1]) / "warehouse.duckdb"
write_raw(warehouse, synthetic_raw(n_symbols=1, days=5))
assert dg.materialize([dbt_features], resources=build_resources("test")).success
with duckdb.connect(str(warehouse), read_only=True) as con:
    print(con.execute("SELECT count(*) FROM marts.fct_features").fetchone()[0])
print(defs.resolve_assets_def(FEATURE_MART).specs_by_key[FEATURE_MART].metadata["dagster/table_name"])
"""


def test_the_code_location_loads_and_builds_without_the_venv_on_path(home):
    """dbt is the one beside the interpreter, and the table Dagster shows is the warehouse's."""
    env = {
        "HOME": os.environ["HOME"],
        "PATH": "/usr/bin:/bin",
        "PERPFOLIO_HOME": str(home),
        "DBT_TARGET_PATH": str(home / "dbt-target"),
        "DBT_LOG_PATH": str(home / "dbt-target"),
        "DAGSTER_HOME": str(home),
        "DAGSTER_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", BUILD_WITHOUT_THE_VENV, str(home)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows, table = done.stdout.strip().splitlines()[-2:]
    assert int(rows) == 5 * 24 + 5
    assert table == "warehouse.marts.fct_features"
