"""One dataclass configures one training run; presets are YAML files of overrides under
``configs/``, applied over the dataclass defaults (the one source of defaults)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from training.env_config import EnvConfig

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
"""Where the presets live: ``configs/<name>.yaml``."""
ACTION_DISTRIBUTIONS = ("gaussian", "gsde", "squashed")
POLICY_NETWORKS = ("mlp", "eiie")

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
    symbols: tuple[str, ...] | None = None
    """Perpetuals to trade, in this order; None: the market source's whole universe."""
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
    n_epochs: int = 10
    """Passes over each rollout (PPO)."""
    action_distribution: str = "gaussian"
    """Exploration noise of PPO and A2C: ``gaussian`` (a state-independent Gaussian with a learned
    std, clipped to [-1, 1]), ``gsde`` (generalized state-dependent exploration, resampled every
    ``sde_sample_freq`` steps, so the book does not jitter every bar) or ``squashed`` (gSDE
    through a tanh: no clipping). SAC is always a squashed Gaussian."""
    sde_sample_freq: int = -1
    """Steps between gSDE noise resamples; -1 resamples only at each rollout's start."""
    policy_network: str = "mlp"
    """``mlp`` (SB3's MlpPolicy with ``net_arch``) or ``eiie`` (one encoder shared by every
    asset's window, permutation-equivariant actor: ``training.networks``; PPO and A2C)."""
    normalize_observations: bool = False
    """Scale observations by running statistics (SB3 ``VecNormalize``); they ship with the model."""
    normalize_rewards: bool = False
    """Scale rewards by a running estimate of the discounted return's std (``VecNormalize``)."""
    validation_every: int = 2048
    """Timesteps between evaluations of the policy on the validation window (0: none). With a
    validation window the best-scoring checkpoint is kept."""
    early_stopping_patience: int = 4
    """Stop after this many validation evaluations without a better score (0: never early)."""
    env: EnvConfig = field(
        default_factory=lambda: EnvConfig(
            window=4,
            max_leverage=1.0,
            no_trade_band=0.1,
            episode_length=90,
            decision_interval=24,
        )
    )
    """The trading environment: window, leverage, costs, margin, reward, episodes. Training
    defaults to the ablation's choice (docs/training.md): a decision a day (every 24 bars), a
    4-bar observation window, 90-decision episodes, 1x per asset and a 10% no-trade band."""

    def __post_init__(self) -> None:
        if self.algorithm not in ("PPO", "A2C", "SAC"):
            raise ValueError(f"algorithm must be PPO, A2C or SAC, got {self.algorithm!r}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.total_timesteps <= 0:
            raise ValueError(f"total_timesteps must be positive, got {self.total_timesteps}")
        if self.action_distribution not in ACTION_DISTRIBUTIONS:
            raise ValueError(
                f"action_distribution must be one of {ACTION_DISTRIBUTIONS}, "
                f"got {self.action_distribution!r}"
            )
        if self.policy_network not in POLICY_NETWORKS:
            raise ValueError(
                f"policy_network must be one of {POLICY_NETWORKS}, got {self.policy_network!r}"
            )
        if self.policy_network == "eiie" and self.algorithm == "SAC":
            raise ValueError("policy_network 'eiie' is an actor-critic policy: PPO or A2C")
        if self.validation_every < 0 or self.early_stopping_patience < 0:
            raise ValueError("validation_every and early_stopping_patience must be >= 0")

    def as_params(self) -> dict[str, object]:
        """Flat parameters for MLflow."""
        params = {k: v for k, v in asdict(self).items() if k != "env"}
        params.update({f"env.{k}": v for k, v in asdict(self.env).items()})
        return {k: str(v) if isinstance(v, tuple | list | dict) else v for k, v in params.items()}

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML- and JSON-serializable; tuples as lists)."""
        return _plain(asdict(self))

    def to_yaml(self) -> str:
        """The config as YAML (``from_yaml`` reads it back)."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "config") -> TrainConfig:
        """Defaults overridden by ``values`` (``env`` may be a partial nested mapping). Unknown
        keys raise ``ValueError`` naming ``source`` and the key."""
        return _apply(cls(), values, source)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        """Defaults overridden by the YAML mapping in ``path``."""
        return cls.from_dict(_read_yaml(Path(path)), source=str(path))


def preset_path(name: str) -> Path:
    """``configs/<name>.yaml``; raises ``ValueError`` listing the presets when it is missing."""
    path = CONFIG_DIR / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise ValueError(f"preset {name!r}: no {path}; presets: {', '.join(known)}")
    return path


def load_config(preset: str | None = None, *overrides: Mapping[str, Any]) -> TrainConfig:
    """The dataclass defaults, then the preset's YAML, then each mapping of ``overrides`` in turn
    (e.g. an environment's settings, then a run's config)."""
    config = TrainConfig()
    if preset is not None:
        path = preset_path(preset)
        config = _apply(config, _read_yaml(path), str(path))
    for values in overrides:
        config = _apply(config, values, "overrides")
    return config


def _apply(config: TrainConfig, values: Mapping[str, Any], source: str) -> TrainConfig:
    """``config`` with ``values`` merged in (nested for ``env`` and its sections)."""
    merged = _merge(config.to_dict(), values, source, "")
    env = EnvConfig.from_dict(merged.pop("env"))
    kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in merged.items()}
    return TrainConfig(**kwargs, env=env)


def _merge(base: dict[str, Any], values: Mapping[str, Any], source: str, prefix: str) -> dict:
    """``base`` updated by ``values``, recursing into nested dicts; unknown keys raise."""
    out = dict(base)
    for key, value in values.items():
        if key not in base:
            known = ", ".join(sorted(base))
            raise ValueError(f"{source}: unknown key {prefix + key!r} (known: {known})")
        if isinstance(base[key], dict) and isinstance(value, Mapping):
            out[key] = _merge(base[key], value, source, f"{prefix}{key}.")
        else:
            out[key] = value
    return out


def _read_yaml(path: Path) -> dict[str, Any]:
    """The mapping in a YAML file (an empty file is an empty mapping)."""
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of TrainConfig fields, got {type(data)}")
    return data


def _plain(value: Any) -> Any:
    """Tuples as lists, recursively (what YAML and JSON write)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value
