"""Training: reproducibility, validation checkpoints and early stopping, observation scaling,
exploration settings and learning curves (real SB3 training on small budgets)."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch

from evaluation.engine import PolicyActor, backtest
from tests.support.markets import make_synthetic_market
from training.config import TrainConfig
from training.env_config import EnvConfig
from training.train import TrainedPolicy, train_policy

SMALL = TrainConfig(
    total_timesteps=1_024,
    n_envs=2,
    n_steps=128,
    batch_size=128,
    n_epochs=2,
    net_arch=(16,),
    env=EnvConfig(window=8, episode_length=64, max_leverage=1.0),
)


@pytest.fixture(scope="module")
def market():
    return make_synthetic_market(n_assets=3, n_bars=800)


def weights(trained: TrainedPolicy) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trained.algorithm.policy.state_dict().items()}


def equity(trained: TrainedPolicy, market) -> np.ndarray:
    actor = PolicyActor("p", trained.act)
    normalizer = trained.builder.normalizer
    return backtest(market, trained.config.env, normalizer, [actor], 600)["p"].equity


def test_the_same_config_and_seed_give_bit_identical_weights_and_metrics(market):
    config = replace(
        SMALL,
        normalize_observations=True,
        normalize_rewards=True,
        action_distribution="gsde",
        env=replace(SMALL.env, decision_interval=4, turnover_penalty=0.001, episode_length=16),
    )
    train = market.slice(0, 600)
    first, second = train_policy(train, config), train_policy(train, config)
    a, b = weights(first), weights(second)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    np.testing.assert_array_equal(equity(first, market), equity(second, market))
    other = train_policy(train, replace(config, seed=1))
    assert any(not torch.equal(a[k], weights(other)[k]) for k in a)


def test_validation_keeps_the_best_checkpoint_and_stops_after_the_patience(market):
    scores = iter([1.0, 3.0, 2.0, 0.5, 0.2, 0.1, 0.0, -1.0])
    seen: list[tuple[int, dict[str, torch.Tensor]]] = []

    def validate(trained: TrainedPolicy) -> float:
        seen.append((trained.algorithm.num_timesteps, copy.deepcopy(weights(trained))))
        return next(scores)

    config = replace(SMALL, total_timesteps=4_096, validation_every=256, early_stopping_patience=3)
    trained = train_policy(market.slice(0, 600), config, validate)
    assert len(seen) == 5  # the best (2nd), then 3 without improvement: stop
    assert trained.best_timesteps == seen[1][0]
    assert trained.algorithm.num_timesteps < config.total_timesteps
    final = weights(trained)
    for key, value in seen[1][1].items():
        assert torch.equal(final[key], value), key
    assert [v for _, v in trained.curves["validation/score"]] == [1.0, 3.0, 2.0, 0.5, 0.2]


def test_observation_scaling_ships_with_the_policy_and_is_applied_when_acting(market):
    config = replace(SMALL, normalize_observations=True)
    trained = train_policy(market.slice(0, 600), config)
    assert trained.scaling is not None
    assert trained.scaling.mean.shape == trained.builder.observation_space.shape
    assert np.abs(trained.scaling.mean).max() > 0.01  # fitted, not the initial zeros
    obs = np.random.default_rng(0).normal(size=(5, trained.scaling.mean.size)).astype(np.float32)
    expected = trained.algorithm.predict(trained.scaling.apply(obs), deterministic=True)[0]
    np.testing.assert_array_equal(trained.act(obs), expected)
    assert not np.allclose(trained.act(obs), trained.algorithm.predict(obs, deterministic=True)[0])


@pytest.mark.parametrize("distribution", ["gsde", "squashed"])
def test_exploration_settings_reach_the_policy(market, distribution):
    trained = train_policy(market.slice(0, 600), replace(SMALL, action_distribution=distribution))
    policy = trained.algorithm.policy
    assert trained.algorithm.use_sde and policy.use_sde
    assert policy.squash_output is (distribution == "squashed")
    actions = trained.act(np.zeros((3, trained.builder.observation_space.shape[0]), np.float32))
    assert np.all(np.abs(actions) <= 1.0)


def test_learning_curves_are_collected_from_sb3s_logger(market):
    trained = train_policy(market.slice(0, 600), replace(SMALL, total_timesteps=2_048))
    for key in ("train/value_loss", "train/policy_gradient_loss", "rollout/ep_rew_mean"):
        assert key in trained.curves, sorted(trained.curves)
        steps = [step for step, _ in trained.curves[key]]
        assert steps == sorted(steps) and steps[-1] <= 2_048
    assert len(trained.curves["train/value_loss"]) >= 2
