"""Gymnasium / SB3 API conformance of the single environment."""

import warnings

import numpy as np
from stable_baselines3.common.env_checker import check_env

from tests.support.markets import make_synthetic_market
from training.env import PerpPortfolioEnv
from training.env_config import EnvConfig


def test_check_env_zero_warnings():
    env = PerpPortfolioEnv(make_synthetic_market(), EnvConfig(episode_length=64))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, warn=True)
    assert [str(w.message) for w in caught] == []


def test_spaces_and_info_keys():
    market = make_synthetic_market(n_assets=3, n_features=4)
    env = PerpPortfolioEnv(market, EnvConfig(window=8, episode_length=16))
    assert env.action_space.shape == (3,)
    assert env.action_space.dtype == np.float32
    assert env.observation_space.shape == (8 * 3 * 4 + 4 * 3 + 3,)
    obs, info = env.reset(seed=1)
    assert obs.dtype == np.float32 and env.observation_space.contains(obs)
    _, _, _, _, info = env.step(env.action_space.sample())
    for key in ("equity", "fees", "funding", "slippage", "turnover", "liquidated", "weights"):
        assert key in info
    assert info["weights"].shape == (3,)
    assert info["timestamp"] == market.timestamps[info["bar"]]


def test_episode_truncates_at_fixed_horizon():
    env = PerpPortfolioEnv(make_synthetic_market(), EnvConfig(episode_length=10))
    env.reset(seed=3)
    flags = [env.step(np.zeros(3, np.float32))[2:4] for _ in range(10)]
    assert flags[:-1] == [(False, False)] * 9
    assert flags[-1] == (False, True)


def test_full_run_without_random_start_covers_window_to_end():
    market = make_synthetic_market(n_bars=100)
    env = PerpPortfolioEnv(market, EnvConfig(window=8, episode_length=None), start=20, stop=80)
    _, info = env.reset(seed=0)
    assert info["bar"] == 20 + 8 - 1
    steps, truncated = 0, False
    while not truncated:
        *_, truncated, info = env.step(np.zeros(3, np.float32))
        steps += 1
    assert info["bar"] == 79
    assert steps == 79 - 27


def test_step_outputs_are_not_overwritten_by_later_steps():
    env = PerpPortfolioEnv(make_synthetic_market(), EnvConfig(window=8, episode_length=16))
    env.reset(seed=2)
    obs, _, _, _, info = env.step(np.full(3, 0.5, np.float32))
    state = env.portfolio_state()
    kept = obs.copy(), info["weights"].copy(), info["unrealized_pnl"].copy(), state.vector()
    for _ in range(4):
        env.step(-np.ones(3, np.float32))
    np.testing.assert_array_equal(obs, kept[0])
    np.testing.assert_array_equal(info["weights"], kept[1])
    np.testing.assert_array_equal(info["unrealized_pnl"], kept[2])
    np.testing.assert_array_equal(state.vector(), kept[3])
