"""Training is reproducible per algorithm; a registered policy acts like the trained one."""

from dataclasses import replace

import mlflow
import numpy as np
import pytest

from tests.support.markets import make_synthetic_market
from training.actions import target_weights
from training.config import TrainConfig
from training.env_config import EnvConfig
from training.observation import PortfolioState
from training.policy_model import PolicySpec, load_policy, log_policy
from training.train import train_end_timestamp, train_policy

pytestmark = pytest.mark.slow


def _config(algorithm: str, seed: int = 3) -> TrainConfig:
    return TrainConfig(
        algorithm=algorithm,
        total_timesteps=256,
        seed=seed,
        n_envs=2,
        n_steps=64,
        batch_size=64,
        feature_columns=("f0", "f1", "f2", "f3"),
        env=EnvConfig(window=8, episode_length=64),
    )


@pytest.fixture(scope="module")
def market():
    return make_synthetic_market(n_assets=3, n_bars=400, seed=11)


def _actions(trained, market) -> np.ndarray:
    observations = np.stack(
        [
            trained.builder.build(market.features, t, PortfolioState.flat(market.n_assets))
            for t in range(20, 60)
        ]
    )
    return trained.algorithm.predict(observations, deterministic=True)[0]


@pytest.mark.parametrize("algorithm", ["PPO", "A2C", "SAC"])
def test_same_config_and_seed_give_the_same_policy(market, algorithm):
    first = train_policy(market, _config(algorithm))
    second = train_policy(market, _config(algorithm))
    np.testing.assert_array_equal(_actions(first, market), _actions(second, market))


def test_another_seed_gives_another_policy(market):
    a = train_policy(market, _config("PPO", seed=1))
    b = train_policy(market, _config("PPO", seed=2))
    assert not np.array_equal(_actions(a, market), _actions(b, market))


def test_normalizer_is_fitted_on_the_training_bars_only(market):
    trained = train_policy(market.slice(0, 200), _config("PPO"))
    stats = trained.builder.normalizer
    expected = market.features[:200].reshape(-1, market.features.shape[-1]).mean(axis=0)
    np.testing.assert_allclose(np.ravel(stats.mean), expected, rtol=1e-6)


def test_registered_policy_round_trips_through_mlflow(market, tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_registry_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = mlflow.create_experiment("t", artifact_location=(tmp_path / "a").as_uri())
    config = replace(_config("PPO"), env=EnvConfig(window=8, episode_length=64, max_leverage=2.0))
    trained = train_policy(market, config)
    spec = PolicySpec(
        algorithm="PPO",
        symbols=market.symbols,
        venue="synthetic",
        timeframe="1h",
        env_config=config.env,
        builder=trained.builder,
        train_end=train_end_timestamp(market),
    )
    with mlflow.start_run(experiment_id=experiment):
        version = log_policy(trained.algorithm, spec, "roundtrip")
    assert version.version == 1

    loaded = load_policy("models:/roundtrip/1")
    assert loaded.spec.symbols == market.symbols
    assert loaded.spec.env_config == config.env
    assert loaded.spec.builder.to_dict() == trained.builder.to_dict()
    obs = np.stack(
        [trained.builder.build(market.features, t, PortfolioState.flat(3)) for t in (30, 31)]
    )
    expected = target_weights(trained.algorithm.predict(obs, deterministic=True)[0], config.env)
    np.testing.assert_allclose(loaded.predict(None, obs), expected, rtol=0, atol=1e-5)
    assert np.abs(expected).max() <= 2.0 + 1e-12
