"""TrainConfig from YAML presets and mappings: one source of defaults, errors that name the key."""

from __future__ import annotations

from dataclasses import replace

import pytest
import yaml

from training.config import CONFIG_DIR, TrainConfig, load_config, preset_path
from training.env_config import EnvConfig, RandomizationConfig

PRESETS = ("demo", "cpts", "guide", "ew_tilt")


def test_the_yaml_of_a_config_reads_back_to_the_same_config(tmp_path):
    config = replace(
        TrainConfig(),
        algorithm="A2C",
        net_arch=(32, 16),
        symbols=("BTC", "ETH"),
        env=EnvConfig(
            decision_interval=24,
            randomization=RandomizationConfig(fee_mult_range=(0.5, 2.0)),
        ),
    )
    path = tmp_path / "run.yaml"
    path.write_text(config.to_yaml())
    assert TrainConfig.from_yaml(path) == config
    assert yaml.safe_load(config.to_yaml())["env"]["decision_interval"] == 24


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_loads_and_sets_only_known_fields(name):
    config = load_config(name)
    assert isinstance(config, TrainConfig)
    assert preset_path(name) == CONFIG_DIR / f"{name}.yaml"


def test_presets_say_what_they_promise():
    assert load_config("demo") == TrainConfig()  # the embedded default is the defaults
    cpts = load_config("cpts")
    assert (cpts.algorithm, cpts.env.reward, cpts.env.delay_k) == ("A2C", "delayed", 24)
    assert (cpts.env.decision_interval, cpts.validation_every) == (1, 0)
    guide = load_config("guide")
    assert guide.algorithm == "PPO" and guide.timeframe == "1h"
    assert guide.env.decision_interval == 1
    assert guide.symbols == ("BTC", "ETH", "SOL", "AVAX", "LINK")
    assert "order_book_imbalance" in guide.feature_columns and "basis" in guide.feature_columns
    tilt = load_config("ew_tilt").env
    assert (tilt.action_baseline, tilt.decision_interval, tilt.window) == ("equal_weight", 24, 4)


def test_later_layers_win_and_nested_sections_merge():
    config = load_config("cpts", {"seed": 3, "env": {"window": 16}}, {"seed": 4})
    assert config.seed == 4 and config.env.window == 16
    assert config.env.reward == "delayed"  # the preset's value survives a partial env mapping
    assert config.env.fees == TrainConfig().env.fees


def test_unknown_keys_and_bad_values_name_the_source_and_the_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("env:\n  fees:\n    taker: 0.001\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: unknown key 'env\.fees\.taker'"):
        TrainConfig.from_yaml(path)
    with pytest.raises(ValueError, match="algorithm must be PPO, A2C or SAC"):
        TrainConfig.from_dict({"algorithm": "DQN"})
    with pytest.raises(ValueError, match="preset 'missing'"):
        load_config("missing")
    path.write_text("- a list\n")
    with pytest.raises(ValueError, match="expected a mapping"):
        TrainConfig.from_yaml(path)
