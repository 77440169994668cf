"""champion_model on a real MLflow registry (SQLite in tmp_path) with tiny registered versions."""

import json
import sqlite3
from dataclasses import replace
from datetime import datetime

import dagster as dg
import pytest
from mlflow.exceptions import MlflowException

from evaluation.gate import GateConfig, decide_promotion
from orchestration.assets.promotion import champion_model
from orchestration.resources.mlflow_registry import MlflowRegistry
from orchestration.resources.settings import PromotionGateSettings
from tests.support.gate import evidence, metrics
from tests.support.registries import MODEL, SYMBOLS, register


def _evaluation(version: str, **changes) -> dict:
    return {"version": version, "gate_evidence": evidence(**changes).to_dict()}


def _materialize(registry, evaluation: dict, gate: PromotionGateSettings | None = None):
    @dg.asset(name="policy_evaluation")
    def upstream() -> dict:
        return evaluation

    return dg.materialize(
        [upstream, champion_model],
        resources={"mlflow_registry": registry, "promotion_gate": gate or PromotionGateSettings()},
        raise_on_error=False,
    )


def _promotion(result: dg.ExecuteInProcessResult):
    (event,) = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key.path == ["champion_model"]
    ]
    return result.output_for_node("champion_model"), event.materialization.metadata


def test_a_passing_candidate_becomes_champion_with_the_decision_tagged(registry):
    version = register(registry)
    result = _materialize(registry, _evaluation(version))
    assert result.success
    summary, metadata = _promotion(result)
    assert summary["promoted"] is True and summary["champion_version"] == version
    assert summary["previous_version"] is None and summary["replaced_version"] is None
    assert metadata["decision"].value == "passed" and metadata["override"].value == "none"
    assert metadata["thresholds"].value == GateConfig().as_dict()
    tags = registry.client().get_model_version(MODEL, version).tags
    assert tags["promotion_decision"] == "promoted"
    assert json.loads(tags["promotion_reasons"]) == []
    assert json.loads(tags["gate_thresholds"]) == GateConfig().as_dict()
    assert tags["gate_override"] == "none" and tags["replaced_version"] == "none"
    assert datetime.fromisoformat(tags["promoted_at"]).tzinfo is not None


def test_a_refused_candidate_keeps_the_champion_and_records_every_reason(registry):
    champion, candidate = register(registry), register(registry)
    registry.promote(champion, decide_promotion(evidence(), GateConfig()))
    changes = {
        "candidate": metrics(sharpe=float("nan"), max_drawdown=float("nan")),
        "champion": metrics(sharpe=1.0),
        "champion_version": champion,
    }
    expected = decide_promotion(evidence(**changes), GateConfig())
    result = _materialize(registry, _evaluation(candidate, **changes))
    assert result.success
    summary, metadata = _promotion(result)
    assert summary["promoted"] is False and summary["champion_version"] == champion
    assert summary["reasons"] == expected.reasons and len(expected.reasons) == 6
    assert "candidate sharpe is nan (not finite)" in expected.reasons
    assert "candidate max_drawdown is nan (not finite)" in expected.reasons
    assert metadata["n_reasons"].value == 6
    assert metadata["reasons"].value.count("\n- ") == 5
    tags = registry.client().get_model_version(MODEL, candidate).tags
    assert tags["promotion_decision"] == "refused"
    assert json.loads(tags["promotion_reasons"]) == expected.reasons
    assert "promoted_at" not in tags


def test_an_override_is_named_in_the_tags_and_metadata(registry):
    version = register(registry)
    gate = PromotionGateSettings(max_drawdown=1.0, override_reason="paper account")
    deep = _evaluation(version, candidate=metrics(max_drawdown=0.8))
    assert not _promotion(_materialize(registry, deep))[0]["promoted"]
    result = _materialize(registry, deep, gate)
    summary, metadata = _promotion(result)
    assert summary["promoted"] is True
    override = "max_drawdown 1.0 > floor 0.5 (reason: paper account)"
    assert summary["override"] == override and metadata["override"].value == override
    assert registry.client().get_model_version(MODEL, version).tags["gate_override"] == override


