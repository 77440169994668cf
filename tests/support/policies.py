"""A real SB3 policy wrapped as a registered one, without MLflow, for serving tests."""

from __future__ import annotations

import torch
from stable_baselines3 import PPO

from training.env import PerpPortfolioEnv
from training.env_config import EnvConfig
from training.market import MarketData
from training.policy_model import PolicyModel, PolicySpec

ACTION_GAIN = 30.0
"""SB3 initialises the action head near 0 (an untrained policy would not trade): its weights
are scaled by this."""


def untrained_policy(market: MarketData, config: EnvConfig, train_end_bar: int) -> PolicyModel:
    """An untrained PPO ``MlpPolicy`` (seed 1) that trades, with the spec of ``market``."""
    env = PerpPortfolioEnv(market, config)
    policy = PolicyModel()
    policy.algorithm = PPO("MlpPolicy", env, n_steps=32, batch_size=32, seed=1, device="cpu")
    with torch.no_grad():
        policy.algorithm.policy.action_net.weight.mul_(ACTION_GAIN)
    policy.spec = PolicySpec(
        algorithm="PPO",
        symbols=market.symbols,
        venue="synthetic",
        timeframe="1h",
        env_config=config,
        builder=env.builder,
        train_end=str(market.timestamps[train_end_bar]),
    )
    return policy
