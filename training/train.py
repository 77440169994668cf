"""Train an SB3 agent on the perpetual-futures environment."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import KVWriter, Logger
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import VecEnv, VecMonitor, VecNormalize

from training.config import TrainConfig
from training.market import MarketData
from training.observation import FeatureNormalizer, ObservationBuilder, ObservationScaling
from training.policy_model import ALGORITHMS
from training.vec_env import BatchedPerpPortfolioVecEnv

Curves = dict[str, list[tuple[int, float]]]
"""Learning curves: metric name -> (timestep, value) points."""


@dataclass
class TrainedPolicy:
    """A fitted agent and the observation builder (with its fitted normalizer) it acts on."""

    algorithm: BaseAlgorithm
    builder: ObservationBuilder
    config: TrainConfig
    train_seconds: float
    scaling: ObservationScaling | None = None
    """Observation statistics the policy was trained on, if ``normalize_observations``."""
    curves: Curves = field(default_factory=dict)
    """SB3's logged values (``rollout/ep_rew_mean``, ``train/*`` losses) and, with validation,
    ``validation/score`` per evaluation."""
    best_timesteps: int | None = None
    """Timestep of the kept checkpoint when a validation window chose it."""

    def act(self, observations: np.ndarray) -> np.ndarray:
        """Deterministic actions in [-1, 1] for a (B, D) batch of built observations."""
        obs = np.asarray(observations, np.float32)
        if self.scaling is not None:
            obs = self.scaling.apply(obs)
        return np.asarray(self.algorithm.predict(obs, deterministic=True)[0], np.float64)


Validator = Callable[[TrainedPolicy], float]
"""Scores a policy on a validation window (higher is better), e.g. its out-of-sample Sharpe."""


def train_policy(
    train_market: MarketData, config: TrainConfig, validate: Validator | None = None
) -> TrainedPolicy:
    """Fit ``config.algorithm`` on ``train_market`` (the in-sample bars only).

    With ``validate`` and ``config.validation_every``, the policy is scored every that many
    timesteps; the best-scoring checkpoint (weights and observation statistics) is the one
    returned, and training stops after ``config.early_stopping_patience`` evaluations without
    improvement (when > 0)."""
    set_random_seed(config.seed)
    torch.set_num_threads(1)
    normalizer = FeatureNormalizer.fit(train_market.features)
    batched = BatchedPerpPortfolioVecEnv(train_market, config.env, config.n_envs, normalizer)
    batched.seed(config.seed)
    env: VecEnv = VecMonitor(batched)
    if config.normalize_observations or config.normalize_rewards:
        env = VecNormalize(
            env,
            norm_obs=config.normalize_observations,
            norm_reward=config.normalize_rewards,
            gamma=config.gamma,
            clip_obs=config.env.obs_clip,
        )
    policy, kwargs = _algorithm_kwargs(config, train_market)
    algorithm = ALGORITHMS[config.algorithm](policy, env, **kwargs)
    curves: Curves = {}
    algorithm.set_logger(Logger(folder=None, output_formats=[_CurveWriter(curves)]))
    trained = TrainedPolicy(algorithm, batched.sim.builder, config, 0.0, _scaling(env), curves)
    callback = (
        _ValidationCallback(trained, validate, config)
        if validate is not None and config.validation_every > 0
        else None
    )
    started = time.perf_counter()
    algorithm.learn(total_timesteps=config.total_timesteps, callback=callback)
    trained.train_seconds = time.perf_counter() - started
    trained.scaling = _scaling(env)
    if callback is not None:
        callback.restore_best()
    return trained


def _algorithm_kwargs(config: TrainConfig, market: MarketData) -> tuple[Any, dict[str, Any]]:
    """SB3 policy (class or name) and constructor arguments of ``config``."""
    policy: Any = "MlpPolicy"
    policy_kwargs: dict[str, Any] = {
        "net_arch": list(config.net_arch),
        "log_std_init": config.log_std_init,
    }
    if config.policy_network == "eiie":
        from training.networks import policy_kwargs_for

        n_features = len(market.feature_names)
        policy, extra = policy_kwargs_for("eiie", market.n_assets, config.env.window, n_features)
        policy_kwargs = {**extra, "log_std_init": config.log_std_init}
    kwargs: dict[str, Any] = {
        "learning_rate": config.learning_rate,
        "gamma": config.gamma,
        "seed": config.seed,
        "device": "cpu",
        "verbose": 0,
    }
    if config.action_distribution != "gaussian":
        kwargs.update(use_sde=True, sde_sample_freq=config.sde_sample_freq)
        if config.action_distribution == "squashed" and config.algorithm != "SAC":
            policy_kwargs["squash_output"] = True
    if config.algorithm == "PPO":
        kwargs.update(
            n_steps=config.n_steps,
            batch_size=config.batch_size,
            n_epochs=config.n_epochs,
            ent_coef=config.ent_coef,
        )
    elif config.algorithm == "A2C":
        kwargs.update(n_steps=max(1, config.n_steps // 32), ent_coef=config.ent_coef)
    else:
        kwargs.update(
            batch_size=config.batch_size, learning_starts=min(1_000, config.total_timesteps // 10)
        )
    kwargs["policy_kwargs"] = policy_kwargs
    return policy, kwargs


def _scaling(env: VecEnv) -> ObservationScaling | None:
    """The observation statistics of a ``VecNormalize`` that normalizes observations, copied."""
    if not isinstance(env, VecNormalize) or not env.norm_obs:
        return None
    rms = env.obs_rms
    assert not isinstance(rms, dict)  # a Box observation space
    return ObservationScaling(
        mean=rms.mean.copy(), var=rms.var.copy(), clip=env.clip_obs, epsilon=env.epsilon
    )


class _CurveWriter(KVWriter):
    """Collects SB3's logged numeric values into ``curves`` (no files, no stdout)."""

    def __init__(self, curves: Curves):
        self.curves = curves

    def write(
        self,
        key_values: dict[str, Any],
        key_excluded: dict[str, tuple[str, ...]],
        step: int = 0,
    ) -> None:
        for key, value in key_values.items():
            if isinstance(value, int | float | np.floating | np.integer) and np.isfinite(value):
                self.curves.setdefault(key, []).append((int(step), float(value)))


