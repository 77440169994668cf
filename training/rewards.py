"""Reward functions, batched over B accounts (the single env uses B = 1).

Every reward sees equity before/after the bar (fees, slippage, funding and liquidation losses
are already inside the equity change), the bar's slippage and the liquidation flag.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from training.env_config import EnvConfig


class PnLReward:
    """``R_t = dE_t / E_{t-1} - alpha * slippage_t / E_{t-1} - beta * 1[liquidated]``."""

    def __init__(self, n_envs: int, alpha: float, beta: float):
        self.alpha, self.beta = alpha, beta

    def reset(self, mask: np.ndarray, equity: np.ndarray) -> None:
        """Start new episodes for accounts where ``mask`` is True (stateless)."""

    def __call__(
        self, equity_prev: np.ndarray, equity: np.ndarray, slippage: np.ndarray, liq: np.ndarray
    ) -> np.ndarray:
        """Reward per account (B,)."""
        gain = equity - equity_prev
        if self.alpha:  # skipped terms are exact zeros
            gain = gain - self.alpha * slippage
        reward = gain / equity_prev
        return reward - self.beta * liq if np.count_nonzero(liq) else reward


class SortinoReward(PnLReward):
    """Differential downside deviation ratio (Moody & Saffell, 2001) on simple returns.

    With EMAs ``A`` of returns and ``DD2`` of squared negative returns (rate ``eta``):
    ``D_t = (R - A/2) / DD`` if ``R > 0`` else ``(DD2 (R - A/2) - A R^2 / 2) / DD^3``,
    clipped to ``[-clip, clip]``; the alpha/beta penalties of ``PnLReward`` are subtracted.
    """

    def __init__(
        self, n_envs: int, alpha: float, beta: float, eta: float, init_dd: float, clip: float
    ):
        super().__init__(n_envs, alpha, beta)
        self.eta, self.init_dd, self.clip = eta, init_dd, clip
        self.mean = np.zeros(n_envs)
        self.dd2 = np.full(n_envs, init_dd**2)

    def reset(self, mask: np.ndarray, equity: np.ndarray) -> None:
        """Reset the EMAs of accounts starting a new episode."""
        self.mean[mask] = 0.0
        self.dd2[mask] = self.init_dd**2

    def __call__(
        self, equity_prev: np.ndarray, equity: np.ndarray, slippage: np.ndarray, liq: np.ndarray
    ) -> np.ndarray:
        """Reward per account (B,); updates the EMAs."""
        ret = equity / equity_prev - 1.0
        a, dd2 = self.mean, self.dd2
        dd = np.sqrt(dd2)
        centered = ret - 0.5 * a
        ddr = np.where(ret > 0, centered / dd, (dd2 * centered - 0.5 * a * ret**2) / (dd2 * dd))
        self.mean = a + self.eta * (ret - a)
        self.dd2 = dd2 + self.eta * (np.minimum(ret, 0.0) ** 2 - dd2)
        penalty = self.alpha * slippage / equity_prev + self.beta * liq
        return np.clip(ddr, -self.clip, self.clip) - penalty


class DelayedReward(PnLReward):
    """Immediate + delayed reward after Chun & Lee (2025).

    ``R_t = pnl_t + weight * (E_t / E_{t-k} - 1)``: the delayed term credits the return over the
    k bars that followed the decision at t-k and is delivered at t, the first time it is known.
    It is 0 for the first k steps of an episode (nothing is known yet).
    """

    def __init__(self, n_envs: int, alpha: float, beta: float, k: int, weight: float):
        super().__init__(n_envs, alpha, beta)
        if k < 1:
            raise ValueError("delay_k must be >= 1")
        self.k, self.weight = k, weight
        self.history = np.ones((n_envs, k + 1))
        self.count = np.zeros(n_envs, dtype=np.int64)
        self._rows = np.arange(n_envs)

    def reset(self, mask: np.ndarray, equity: np.ndarray) -> None:
        """Start the equity history of accounts where ``mask`` is True.

        The whole row is filled, so no value from a previous episode (0 after a liquidation) is
        ever divided by, not even in the first k steps, whose delayed term is 0.
        """
        self.count[mask] = 0
        self.history[mask] = equity[mask, None]

    def __call__(
        self, equity_prev: np.ndarray, equity: np.ndarray, slippage: np.ndarray, liq: np.ndarray
    ) -> np.ndarray:
        """Reward per account (B,); records ``equity`` in the history."""
        immediate = super().__call__(equity_prev, equity, slippage, liq)
        self.count += 1
        n = self.k + 1
        self.history[self._rows, self.count % n] = equity
        past = self.history[self._rows, (self.count - self.k) % n]
        delayed = np.where(self.count >= self.k, equity / past - 1.0, 0.0)
        return immediate + self.weight * delayed


def make_reward(config: EnvConfig, n_envs: int) -> PnLReward:
    """Reward function of ``config`` for ``n_envs`` accounts."""
    if config.reward == "sortino":
        return SortinoReward(
            n_envs,
            config.alpha,
            config.beta,
            config.sortino_eta,
            config.sortino_init_dd,
            config.reward_clip,
        )
    if config.reward == "delayed":
        return DelayedReward(n_envs, config.alpha, config.beta, config.delay_k, config.delay_weight)
    return PnLReward(n_envs, config.alpha, config.beta)
