"""The whole asset graph, materialized in process on the tiny `test` configuration."""

import dagster as dg
import duckdb
import mlflow
import numpy as np
import pytest

from evaluation.gate import decide_promotion
from evaluation.metrics import PerformanceMetrics
from ingestion.warehouse import row_counts
from orchestration.assets.promotion import champion_model
from orchestration.definitions import build_definitions
from orchestration.project import CHAMPION_ALIAS, MODEL_NAME, ProjectPaths
from orchestration.resources.settings import PromotionGateSettings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def defs(project_home):
    return build_definitions("test")


@pytest.fixture(scope="module")
def retrain(defs):
    return defs.resolve_job_def("retraining_job").execute_in_process(raise_on_error=False)


@pytest.fixture(scope="module")
def registry(defs):
    resource = defs.resources["mlflow_registry"]
    return resource, resource.client()


def _warehouse_counts(defs):
    with defs.resources["warehouse"].connect(read_only=True) as con:
        return row_counts(con)


def test_retraining_materializes_every_stage_and_passes_checks(retrain):
    assert retrain.success
    materialized = {
        e.asset_key.to_user_string() for e in retrain.get_asset_materialization_events()
    }
    assert {
        "raw/ohlcv",
        "raw/funding_rates",
        "marts/fct_features",
        "trained_policy",
        "policy_evaluation",
        "champion_model",
    } <= materialized
    checks = retrain.get_asset_check_evaluations()
    assert any(c.asset_check_key.name == "feature_mart_expectations_check" for c in checks)
    assert all(c.passed for c in checks)


def test_state_lives_under_the_project_folder(retrain, project_home):
    paths = ProjectPaths.from_env()
    assert paths.home == project_home.resolve()
    assert paths.warehouse.exists()
    assert (paths.mlflow_dir / "mlflow.db").exists()
    assert any(paths.mlflow_artifacts.rglob("policy.zip"))


def test_policy_version_is_registered_with_params_and_oos_metrics(retrain, registry):
    trained = retrain.output_for_node("trained_policy")
    _, client = registry
    version = client.get_model_version(MODEL_NAME, trained["version"])
    assert version.run_id == trained["run_id"]
    run = client.get_run(trained["run_id"])
    assert run.data.params["algorithm"] == "PPO"
    assert run.data.params["total_timesteps"] == "1024"
    for name in ("candidate", "equal_weight"):
        assert f"oos_{name}_sharpe" in run.data.metrics
        assert np.isfinite(run.data.metrics[f"oos_{name}_sharpe"])


def test_evaluation_is_out_of_sample_against_equal_weight(retrain):
    trained = retrain.output_for_node("trained_policy")
    evaluation = retrain.output_for_node("policy_evaluation")
    assert np.datetime64(evaluation["first_oos_ts"]) > np.datetime64(trained["train_end"])
    # 60 days of hourly bars, last quarter held out (less the rolling-window warm-up).
    assert 300 < evaluation["n_oos_bars"] <= 360
    baseline = evaluation["baseline"]
    # The baseline enters 1x long (turnover 1), then rebalances to equal weights only where
    # drift exceeds the no-trade band.
    assert 1.0 <= baseline["turnover"] < 3.0
    assert baseline["fees_paid"] > 0
    assert evaluation["candidate"]["n_bars"] == baseline["n_bars"]


def test_promotion_follows_the_gate_and_records_the_decision(retrain, registry):
    """Reads what the run recorded, not the registry's alias now (other tests move it)."""
    evaluation = retrain.output_for_node("policy_evaluation")
    promotion = retrain.output_for_node("champion_model")
    expected = decide_promotion(
        PerformanceMetrics(**evaluation["candidate"]),
        PerformanceMetrics(**evaluation["baseline"]),
        None,
        PromotionGateSettings().gate_config(),
    )
    assert promotion["promoted"] == expected.promote
    resource, client = registry
    tag = client.get_model_version(MODEL_NAME, evaluation["version"]).tags["promotion_decision"]
    assert tag == expected.summary
    assert promotion["champion_version"] == (evaluation["version"] if expected.promote else None)


def test_failed_gate_keeps_the_champion_and_records_why(retrain, registry):
    resource, client = registry
    evaluation = retrain.output_for_node("policy_evaluation")
    client.set_registered_model_alias(MODEL_NAME, CHAMPION_ALIAS, evaluation["version"])
    worse_sharpe = evaluation["baseline"]["sharpe"] - 1
    worse = {**evaluation, "candidate": {**evaluation["candidate"], "sharpe": worse_sharpe}}
    strict = PromotionGateSettings(max_drawdown=1.0)
    result = champion_model(
        policy_evaluation=worse, mlflow_registry=resource, promotion_gate=strict
    )
    assert result.value["promoted"] is False
    assert "equal-weight baseline" in result.value["reasons"][0]
    assert resource.champion_version() == evaluation["version"]


def test_serving_writes_clamped_weights_of_the_champion(retrain, registry, defs):
    resource, client = registry
    version = retrain.output_for_node("trained_policy")["version"]
    client.set_registered_model_alias(MODEL_NAME, CHAMPION_ALIAS, version)
    served = defs.resolve_job_def("serving_job").execute_in_process()
    assert served.success
    with duckdb.connect(str(ProjectPaths.from_env().warehouse), read_only=True) as con:
        rows = con.execute(
            "SELECT symbol, model_version, target_weight, decision_ts, "
            "(SELECT max(close_ts) FROM marts.fct_features) FROM serving.target_weights"
        ).fetchall()
    assert len(rows) == 5
    assert {r[1] for r in rows} == {version}
    assert sum(abs(r[2]) for r in rows) <= 3.0 + 1e-9
    assert all(r[3] == r[4] for r in rows), "decision is taken at the close of the latest bar"


def test_sensor_requests_serving_once_per_new_champion(retrain, registry, defs):
    resource, client = registry
    version = retrain.output_for_node("trained_policy")["version"]
    client.set_registered_model_alias(MODEL_NAME, CHAMPION_ALIAS, version)
    sensor = defs.resolve_sensor_def("new_champion_sensor")
    first = sensor(dg.build_sensor_context(resources={"mlflow_registry": resource}))
    assert first.run_key == f"champion-v{version}"
    again = dg.build_sensor_context(cursor=version, resources={"mlflow_registry": resource})
    assert isinstance(sensor(again), dg.SkipReason)


def test_reingestion_leaves_raw_row_counts_unchanged(retrain, defs):
    before = _warehouse_counts(defs)
    assert before["ohlcv"] == 4 * 5 * 24 * 60, "perp, spot, mark and index bars"
    rerun = defs.resolve_job_def("ingest_features_job").execute_in_process()
    assert rerun.success
    assert _warehouse_counts(defs) == before


def test_mlflow_tracking_points_at_the_embedded_store(retrain):
    assert mlflow.get_tracking_uri() == ProjectPaths.from_env().mlflow_tracking_uri