def test_a_champion_on_other_bars_refuses(registry):
    champion, candidate = register(registry), register(registry)
    registry.promote(champion, decide_promotion(evidence(), GateConfig()))
    other_bars = _evaluation(
        candidate, champion=metrics(sharpe=0.5), champion_version=champion, champion_same_bars=False
    )
    summary, _ = _promotion(_materialize(registry, other_bars))
    assert summary["promoted"] is False and summary["champion_version"] == champion
    assert summary["reasons"] == [
        f"champion v{champion} was not backtested on the candidate's bars: "
        "no like-for-like comparison"
    ]


def test_a_champion_that_moved_since_the_evaluation_refuses(registry):
    first, second, candidate = register(registry), register(registry), register(registry)
    registry.promote(first, decide_promotion(evidence(), GateConfig()))
    registry.promote(second, decide_promotion(evidence(), GateConfig()))
    stale = _evaluation(candidate, champion=metrics(sharpe=0.5), champion_version=first)
    summary, _ = _promotion(_materialize(registry, stale))
    assert summary["promoted"] is False and summary["champion_version"] == second
    assert summary["reasons"] == [
        f"@champion moved since the evaluation (evaluated against v{first}, now v{second})"
    ]


def test_a_registry_error_looking_up_the_champion_fails_the_step(registry, tmp_path):
    champion, candidate = register(registry), register(registry)
    registry.promote(champion, decide_promotion(evidence(), GateConfig()))
    db = sqlite3.connect(tmp_path / "mlflow.db", isolation_level=None)
    db.execute("ALTER TABLE registered_models RENAME TO registered_models_away")
    try:
        with pytest.raises(MlflowException, match="no such table: registered_models"):
            registry.champion_version()
        result = _materialize(registry, _evaluation(candidate))
        assert not result.success
        (failure,) = result.get_step_failure_events()
        assert failure.step_key == "champion_model"
        assert "no such table: registered_models" in failure.step_failure_data.error.to_string()
    finally:
        db.execute("ALTER TABLE registered_models_away RENAME TO registered_models")
    assert registry.champion_version() == champion
    assert "promotion_decision" not in registry.client().get_model_version(MODEL, candidate).tags


def test_an_unreachable_tracking_server_fails_the_step(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    unreachable = MlflowRegistry(
        tracking_uri="http://127.0.0.1:9", artifact_root=str(tmp_path), model_name=MODEL
    )
    with pytest.raises(MlflowException, match="127.0.0.1:9"):
        unreachable.champion_version()
    result = _materialize(unreachable, _evaluation("1"))
    assert not result.success
    assert [e.step_key for e in result.get_step_failure_events()] == ["champion_model"]


def test_champion_version_is_none_only_without_the_alias(registry):
    assert registry.champion_version() is None, "no registered model yet"
    version = register(registry)
    assert registry.champion_version() is None and registry.previous_version() is None
    registry.client().set_registered_model_alias(MODEL, "champion", version)
    assert registry.champion_version() == version


def test_trials_count_the_versions_on_the_same_data(registry):
    for sharpe in (1.0, 2.0, 4.0):
        register(registry, sharpe=sharpe)
    register(registry, symbols=("ETH", "BTC"))
    register(registry, venue="binance", sharpe=9.0)
    register(registry, timeframe="4h", sharpe=9.0)
    register(registry, symbols=("BTC",), sharpe=9.0)
    assert registry.count_trials("synthetic", "1h", SYMBOLS) == 4
    n, variance = registry.trial_sharpes("synthetic", "1h", ["ETH", "BTC"])
    assert n == 4
    assert variance == pytest.approx(7 / 3)
    assert registry.count_trials("okx", "1h", SYMBOLS) == 0


def test_a_refused_decision_cannot_promote(registry):
    version = register(registry)
    refused = decide_promotion(replace(evidence(), baselines={}), GateConfig())
    with pytest.raises(ValueError, match="the gate refused it"):
        registry.promote(version, refused)
    assert registry.champion_version() is None
