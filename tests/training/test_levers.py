"""Training levers: the decision interval (env, vec env and the backtest engine), the turnover
penalty, the reward scale and the equal-weight action baseline."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from evaluation.engine import PolicyActor, ScheduledWeights, backtest
from evaluation.strategies import equal_weight, funding_carry
from tests.support.markets import make_synthetic_market
from training.actions import actions_for_weights, target_weights
from training.env import PerpPortfolioEnv
from training.env_config import EnvConfig
from training.observation import FeatureNormalizer
from training.simulator import BatchedSimulator
from training.vec_env import BatchedPerpPortfolioVecEnv

K = 6
CONFIG = EnvConfig(window=8, episode_length=20, random_start=False, no_trade_band=0.0)


@pytest.fixture(scope="module")
def market():
    return make_synthetic_market(n_assets=3, n_bars=400)


def actions_for(step: int, n: int) -> np.ndarray:
    """A deterministic action sequence that trades at every decision."""
    return np.sin(np.arange(n) + 0.7 * step)[None] * 0.8


def test_one_decision_is_k_bars_holding_after_the_first(market):
    sim_k = BatchedSimulator(market, replace(CONFIG, decision_interval=K), 1)
    sim_1 = BatchedSimulator(market, CONFIG, 1)
    rng = np.random.default_rng(0)
    for sim in (sim_k, sim_1):
        sim.reset_env(0, rng)
        sim.refresh()
    hold = np.ones((1, market.n_assets), dtype=bool)
    for step in range(5):
        action = actions_for(step, market.n_assets)
        reward_k, _, info_k = sim_k.decide(action)
        rewards, fees = [], []
        for j in range(K):
            reward, _, info = sim_1.step(action, None if j == 0 else hold)
            rewards.append(reward[0])
            fees.append(info["fees"][0])
        assert reward_k[0] == pytest.approx(sum(rewards), abs=1e-15)
        assert info_k["fees"][0] == pytest.approx(sum(fees), abs=1e-12)
        assert fees[0] > 0 and fees[1:] == [0.0] * (K - 1)  # orders only at the decision
        assert info_k["equity"][0] == info["equity"][0]
        np.testing.assert_array_equal(sim_k.qty, sim_1.qty)
    assert int(sim_k.t[0]) == int(sim_1.t[0]) == sim_k.first + 5 * K


def test_an_episode_is_episode_length_decisions_of_k_bars(market):
    env = PerpPortfolioEnv(market, replace(CONFIG, decision_interval=K))
    _, info = env.reset(seed=0)
    first = info["bar"]
    steps, truncated = 0, False
    while not truncated:
        _, _, terminated, truncated, info = env.step(np.zeros(market.n_assets, np.float32))
        assert not terminated
        steps += 1
    assert steps == CONFIG.episode_length
    assert info["bar"] - first == CONFIG.episode_length * K


def test_vec_env_matches_the_single_env_with_an_interval(market):
    config = replace(CONFIG, decision_interval=K, random_start=True)
    vec = BatchedPerpPortfolioVecEnv(market, config, n_envs=2)
    vec.seed(3)
    obs = vec.reset()
    single = PerpPortfolioEnv(market, config)
    single_obs, _ = single.reset(seed=3)
    np.testing.assert_array_equal(obs[0], single_obs)
    for step in range(8):
        action = actions_for(step, market.n_assets)
        obs, reward, _, _ = vec.step(np.repeat(action, 2, axis=0))
        single_obs, single_reward, *_ = single.step(action[0])
        np.testing.assert_allclose(obs[0], single_obs, rtol=0, atol=1e-6)
        assert reward[0] == pytest.approx(single_reward, abs=1e-6)


def test_the_engine_asks_a_policy_every_k_bars_and_matches_the_env(market):
    config = replace(CONFIG, decision_interval=K, episode_length=None)
    normalizer = FeatureNormalizer.fit(market.features[:200])
    calls: list[int] = []

    def act(obs: np.ndarray) -> np.ndarray:
        calls.append(len(calls))
        return actions_for(len(calls) - 1, market.n_assets)

    first_bar = 200
    ledger = backtest(market, config, normalizer, [PolicyActor("p", act)], first_bar)["p"]
    n_bars = market.n_bars - first_bar
    assert len(calls) == -(-n_bars // K)  # one decision per started span of K bars
    traded = np.flatnonzero(ledger.turnover > 0)
    assert traded.size > 0 and np.all(traded % K == 0)

    env = PerpPortfolioEnv(market, config, normalizer, start=first_bar - config.window)
    env.reset(seed=0)
    equity = []
    for step in range(n_bars // K):
        _, _, _, _, info = env.step(actions_for(step, market.n_assets)[0])
        equity.append(info["equity"])
    np.testing.assert_allclose(ledger.equity[K::K][: len(equity)], equity, rtol=0, atol=1e-9)


def test_turnover_penalty_and_reward_scale_enter_the_reward_exactly(market):
    def first_reward(config: EnvConfig) -> tuple[float, float, float]:
        sim = BatchedSimulator(market, config, 1)
        sim.reset_env(0, np.random.default_rng(0))
        sim.refresh()
        equity0 = float(sim.equity[0])
        reward, _, info = sim.step(actions_for(0, market.n_assets))
        return float(reward[0]), float(info["turnover"][0]), float(info["equity"][0]) / equity0

    plain, turnover, growth = first_reward(CONFIG)
    assert turnover > 0.5 and plain == pytest.approx(growth - 1.0, abs=1e-15)
    penalized, *_ = first_reward(replace(CONFIG, turnover_penalty=0.01, reward_scale=3.0))
    assert penalized == pytest.approx(3.0 * (plain - 0.01 * turnover), abs=1e-15)


@pytest.mark.parametrize(
    "field, value", [("decision_interval", 0), ("turnover_penalty", -0.1), ("reward_scale", 0.0)]
)
def test_bad_lever_values_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        EnvConfig(**{field: value})


def test_an_equal_weight_baseline_makes_action_zero_the_equal_weight_book():
    config = EnvConfig(max_leverage=1.0, gross_leverage_cap=3.0, action_baseline="equal_weight")
    n = 4
    np.testing.assert_allclose(target_weights(np.zeros(n), config), np.full(n, 0.25))
    tilt = np.array([0.1, -0.1, 1.0, -1.0])
    np.testing.assert_allclose(target_weights(tilt, config), [0.35, 0.15, 1.0, -0.75])
    weights = np.array([0.5, -0.2, 0.0, 0.3])
    np.testing.assert_allclose(
        target_weights(actions_for_weights(weights, config), config), weights
    )
    with pytest.raises(ValueError, match="action_baseline"):
        EnvConfig(action_baseline="risk_parity")


def test_schedules_keep_their_ledgers_under_an_equal_weight_action_baseline(market):
    normalizer = FeatureNormalizer.fit(market.features[:200])
    config = replace(CONFIG, episode_length=None, no_trade_band=0.02)
    shifted = replace(config, action_baseline="equal_weight")
    scheduled = [equal_weight(market, "1h"), funding_carry(market)]
    plain = backtest(market, config, None, scheduled, 250)
    moved = backtest(market, shifted, None, scheduled, 250)
    for name in plain:
        np.testing.assert_allclose(moved[name].equity, plain[name].equity, rtol=0, atol=1e-9)
    zero = PolicyActor("zero", lambda obs: np.zeros((len(obs), market.n_assets)))
    every_bar = ScheduledWeights(
        "equal_every_bar", np.full((market.n_bars, market.n_assets), 1.0 / market.n_assets)
    )
    ledgers = backtest(market, shifted, normalizer, [zero, every_bar], 250)
    np.testing.assert_allclose(
        ledgers["zero"].equity, ledgers["equal_every_bar"].equity, rtol=0, atol=1e-9
    )
    assert ledgers["zero"].weights[5].sum() == pytest.approx(1.0, abs=0.05)