class _ValidationCallback(BaseCallback):
    """Scores the policy every ``validation_every`` timesteps and keeps the best checkpoint."""

    def __init__(self, trained: TrainedPolicy, validate: Validator, config: TrainConfig):
        super().__init__()
        self.trained, self.validate = trained, validate
        self.every, self.patience = config.validation_every, config.early_stopping_patience
        self.next_at = self.every
        self.best_score = -np.inf
        self.best: tuple[dict[str, Any], ObservationScaling | None, int] | None = None
        self.stale = 0

    def _on_step(self) -> bool:
        if self.num_timesteps < self.next_at:
            return True
        self.next_at += self.every
        self.trained.scaling = _scaling(self.trained.algorithm.get_env())  # type: ignore[arg-type]
        score = float(self.validate(self.trained))
        self.trained.curves.setdefault("validation/score", []).append((self.num_timesteps, score))
        if score > self.best_score:
            self.best_score, self.stale = score, 0
            state = copy.deepcopy(self.trained.algorithm.policy.state_dict())
            self.best = (state, self.trained.scaling, self.num_timesteps)
            return True
        self.stale += 1
        return not (self.patience and self.stale >= self.patience)

    def restore_best(self) -> None:
        """Put the best checkpoint's weights and statistics back into the trained policy."""
        if self.best is None:
            return
        state, scaling, timesteps = self.best
        self.trained.algorithm.policy.load_state_dict(state)
        self.trained.scaling, self.trained.best_timesteps = scaling, timesteps


def train_end_timestamp(train_market: MarketData) -> str:
    """ISO timestamp of the last in-sample bar."""
    return str(np.datetime_as_string(train_market.timestamps[-1], unit="s"))
