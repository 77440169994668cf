"""Train an SB3 agent on the perpetual-futures environment."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.utils import set_random_seed

from training.config import TrainConfig
from training.market import MarketData
from training.observation import FeatureNormalizer, ObservationBuilder, ObservationScaling
from training.policy_model import ALGORITHMS
from training.vec_env import BatchedPerpPortfolioVecEnv


@dataclass
class TrainedPolicy:
    """A fitted agent and the observation builder (with its fitted normalizer) it acts on."""

    algorithm: BaseAlgorithm
    builder: ObservationBuilder
    config: TrainConfig
    train_seconds: float
    scaling: ObservationScaling | None = None
    """Observation statistics the policy was trained on, if ``normalize_observations``."""

    def act(self, observations: np.ndarray) -> np.ndarray:
        """Deterministic actions in [-1, 1] for a (B, D) batch of built observations."""
        obs = np.asarray(observations, np.float32)
        if self.scaling is not None:
            obs = self.scaling.apply(obs)
        return np.asarray(self.algorithm.predict(obs, deterministic=True)[0], np.float64)


def train_policy(train_market: MarketData, config: TrainConfig) -> TrainedPolicy:
    """Fit ``config.algorithm`` on ``train_market`` (the in-sample bars only)."""
    set_random_seed(config.seed)
    torch.set_num_threads(1)
    normalizer = FeatureNormalizer.fit(train_market.features)
    env = BatchedPerpPortfolioVecEnv(train_market, config.env, config.n_envs, normalizer)
    env.seed(config.seed)
    kwargs: dict[str, Any] = {
        "learning_rate": config.learning_rate,
        "gamma": config.gamma,
        "seed": config.seed,
        "device": "cpu",
        "verbose": 0,
        "policy_kwargs": {"net_arch": list(config.net_arch), "log_std_init": config.log_std_init},
    }
    if config.algorithm == "PPO":
        kwargs.update(
            n_steps=config.n_steps, batch_size=config.batch_size, ent_coef=config.ent_coef
        )
    elif config.algorithm == "A2C":
        kwargs.update(n_steps=max(1, config.n_steps // 32), ent_coef=config.ent_coef)
    else:
        kwargs.update(
            batch_size=config.batch_size, learning_starts=min(1_000, config.total_timesteps // 10)
        )
    algorithm = ALGORITHMS[config.algorithm]("MlpPolicy", env, **kwargs)
    started = time.perf_counter()
    algorithm.learn(total_timesteps=config.total_timesteps)
    return TrainedPolicy(
        algorithm=algorithm,
        builder=env.sim.builder,
        config=config,
        train_seconds=time.perf_counter() - started,
    )


def train_end_timestamp(train_market: MarketData) -> str:
    """ISO timestamp of the last in-sample bar."""
    return str(np.datetime_as_string(train_market.timestamps[-1], unit="s"))
