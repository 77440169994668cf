"""The whole asset graph, materialized in process on the tiny `test` configuration."""

import re
from pathlib import Path

import dagster as dg
import duckdb
import mlflow
import numpy as np
import pytest

from evaluation.gate import GateEvidence, decide_promotion
from evaluation.strategies import BASELINES
from ingestion.warehouse import row_counts
from orchestration.assets.promotion import champion_model
from orchestration.definitions import build_definitions
from orchestration.project import CHAMPION_ALIAS, MODEL_NAME, ProjectPaths
from orchestration.resources.settings import PromotionGateSettings
from tests.support.walk_forward import (
    FOLD_RUN_CONFIG,
    KEYS,
    STRATEGIES,
    check_report,
    check_windows,
    run_walk,
)
from training.config import TrainConfig

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def defs(project_home):
    return build_definitions("test")


@pytest.fixture(scope="module")
def retrain(defs):
    run_config = {"ops": {"trained_policy": {"config": {"seed": 3, "env": {"window": 16}}}}}
    return defs.resolve_job_def("retraining_job").execute_in_process(
        run_config=run_config, raise_on_error=False
    )


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
    assert run.data.params["seed"] == "3"  # the run config reaches training
    assert run.data.params["env.window"] == "16"
    for name in ("candidate", "equal_weight"):
        assert f"oos_{name}_sharpe" in run.data.metrics
        assert np.isfinite(run.data.metrics[f"oos_{name}_sharpe"])


def n_observation(config: TrainConfig, n_assets: int) -> int:
    """Length of the observation vector: the feature window, then 4 entries per asset and 3."""
    return config.env.window * n_assets * len(config.feature_columns) + 4 * n_assets + 3


def test_policy_version_carries_its_lineage_config_and_learning_curves(retrain, registry, tmp_path):
    trained = retrain.output_for_node("trained_policy")
    _, client = registry
    tags = client.get_model_version(MODEL_NAME, trained["version"]).tags
    assert tags["algorithm"] == "PPO" and tags["timeframe"] == "1h"
    assert tags["universe"] == ",".join(trained["symbols"])
    assert re.fullmatch(r"[0-9a-f]{64}", tags["data_hash"])
    assert re.fullmatch(r"[0-9a-f]{64}", tags["dbt_manifest_hash"])
    assert tags["train_end"] == trained["train_end"] and tags["train_start"] < tags["train_end"]
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?|unknown", tags["git_commit"])
    run_id = trained["run_id"]
    config = TrainConfig.from_yaml(client.download_artifacts(run_id, "config.yaml", str(tmp_path)))
    assert config.seed == 3 and config.env.window == 16 and config.total_timesteps == 1024
    features = Path(client.download_artifacts(run_id, "features.txt", str(tmp_path))).read_text()
    assert tuple(features.split()) == config.feature_columns
    signature = mlflow.models.get_model_info(f"models:/{MODEL_NAME}/{trained['version']}").signature
    n_assets = len(trained["symbols"])
    assert signature.inputs.inputs[0].shape == (-1, n_observation(config, n_assets))
    assert signature.outputs.inputs[0].shape == (-1, n_assets)
    losses = client.get_metric_history(run_id, "train.value_loss")
    assert len(losses) >= 1 and all(np.isfinite(m.value) for m in losses)
    assert [m.step for m in losses] == sorted(m.step for m in losses)


def test_evaluation_is_out_of_sample_against_every_baseline_on_the_same_bars(retrain, defs):
    trained = retrain.output_for_node("trained_policy")
    evaluation = retrain.output_for_node("policy_evaluation")
    assert np.datetime64(evaluation["first_oos_ts"]) == np.datetime64(trained["test_start"])
    # The purge gap (observation window + the 1h feature lookback) between train and test.
    gap = np.datetime64(trained["test_start"]) - np.datetime64(trained["train_end"])
    assert gap == np.timedelta64(200 + 1, "h")
    # 60 days of hourly bars less the features' warm-up, the last quarter out of sample.
    n_oos = evaluation["n_oos_bars"]
    assert 300 < n_oos <= 360
    metrics = evaluation["metrics"]
    assert set(metrics) == {"candidate", "champion", *BASELINES}  # the day-one champion
    assert {m["n_bars"] for m in metrics.values()} == {n_oos}
    # the day-one champion is equal weight at half the gross: half its exposure
    half = metrics["champion"]["avg_gross_exposure"] / metrics["equal_weight"]["avg_gross_exposure"]
    assert half == pytest.approx(0.5, rel=0.05)
    # Equal weight enters 1x long (turnover 1), then rebalances once a day.
    assert 1.0 <= metrics["equal_weight"]["turnover"] < 3.0
    assert metrics["equal_weight"]["fees_paid"] > 0
    assert metrics["cash"]["total_return"] == 0.0 and metrics["cash"]["sharpe"] == 0.0
    evidence = GateEvidence.from_dict(evaluation["gate_evidence"])
    assert evidence.best_baseline in BASELINES
    low, high = evidence.sharpe_difference_ci
    assert low <= high
    with defs.resources["warehouse"].connect(read_only=True) as con:
        rows = con.execute(
            "SELECT strategy, count(*) FROM evaluation.ledger_bars WHERE evaluation_id = ? "
            "GROUP BY strategy",
            [evaluation["evaluation_id"]],
        ).fetchall()
    assert dict(rows) == {name: n_oos for name in metrics}


