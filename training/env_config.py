"""Configuration of the trading environment: costs, margin, reward and domain randomization."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from training.actions import ACTION_BASELINES
from training.costs import FeeModel, SlippageModel
from training.margin import MarginModel

REWARDS = ("pnl", "sortino", "delayed")


@dataclass(frozen=True)
class RandomizationConfig:
    """Per-episode domain randomization; everything is off by default."""

    basis_noise_std: float = 0.0
    """Std of Gaussian noise added to the basis series (fraction), per bar and asset."""
    funding_noise_std: float = 0.0
    """Std of Gaussian noise added to the funding rate at each settlement."""
    funding_shift_max_bars: int = 0
    """Settlement schedule (rates and hours-to-funding) shifted by s ~ U{-m..m} bars."""
    fee_mult_range: tuple[float, float] = (1.0, 1.0)
    """Fee multiplier drawn uniformly per episode."""
    slippage_mult_range: tuple[float, float] = (1.0, 1.0)
    """Slippage multiplier drawn uniformly per episode."""


@dataclass(frozen=True)
class EnvConfig:
    """Configuration of the trading environment (single and batched)."""

    window: int = 32
    """K, bars of feature history in each observation."""
    max_leverage: float = 3.0
    """L: an action of +-1 targets +-L x equity notional in that asset."""
    gross_leverage_cap: float = 3.0
    """Cap on sum_i |w_i|; larger targets are scaled down proportionally."""
    action_baseline: str = "none"
    """What an action of 0 targets: ``none`` (flat) or ``equal_weight`` (1/N of equity long in
    every asset; actions then tilt away from the equal-weight book)."""
    no_trade_band: float = 0.0
    """Keep an asset's position when |target weight - current weight| is below this."""
    episode_length: int | None = 256
    """Decisions per episode (then truncated); None = from the first possible bar to the end."""
    decision_interval: int = 1
    """k: the agent decides at every k-th bar close and holds its positions (no orders) for the
    k - 1 bars between; a step of the env spans k bars and its reward is the sum over them."""
    random_start: bool = True
    """Draw the first decision bar uniformly inside [start, stop) (ignored if length is None)."""
    initial_equity: float = 10_000.0
    """Starting account equity in quote currency (USDT)."""
    fees: FeeModel = field(default_factory=FeeModel)
    """Exchange fee model."""
    slippage: SlippageModel = field(default_factory=SlippageModel)
    """Half-spread + impact slippage model."""
    margin: MarginModel = field(default_factory=MarginModel)
    """Maintenance margin tiers and liquidation fee."""
    reward: str = "pnl"
    """One of "pnl", "sortino", "delayed"."""
    alpha: float = 0.0
    """Extra penalty per unit of slippage / equity (slippage is already inside dEquity)."""
    beta: float = 1.0
    """Penalty on the step that ends in liquidation."""
    turnover_penalty: float = 0.0
    """Subtracted from the reward per unit of turnover (traded notional / equity) of a bar, on
    top of the fees and slippage already inside dEquity."""
    reward_scale: float = 1.0
    """Every bar's reward is multiplied by this (after the penalties)."""
    delay_k: int = 24
    """k for the delayed reward: bars between a decision and its delayed credit."""
    delay_weight: float = 1.0
    """Weight of the delayed term in the delayed reward."""
    sortino_eta: float = 0.01
    """EMA rate of the differential Sortino reward."""
    sortino_init_dd: float = 0.01
    """Initial downside deviation of the differential Sortino reward."""
    reward_clip: float = 10.0
    """Clip of the differential Sortino term."""
    obs_clip: float = 10.0
    """Every observation entry is clipped to [-obs_clip, obs_clip]."""
    randomization: RandomizationConfig = field(default_factory=RandomizationConfig)
    """Domain randomization knobs."""

    def __post_init__(self) -> None:
        if self.reward not in REWARDS:
            raise ValueError(f"reward: {self.reward!r} not in {REWARDS}")
        if self.episode_length is not None and self.episode_length < 1:
            raise ValueError("episode_length: must be >= 1 or None")
        if self.action_baseline not in ACTION_BASELINES:
            raise ValueError(f"action_baseline: {self.action_baseline!r} not in {ACTION_BASELINES}")
        if self.decision_interval < 1:
            raise ValueError(f"decision_interval: must be >= 1, got {self.decision_interval}")
        if self.turnover_penalty < 0:
            raise ValueError(f"turnover_penalty: must be >= 0, got {self.turnover_penalty}")
        if not self.reward_scale > 0:
            raise ValueError(f"reward_scale: must be > 0, got {self.reward_scale}")

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (JSON-serializable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EnvConfig:
        """Inverse of ``to_dict``; nested sections may be dicts or missing."""
        nested = {
            "fees": FeeModel,
            "slippage": SlippageModel,
            "margin": MarginModel,
            "randomization": RandomizationConfig,
        }
        kwargs = dict(d)
        for key, kind in nested.items():
            if isinstance(kwargs.get(key), dict):
                sub = {
                    k: tuple(map(_tuple, v)) if isinstance(v, list) else v
                    for k, v in kwargs[key].items()
                }
                kwargs[key] = kind(**sub)
        return cls(**kwargs)


def _tuple(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v
