"""The single-account gymnasium env over the batched simulator (``training.simulator``)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from training.env_config import EnvConfig
from training.market import MarketData
from training.observation import FeatureNormalizer, PortfolioState
from training.simulator import BatchedSimulator


class PerpPortfolioEnv(gym.Env):
    """Single-account gymnasium env over bars ``[start, stop)`` of ``market``.

    Observation: see ``training.observation``. Action: ``Box(-1, 1, (N,))`` -> target leverage
    per asset in [-L, L]. Reward: see ``training.rewards``. ``info`` carries per-step equity,
    fees, funding, slippage, turnover, liquidation flag, weights and the bar timestamp.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        market: MarketData,
        config: EnvConfig | None = None,
        normalizer: FeatureNormalizer | None = None,
        start: int = 0,
        stop: int | None = None,
    ):
        self.config = config or EnvConfig()
        self.sim = BatchedSimulator(market, self.config, 1, normalizer, start, stop)
        self.market = market
        self.builder = self.sim.builder
        self.observation_space = self.builder.observation_space
        self.action_space = gym.spaces.Box(-1.0, 1.0, (market.n_assets,), np.float32)

    @property
    def normalizer(self) -> FeatureNormalizer:
        """Feature normalizer (fitted on the training window unless given)."""
        return self.builder.normalizer

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; the start bar and randomization come from ``self.np_random``."""
        super().reset(seed=seed)
        self.sim.reset_env(0, self.np_random)
        self.sim.refresh()
        t = int(self.sim.t[0])
        info = {
            "equity": float(self.sim.equity[0]),
            "timestamp": self.market.timestamps[t],
            "bar": t,
        }
        return self.sim.observations()[0], info

    def portfolio_state(self) -> PortfolioState:
        """Current account state as the observation sees it (unbatched)."""
        return self.sim.portfolio_of(0)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Decide at the close of the current bar, simulate the next bar."""
        sim = self.sim
        reward, terminated, arrays = sim.decide(np.asarray(action, dtype=np.float64)[None])
        t = int(sim.t[0])
        info = {k: v[0] for k, v in arrays.items()}  # np.float64 is a float
        info["liquidated"] = bool(info["liquidated"])
        info["timestamp"] = self.market.timestamps[t]
        info["bar"] = t
        liquidated = bool(terminated[0])
        truncated = not liquidated and int(sim.steps[0]) >= sim.length
        return sim.observations()[0], float(reward[0]), liquidated, truncated, info
