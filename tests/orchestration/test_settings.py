"""The settings resources hold overrides only: the defaults live in the domain dataclasses."""

import re
from dataclasses import fields, replace
from pathlib import Path

import pytest

from evaluation.gate import GateConfig
from orchestration.resources.settings import (
    PromotionGateSettings,
    TrainingRun,
    TrainingSettings,
)
from training.config import TrainConfig, load_config
from training.policy_model import pip_requirements

CONSTRAINTS = Path(__file__).resolve().parents[2] / "constraints.txt"


def test_unset_training_settings_keep_train_config_defaults():
    assert TrainingSettings().train_config(venue="binance") == replace(
        TrainConfig(), venue="binance"
    )


def test_training_overrides_apply_and_nothing_else_changes():
    config = TrainingSettings(total_timesteps=5_000, episode_length=64).train_config("v")
    default = TrainConfig()
    assert config.total_timesteps == 5_000 and config.env.episode_length == 64
    assert replace(config, total_timesteps=default.total_timesteps) == replace(
        default, venue="v", env=replace(default.env, episode_length=64)
    )


def test_every_training_setting_names_a_train_config_field():
    names = {f.name for f in fields(TrainConfig)}
    settings = set(TrainingSettings.model_fields) - {"episode_length", "preset"}
    assert settings <= names
    assert all(f.default is None for f in TrainingSettings.model_fields.values())


def test_a_run_config_layers_over_the_preset_and_the_environment():
    settings = TrainingSettings(preset="cpts", total_timesteps=5_000, seed=1)
    assert settings.train_config("v") == replace(
        load_config("cpts"), total_timesteps=5_000, seed=1, venue="v"
    )
    run = TrainingRun(seed=7, env={"decision_interval": 24, "fees": {"taker_rate": 0.001}})
    config = settings.train_config("v", run)
    assert (config.algorithm, config.env.reward) == ("A2C", "delayed")  # the preset's
    assert (config.total_timesteps, config.seed) == (5_000, 7)  # the environment's, the run's
    assert config.env.decision_interval == 24 and config.env.fees.taker_rate == 0.001
    assert settings.train_config("v", TrainingRun(preset="guide")).algorithm == "PPO"


def test_a_run_config_with_an_unknown_field_fails_naming_it():
    with pytest.raises(ValueError, match="'env.decision_intervall'"):
        TrainingSettings().train_config("v", TrainingRun(env={"decision_intervall": 24}))
    with pytest.raises(ValueError, match="preset 'nope'.*presets: .*cpts"):
        TrainingSettings().train_config("v", TrainingRun(preset="nope"))


def test_gate_settings_are_overrides_of_gate_config():
    assert PromotionGateSettings().gate_config() == GateConfig()
    assert PromotionGateSettings(max_drawdown=0.2).gate_config() == GateConfig(max_drawdown=0.2)
    assert set(PromotionGateSettings.model_fields) == {f.name for f in fields(GateConfig)}
    assert all(f.default is None for f in PromotionGateSettings.model_fields.values())


def test_every_gate_setting_reaches_the_gate_config():
    overrides = {
        "max_drawdown": 0.3,
        "max_turnover_cost": 0.02,
        "min_sharpe_margin_vs_baseline": 0.25,
        "min_sharpe_margin_vs_champion": 0.5,
        "min_oos_bars": 1_000,
        "min_oos_days": 90,
        "statistical_test": "both",
        "min_deflated_sharpe": 0.99,
        "ci_lower_above": 0.1,
        "override_reason": "stricter everywhere",
    }
    assert set(overrides) == set(PromotionGateSettings.model_fields)
    assert PromotionGateSettings(**overrides).gate_config().as_dict() == overrides


def test_gate_settings_past_a_floor_need_an_override_reason():
    with pytest.raises(ValueError, match="min_sharpe_margin_vs_baseline -100.0 < floor"):
        PromotionGateSettings(min_sharpe_margin_vs_baseline=-100.0).gate_config()
    config = PromotionGateSettings(max_drawdown=1.0, override_reason="backfill study").gate_config()
    assert config.max_drawdown == 1.0 and config.loosened() == ["max_drawdown 1.0 > floor 0.5"]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_model_pip_requirements_are_the_pinned_versions():
    pins = {
        _norm(line.split("==")[0]): line.split("==")[1].strip()
        for line in CONSTRAINTS.read_text().splitlines()
        if "==" in line
    }
    requirements = pip_requirements()
    assert {_norm(r.split("==")[0]) for r in requirements} >= {"torch", "stable-baselines3"}
    for requirement in requirements:
        name, version = requirement.split("==")
        assert version == pins[_norm(name)].split("+")[0], requirement
