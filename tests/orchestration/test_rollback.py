"""Aliases across promotions and rollbacks, the rollback job and `perpfolio rollback`, on a real
MLflow registry (SQLite in tmp_path)."""

import shutil
from datetime import datetime

import dagster as dg
import pytest

from evaluation.gate import GateConfig, decide_promotion
from orchestration.cli import main
from orchestration.jobs import rollback_job
from orchestration.project import MODEL_NAME, ProjectPaths
from orchestration.resources.mlflow_registry import MlflowRegistry, RollbackError
from tests.support.gate import evidence
from tests.support.registries import MODEL, register

PASSED = decide_promotion(evidence(), GateConfig())


@pytest.fixture
def two_promotions(registry):
    """v1 promoted, then v2 promoted: @champion v2, @previous v1."""
    first, second = register(registry), register(registry)
    assert registry.promote(first, PASSED) is None
    assert registry.promote(second, PASSED) == first
    return registry, first, second


def test_a_second_promotion_moves_the_first_champion_to_previous(two_promotions):
    registry, first, second = two_promotions
    assert (registry.champion_version(), registry.previous_version()) == (second, first)
    assert registry.client().get_model_version(MODEL, second).tags["replaced_version"] == first


def test_rollback_restores_previous_and_records_who_why_and_when(two_promotions):
    registry, first, second = two_promotions
    assert registry.rollback(by="alice", reason="fills drifted") == (second, first)
    assert registry.champion_version() == first and registry.previous_version() is None
    client = registry.client()
    demoted = client.get_model_version(MODEL, second).tags
    restored = client.get_model_version(MODEL, first).tags
    assert (demoted["rolled_back_by"], demoted["rolled_back_reason"]) == ("alice", "fills drifted")
    assert demoted["rolled_back_to"] == first and restored["restored_from"] == second
    assert (restored["restored_by"], restored["restored_reason"]) == ("alice", "fills drifted")
    assert demoted["rolled_back_at"] == restored["restored_at"]
    assert datetime.fromisoformat(restored["restored_at"]).tzinfo is not None
    with pytest.raises(RollbackError, match=f"nothing to roll back to \\(@champion is v{first}\\)"):
        registry.rollback(by="alice", reason="again")
    assert registry.champion_version() == first


def test_rollback_without_previous_is_a_clear_error(registry):
    with pytest.raises(RollbackError, match="no version of test-policy holds @previous"):
        registry.rollback(by="bob", reason="x")
    only = register(registry)
    registry.promote(only, PASSED)
    with pytest.raises(RollbackError, match=f"@champion is v{only}"):
        registry.rollback(by="bob", reason="x")
    registry.client().set_registered_model_alias(MODEL, "previous", only)
    with pytest.raises(RollbackError, match=f"both hold v{only}"):
        registry.rollback(by="bob", reason="x")
    with pytest.raises(ValueError, match="who \\(by\\) and why \\(reason\\)"):
        registry.rollback(by="bob", reason=" ")
    assert registry.champion_version() == only


def _job_config(by: str, reason: str) -> dict:
    return {"ops": {"rollback_champion": {"config": {"by": by, "reason": reason}}}}


def test_rollback_job_moves_the_alias_and_observes_champion_model(two_promotions):
    registry, first, second = two_promotions
    defs = dg.Definitions(jobs=[rollback_job], resources={"mlflow_registry": registry})
    job = defs.resolve_job_def("rollback_job")
    result = job.execute_in_process(run_config=_job_config("carol", "bad week"))
    assert result.success
    assert result.output_for_node("rollback_champion") == {
        "from_version": second,
        "to_version": first,
        "by": "carol",
        "reason": "bad week",
    }
    (observation,) = result.get_asset_observation_events()
    assert observation.asset_key == dg.AssetKey("champion_model")
    assert observation.asset_observation_data.asset_observation.metadata[
        "champion_version"
    ] == dg.TextMetadataValue(first)
    again = job.execute_in_process(run_config=_job_config("carol", "x"), raise_on_error=False)
    assert not again.success
    (failure,) = again.get_step_failure_events()
    assert "nothing to roll back to" in failure.step_failure_data.user_failure_data.description


def test_cli_rollback_exit_codes(tmp_path, empty_store, monkeypatch, capsys):
    home = tmp_path / "home"
    monkeypatch.setenv("PERPFOLIO_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    monkeypatch.setenv("USER", "dana")
    paths = ProjectPaths.from_env().ensure()
    shutil.copy(empty_store, paths.mlflow_dir / "mlflow.db")
    registry = MlflowRegistry(
        tracking_uri=paths.mlflow_tracking_uri,
        artifact_root=str(paths.mlflow_artifacts),
        model_name=MODEL_NAME,
    )
    assert main(["rollback", "--reason", "no champion yet"]) == 1
    assert "no version of perpfolio-policy holds @previous" in capsys.readouterr().err
    first, second = register(registry), register(registry)
    registry.promote(first, PASSED)
    registry.promote(second, PASSED)
    assert main(["rollback", "--reason", "drawdown alert"]) == 0
    out = capsys.readouterr().out
    assert f"v{second} -> v{first} (rolled back by dana: drawdown alert)" in out
    assert paths.mlflow_tracking_uri not in out
    tags = registry.client().get_model_version(MODEL_NAME, second).tags
    assert tags["rolled_back_by"] == "dana"
    assert main(["rollback", "--reason", "twice", "--by", "erin"]) == 1
    assert "nothing to roll back to" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["rollback"])
