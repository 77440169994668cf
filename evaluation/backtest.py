"""Deterministic out-of-sample backtests through the same environment the agent trained in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from evaluation.metrics import PerformanceMetrics, compute_metrics
from training.env import PerpPortfolioEnv
from training.env_config import EnvConfig, RandomizationConfig
from training.market import MarketData
from training.observation import FeatureNormalizer

Actor = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class BacktestResult:
    """Equity and weights per bar of the out-of-sample window, and their metrics."""

    name: str
    timestamps: np.ndarray
    equity: np.ndarray
    weights: np.ndarray
    metrics: PerformanceMetrics


def backtest(
    name: str,
    market: MarketData,
    env_config: EnvConfig,
    normalizer: FeatureNormalizer,
    first_bar: int,
    act: Actor,
) -> BacktestResult:
    """Run ``act`` from the close of bar ``first_bar - 1`` to the end of ``market``.

    Orders placed at a bar's close fill at the next open, so the first return earned is that of
    bar ``first_bar``. No randomization, a single episode, no random start.
    """
    config = replace(
        env_config, episode_length=None, random_start=False, randomization=RandomizationConfig()
    )
    start = first_bar - config.window
    if start < 0:
        raise ValueError(f"first_bar {first_bar} leaves less than window={config.window} bars")
    env = PerpPortfolioEnv(market, config, normalizer, start=start)
    obs, info = env.reset(seed=0)
    equity, stamps, weights = [info["equity"]], [], []
    turnover = fees = funding = 0.0
    liquidated = False
    done = False
    while not done:
        obs, _, terminated, truncated, info = env.step(act(obs))
        equity.append(info["equity"])
        stamps.append(info["timestamp"])
        weights.append(np.asarray(info["weights"], dtype=float))
        turnover += float(info["turnover"])
        fees += float(info["fees"])
        funding += float(info["funding"])
        liquidated = liquidated or bool(info["liquidated"])
        done = terminated or truncated
    equity_curve = np.asarray(equity)
    return BacktestResult(
        name=name,
        timestamps=np.asarray(stamps),
        equity=equity_curve,
        weights=np.asarray(weights),
        metrics=compute_metrics(
            equity_curve,
            bar_hours=market.bar_hours,
            turnover=turnover,
            fees_paid=fees,
            funding_paid=funding,
            liquidated=liquidated,
        ),
    )


def equal_weight_actor(n_assets: int, env_config: EnvConfig) -> Actor:
    """Constant 1x gross long, split equally: weight 1/N per asset."""
    action = np.full(n_assets, 1.0 / n_assets / env_config.max_leverage)
    return lambda _obs: action
