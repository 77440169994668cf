"""One dataclass configures one training run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from training.env_config import EnvConfig

DEFAULT_FEATURES = (
    "basis",
    "basis_zscore",
    "basis_velocity_1",
    "log_return_1",
    "log_return_24",
    "realized_vol",
    "volume_zscore",
    "last_funding_rate_8h",
    "funding_zscore",
    "funding_interval_remaining",
    "regime_code",
)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run; the same config and seed give the same policy."""

    algorithm: str = "PPO"
    """Stable-Baselines3 algorithm: PPO, A2C or SAC."""
    total_timesteps: int = 20_000
    """Environment steps of training."""
    seed: int = 0
    """Seeds the environment, the policy initialization and torch."""
    venue: str = "synthetic"
    """Venue whose feature rows are used."""
    timeframe: str = "1h"
    """Bar timeframe of the feature mart to train on."""
    feature_columns: tuple[str, ...] = DEFAULT_FEATURES
    """Feature-mart columns in the observation, in this order."""
    test_fraction: float = 0.25
    """Trailing fraction of bars held out for out-of-sample evaluation; never seen in training."""
    n_envs: int = 4
    """Parallel environments per rollout."""
    learning_rate: float = 3e-4
    """Optimizer step size."""
    n_steps: int = 256
    """Rollout length per environment between updates (PPO, A2C)."""
    batch_size: int = 256
    """Minibatch size (PPO, SAC)."""
    gamma: float = 0.99
    """Discount factor."""
    net_arch: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of the policy and value networks."""
    log_std_init: float = -2.0
    """Initial log std of the Gaussian policy (PPO, A2C, SAC); -2 gives std 0.14 in action
    units, where SB3's default 0 (std 1, then clipped to [-1, 1]) trains a churning policy."""
    ent_coef: float = 0.0
    """Entropy bonus coefficient (PPO, A2C)."""
    env: EnvConfig = field(default_factory=lambda: EnvConfig(max_leverage=1.0, no_trade_band=0.1))
    """The trading environment: window, leverage, costs, margin, reward, episodes. Training
    defaults to 1x per asset and a 10% no-trade band (see README, "Results, honestly")."""

    def __post_init__(self) -> None:
        if self.algorithm not in ("PPO", "A2C", "SAC"):
            raise ValueError(f"algorithm must be PPO, A2C or SAC, got {self.algorithm!r}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.total_timesteps <= 0:
            raise ValueError(f"total_timesteps must be positive, got {self.total_timesteps}")

    def as_params(self) -> dict[str, object]:
        """Flat parameters for MLflow."""
        params = {k: v for k, v in asdict(self).items() if k != "env"}
        params.update({f"env.{k}": v for k, v in asdict(self.env).items()})
        return {k: str(v) if isinstance(v, tuple | list | dict) else v for k, v in params.items()}