def test_evaluation_logs_the_ledgers_and_the_tear_sheet(retrain, registry):
    evaluation = retrain.output_for_node("policy_evaluation")
    _, client = registry
    logged = {a.path for a in client.list_artifacts(evaluation["run_id"], "evaluation")}
    assert {
        "evaluation/ledger_bars.parquet",
        "evaluation/ledger_assets.parquet",
        "evaluation/gate_evidence.json",
        "evaluation/tear_sheet.html",
        "evaluation/equity.png",
    } <= logged
    (event,) = [
        e
        for e in retrain.get_asset_materialization_events()
        if e.asset_key.to_user_string() == "policy_evaluation"
    ]
    metadata = event.materialization.metadata
    assert metadata["plot_equity"].value.startswith("![")
    assert "data:image/png;base64," in metadata["plot_equity"].value
    assert evaluation["run_id"] in metadata["mlflow_run"].value


def test_promotion_follows_the_gate_and_records_the_decision(retrain, registry):
    """Reads what the run recorded, not the registry's alias now (other tests move it)."""
    evaluation = retrain.output_for_node("policy_evaluation")
    promotion = retrain.output_for_node("champion_model")
    expected = decide_promotion(
        GateEvidence.from_dict(evaluation["gate_evidence"]),
        PromotionGateSettings().gate_config(),
    )
    assert promotion["promoted"] == expected.promote
    # 15 out-of-sample days are below the gate's 60-day minimum: the test pipeline refuses.
    assert not expected.promote
    assert any("days" in r for r in expected.reasons)
    resource, client = registry
    tags = client.get_model_version(MODEL_NAME, evaluation["version"]).tags
    assert tags["promotion_decision"] == "refused"
    assert promotion["reasons"] == expected.reasons
    # the day-one baseline holds @champion, and the evaluation compared the candidate with it
    baseline = resource.baseline_versions()
    assert len(baseline) == 1 and promotion["champion_version"] == baseline[0]
    assert evaluation["gate_evidence"]["champion_version"] == baseline[0]
    version = client.get_model_version(MODEL_NAME, baseline[0])
    assert version.tags["kind"] == "baseline" and "Day-one champion" in version.description


def test_failed_gate_keeps_the_champion_and_records_why(retrain, registry):
    resource, client = registry
    evaluation = retrain.output_for_node("policy_evaluation")
    client.set_registered_model_alias(MODEL_NAME, CHAMPION_ALIAS, evaluation["version"])
    evidence = evaluation["gate_evidence"]
    worse = {**evidence["candidate"], "sharpe": evidence["baselines"]["cash"]["sharpe"] - 1}
    worse_evaluation = {**evaluation, "gate_evidence": {**evidence, "candidate": worse}}
    result = champion_model(
        policy_evaluation=worse_evaluation,
        mlflow_registry=resource,
        promotion_gate=PromotionGateSettings(),
    )
    assert result.value["promoted"] is False
    assert any("vs baseline cash" in r for r in result.value["reasons"])
    assert resource.champion_version() == evaluation["version"]


def test_serving_cycles_trade_the_champion_on_the_paper_account_once_per_bar(
    retrain, registry, defs
):
    resource, client = registry
    version = retrain.output_for_node("trained_policy")["version"]
    client.set_registered_model_alias(MODEL_NAME, CHAMPION_ALIAS, version)
    job = defs.resolve_job_def("serving_job")
    first, again = job.execute_in_process(), job.execute_in_process()
    assert first.success and again.success
    meta = [
        run.get_asset_materialization_events()[0].materialization.metadata for run in (first, again)
    ]
    assert meta[0]["model_version"].value == version and meta[0]["backend"].value == "onnxruntime"
    assert meta[0]["decision_ts"].value == meta[1]["decision_ts"].value
    assert meta[1]["bars_processed"].value == 0  # the same bar again: nothing new
    assert meta[0]["orders"].value == meta[1]["orders"].value
    assert meta[1]["tracking_bars"].value == 0  # one served bar: nothing to track yet
    with duckdb.connect(str(ProjectPaths.from_env().warehouse), read_only=True) as con:
        decisions = con.execute(
            "SELECT symbol, model_version, target_weight, decision_ts, "
            "(SELECT max(close_ts) FROM marts.fct_features) FROM serving.decisions "
            "WHERE model_version = ?",
            [version],
        ).fetchall()
        orders = con.execute(
            "SELECT count(*), count(DISTINCT client_order_id) FROM serving.orders"
        ).fetchone()
        equity = con.execute("SELECT count(*) FROM serving.equity").fetchone()[0]
    assert len(decisions) == 5
    assert sum(abs(r[2]) for r in decisions) <= 3.0 + 1e-9
    assert all(r[3] == r[4] for r in decisions), "decision is taken at the close of the latest bar"
    assert orders[0] == orders[1] == meta[0]["orders"].value  # the re-run submitted nothing
    assert equity >= 1


