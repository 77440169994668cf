"""Per-environment settings of the training run and the promotion gate."""

from __future__ import annotations

from dataclasses import replace

import dagster as dg

from evaluation.gate import GateConfig
from training.config import TrainConfig


class TrainingSettings(dg.ConfigurableResource):
    """Budget and shape of a training run (the rest of ``TrainConfig`` keeps its defaults)."""

    algorithm: str = "PPO"
    total_timesteps: int = 100_000
    seed: int = 0
    n_envs: int = 4
    n_steps: int = 256
    batch_size: int = 256
    episode_length: int = 512
    test_fraction: float = 0.25

    def train_config(self, venue: str) -> TrainConfig:
        base = TrainConfig()
        return replace(
            base,
            algorithm=self.algorithm,
            total_timesteps=self.total_timesteps,
            seed=self.seed,
            n_envs=self.n_envs,
            n_steps=self.n_steps,
            batch_size=self.batch_size,
            test_fraction=self.test_fraction,
            venue=venue,
            env=replace(base.env, episode_length=self.episode_length),
        )


class PromotionGateSettings(dg.ConfigurableResource):
    """Thresholds of the promotion gate (see ``evaluation.gate.GateConfig``)."""

    min_sharpe_margin_vs_baseline: float = 0.0
    min_sharpe_margin_vs_champion: float = 0.0
    max_drawdown: float = 0.5

    def gate_config(self) -> GateConfig:
        return GateConfig(
            min_sharpe_margin_vs_baseline=self.min_sharpe_margin_vs_baseline,
            min_sharpe_margin_vs_champion=self.min_sharpe_margin_vs_champion,
            max_drawdown=self.max_drawdown,
        )
