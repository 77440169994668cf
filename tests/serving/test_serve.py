"""Serving a real (untrained) SB3 policy on the latest bar of a market."""

import duckdb
import numpy as np
import pytest
from stable_baselines3 import PPO

from serving.safety import enforce_limits
from serving.serve import TARGET_WEIGHTS_TABLE, decide_target_weights, write_decision
from tests.support.markets import make_synthetic_market
from training.env import PerpPortfolioEnv
from training.env_config import EnvConfig
from training.market import MarketData
from training.observation import PortfolioState
from training.policy_model import PolicyModel, PolicySpec


def _policy(market: MarketData) -> PolicyModel:
    config = EnvConfig(window=4, episode_length=20)
    env = PerpPortfolioEnv(market, config)
    policy = PolicyModel()
    policy.algorithm = PPO("MlpPolicy", env, n_steps=32, batch_size=32, seed=0, device="cpu")
    policy.spec = PolicySpec(
        algorithm="PPO",
        symbols=market.symbols,
        venue="synthetic",
        timeframe="1h",
        env_config=config,
        builder=env.builder,
        train_end=str(market.timestamps[-1]),
    )
    return policy


def test_the_decision_is_stamped_with_the_last_bars_close_and_clamped(tmp_path):
    market = make_synthetic_market(n_assets=3, n_bars=80)  # bars open 2024-01-01 00:00..07:00 +3d
    policy = _policy(market)
    decision = decide_target_weights(policy, market)
    assert decision.decision_ts == market.close_times[-1]
    assert str(decision.decision_ts) == "2024-01-04T08:00:00.000000000"
    portfolio = PortfolioState.flat(3, market.hours_to_funding[-1])
    observation = policy.spec.builder.build(market.features, 79, portfolio)
    raw = policy.predict(None, observation[None])[0]
    np.testing.assert_array_equal(decision.raw_weights, raw)
    np.testing.assert_array_equal(
        decision.target_weights, enforce_limits(raw, market.symbols).weights
    )
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        assert write_decision(con, decision, "7") == 3
        rows = con.execute(f"SELECT DISTINCT decision_ts FROM {TARGET_WEIGHTS_TABLE}").fetchall()
    assert [str(ts) for (ts,) in rows] == ["2024-01-04 08:00:00"]


def test_a_policy_for_other_symbols_is_refused():
    market = make_synthetic_market(n_assets=3, n_bars=80)
    policy = _policy(market)
    with pytest.raises(ValueError, match="policy trades"):
        decide_target_weights(policy, make_synthetic_market(n_assets=2, n_bars=80))
