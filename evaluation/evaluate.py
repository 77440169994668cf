"""Out-of-sample evaluation of a candidate against the equal-weight baseline and the champion."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from evaluation.backtest import BacktestResult, backtest, equal_weight_actor
from training.market import MarketData
from training.policy_model import PolicyModel, PolicySpec

MarketLoader = Callable[[PolicySpec], MarketData]


@dataclass(frozen=True)
class Evaluation:
    """Backtests of every contender over the same out-of-sample bars."""

    first_oos_timestamp: np.datetime64
    candidate: BacktestResult
    baseline: BacktestResult
    champion: BacktestResult | None


def first_bar_after(market: MarketData, timestamp: str | np.datetime64) -> int:
    """Index of the first bar strictly after ``timestamp``."""
    bound = np.asarray(timestamp, dtype="datetime64[ns]")
    index = int(np.searchsorted(market.timestamps, bound, side="right"))
    if index >= market.n_bars - 1:
        raise ValueError(
            f"no out-of-sample bars after {timestamp} (market ends {market.timestamps[-1]})"
        )
    return index


def policy_actor(policy: PolicyModel) -> Callable[[np.ndarray], np.ndarray]:
    return lambda obs: policy.act(obs[None])[0]


def evaluate(
    candidate: PolicyModel, load: MarketLoader, champion: PolicyModel | None = None
) -> Evaluation:
    """Backtest the candidate, the baseline and the champion from the candidate's first OOS bar."""
    spec = candidate.spec
    market = load(spec)
    first = first_bar_after(market, spec.train_end)
    normalizer = spec.builder.normalizer
    result = backtest(
        "candidate", market, spec.env_config, normalizer, first, policy_actor(candidate)
    )
    baseline = backtest(
        "equal_weight",
        market,
        spec.env_config,
        normalizer,
        first,
        equal_weight_actor(market.n_assets, spec.env_config),
    )
    champion_result = None
    if champion is not None:
        champion_market = load(champion.spec)
        champion_first = int(
            np.searchsorted(champion_market.timestamps, market.timestamps[first], side="left")
        )
        champion_result = backtest(
            "champion",
            champion_market,
            champion.spec.env_config,
            champion.spec.builder.normalizer,
            champion_first,
            policy_actor(champion),
        )
    return Evaluation(market.timestamps[first], result, baseline, champion_result)