def test_sensor_requests_serving_once_per_new_champion(retrain, registry, defs):
    resource, client = registry
    version = retrain.output_for_node("trained_policy")["version"]
    client.set_registered_model_alias(MODEL_NAME, CHAMPION_ALIAS, version)
    sensor = defs.resolve_sensor_def("new_champion_sensor")
    first = sensor(dg.build_sensor_context(resources={"mlflow_registry": resource}))
    assert first.tags["champion_version"] == version
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


@pytest.fixture(scope="module")
def walk(retrain, defs, project_home):
    """The 4-fold walk-forward over the features the retraining run built (the `test`
    environment's 60 days hold 4 folds with the default 200-bar purge: 4 test windows of about
    80 bars, fold 0 still trains on about 750)."""
    assert retrain.success
    yield from run_walk(defs, project_home)


def test_each_fold_partition_is_its_own_materialization_with_metadata(walk):
    for key, run in zip(KEYS, walk.folds, strict=True):
        (event,) = run.get_asset_materialization_events()
        assert event.partition == key
        meta = {k: v.value for k, v in event.materialization.metadata.items()}
        assert meta["fold"] == key
        assert int(meta["test_bars"]) >= 75 and int(meta["train_bars"]) >= 700
        assert np.isfinite(meta["candidate_sharpe"]) and np.isfinite(meta["candidate_ror"])
        assert {f"{n}_sharpe" for n in BASELINES} <= set(meta)
        assert meta["cash_sharpe"] == 0.0
        assert meta["train_seconds"] > 0
    records = walk.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("walk_forward_fold")), limit=10
    ).records
    assert sorted(r.partition_key for r in records) == KEYS
    for out in walk.fold_outputs():
        assert set(out["metrics"]) == set(out["ledgers"]) == STRATEGIES
        assert out["run_id"]


def test_folds_test_windows_are_consecutive_and_purged_after_their_train(walk):
    times = check_windows(walk)
    # 60 days less the features' warm-up; the last quarter split in 4, the later ones longer.
    bars = [t["test_bars"] for t in times]
    assert max(bars) - min(bars) <= 1 and 300 <= sum(bars) <= 360


def test_report_stitches_the_folds_with_metrics_and_statistics(walk):
    check_report(walk, check_windows(walk))


def test_report_metadata_has_the_plots_and_the_fold_table(walk):
    meta = walk.report_metadata()
    assert meta["folds"] == 4
    assert meta["n_oos_bars"] == walk.report_output()["n_oos_bars"]
    plots = {k: v for k, v in meta.items() if k.startswith("plot_")}
    assert "plot_equity" in plots and len(plots) >= 2
    for image in plots.values():
        assert image.startswith("![") and "data:image/png;base64," in image
    rows = [line for line in meta["fold_table"].splitlines() if line.startswith("| fold-")]
    assert [row.split("|")[1].strip() for row in rows] == KEYS
    assert {f"{n}_sharpe" for n in STRATEGIES} <= set(meta)


def test_rerunning_one_fold_replaces_its_ledger_rows_and_the_report_counts_trials(walk):
    before = walk.ledger_counts()
    job = walk.defs.resolve_job_def("walk_forward_job")
    again = job.execute_in_process(
        run_config=FOLD_RUN_CONFIG, partition_key="fold-2", instance=walk.instance
    )
    assert again.success
    assert walk.ledger_counts() == before
    assert sum(n for (e, _), n in before.items() if e == "walk-forward/fold-2") == 7 * int(
        walk.summaries()[2]["test_bars"]
    )
    report = walk.defs.resolve_job_def("walk_forward_report_job").execute_in_process(
        instance=walk.instance
    )
    second = report.output_for_node("walk_forward_report")
    assert second["n_oos_bars"] == walk.report_output()["n_oos_bars"]
    assert second["n_trials"] == 2, "the first report on the same data is a trial"
    assert second["deflated_sharpe"] <= second["probabilistic_sharpe"]
