"""The batched VecEnv reproduces B independent single environments exactly."""

import numpy as np
import pytest

from tests.support.markets import make_synthetic_market
from training.env import PerpPortfolioEnv
from training.env_config import EnvConfig, RandomizationConfig
from training.vec_env import BatchedPerpPortfolioVecEnv

INFO_KEYS = ("equity", "cash", "fees", "slippage", "funding", "turnover", "liquidated", "bar")


def _run_pair(config: EnvConfig, n_envs: int = 4, n_steps: int = 60, seed: int = 11):
    market = make_synthetic_market(n_assets=3, n_bars=300, seed=5)
    vec = BatchedPerpPortfolioVecEnv(market, config, n_envs=n_envs)
    singles = [PerpPortfolioEnv(market, config) for _ in range(n_envs)]
    vec.seed(seed)
    vec_obs = vec.reset()
    single_obs = [env.reset(seed=seed + i)[0] for i, env in enumerate(singles)]
    np.testing.assert_array_equal(vec_obs, np.stack(single_obs))
    rng = np.random.default_rng(0)
    episode_ends = 0
    for _ in range(n_steps):
        actions = rng.uniform(-1, 1, (n_envs, 3)).astype(np.float32)
        obs, rewards, dones, infos = vec.step(actions)
        for i, env in enumerate(singles):
            o, r, term, trunc, info = env.step(actions[i])
            assert dones[i] == (term or trunc)
            assert rewards[i] == np.float32(r)
            for key in INFO_KEYS:
                assert infos[i][key] == info[key], key
            np.testing.assert_array_equal(infos[i]["weights"], info["weights"])
            if term or trunc:
                episode_ends += 1
                np.testing.assert_array_equal(infos[i]["terminal_observation"], o)
                assert infos[i]["TimeLimit.truncated"] == (trunc and not term)
                o, _ = env.reset()
            np.testing.assert_array_equal(obs[i], o)
    return episode_ends


def test_batched_equals_singles_across_auto_resets():
    assert _run_pair(EnvConfig(window=8, episode_length=20)) >= 8


@pytest.mark.parametrize("reward", ["pnl", "sortino", "delayed"])
def test_batched_equals_singles_with_randomization_and_rewards(reward):
    config = EnvConfig(
        window=8,
        episode_length=15,
        reward=reward,
        delay_k=4,
        no_trade_band=0.05,
        randomization=RandomizationConfig(
            basis_noise_std=1e-4,
            funding_noise_std=5e-5,
            funding_shift_max_bars=2,
            fee_mult_range=(0.5, 1.5),
            slippage_mult_range=(0.5, 2.0),
        ),
    )
    assert _run_pair(config, n_steps=40) >= 8


def test_batched_equals_singles_through_liquidations():
    config = EnvConfig(window=8, episode_length=40, max_leverage=50.0, gross_leverage_cap=150.0)
    market = make_synthetic_market(n_assets=3, n_bars=300, seed=5)
    env = PerpPortfolioEnv(market, config)
    env.reset(seed=0)
    liquidations = 0
    for _ in range(200):
        *_, term, trunc, info = env.step(np.ones(3, np.float32))
        liquidations += info["liquidated"]
        if term or trunc:
            env.reset()
    assert liquidations > 0
    _run_pair(config, n_steps=80)


def test_vec_env_runs_under_sb3_ppo():
    from stable_baselines3 import PPO

    market = make_synthetic_market(n_assets=2, n_bars=200, seed=1)
    vec = BatchedPerpPortfolioVecEnv(market, EnvConfig(window=4, episode_length=16), n_envs=4)
    model = PPO("MlpPolicy", vec, n_steps=16, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=128)
    assert model.num_timesteps == 128
