"""The settings resources hold overrides only: the defaults live in the domain dataclasses."""

import re
from dataclasses import fields, replace
from pathlib import Path

from evaluation.gate import GateConfig
from orchestration.resources.settings import PromotionGateSettings, TrainingSettings
from training.config import TrainConfig
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
    settings = set(TrainingSettings.model_fields) - {"episode_length"}
    assert settings <= names
    assert all(f.default is None for f in TrainingSettings.model_fields.values())


def test_gate_settings_are_overrides_of_gate_config():
    assert PromotionGateSettings().gate_config() == GateConfig()
    assert PromotionGateSettings(max_drawdown=0.2).gate_config() == GateConfig(max_drawdown=0.2)
    assert set(PromotionGateSettings.model_fields) <= {f.name for f in fields(GateConfig)}


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
