"""Paper against backtest: the paper account's equity compared with the backtest of the same
policy on the same bars, from its first decision. What separates them is execution: lot
rounding, the minimum notional, the safety layer's interventions and its conservative sizing,
and the backtest's liquidation rule (paper has none)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from evaluation.engine import PolicyActor, backtest
from serving.cycle import is_decision_bar
from training.env_config import EnvConfig
from training.market import MarketData
from training.observation import FeatureNormalizer


@dataclass(frozen=True)
class TrackingReport:
    """The paper equity curve against its backtest, bar by bar."""

    bars: int
    """Bars compared (closes from the paper account's first bar to the latest)."""
    tracking_error: float
    """Annualized standard deviation of paper minus backtest bar returns (365-day year)."""
    equity_gap: float
    """Final paper equity / backtest equity - 1."""
    max_abs_gap: float
    """Largest |paper / backtest - 1| over the bars."""


def paper_tracking(
    market: MarketData,
    env: EnvConfig,
    act: Callable[[np.ndarray], np.ndarray],
    normalizer: FeatureNormalizer,
    paper_times: np.ndarray,
    paper_equity: np.ndarray,
) -> TrackingReport | None:
    """Backtest the policy ``act`` (observations -> actions, ``PolicyModel.act``) from the paper
    account's first decision bar (``serving.cycle.is_decision_bar``: before it the new account
    holds cash) to its latest bar, and compare with ``paper_equity`` at ``paper_times`` (close
    times). None without two paper bars from that decision on, or without a window of history
    before it."""
    closes = market.close_times
    paper_times = np.asarray(paper_times).astype(closes.dtype)
    first = int(np.searchsorted(closes, paper_times[0])) if len(paper_times) else market.n_bars
    last = int(np.searchsorted(closes, paper_times[-1])) if len(paper_times) else 0
    decision = next(
        (
            i
            for i in range(first, last)
            if is_decision_bar(closes[i], market.bar_hours, env.decision_interval)
        ),
        None,
    )
    if decision is None or decision < env.window or closes[last] != paper_times[-1]:
        return None
    ledger = backtest(market, env, normalizer, [PolicyActor("paper", act)], decision + 1, last + 1)
    reference = ledger["paper"].equity  # closes decision .. last
    start = int(np.searchsorted(paper_times, closes[decision]))
    paper = np.asarray(paper_equity, dtype=np.float64)[start:]
    n = min(len(reference), len(paper))
    gap = paper[:n] / reference[:n] - 1.0
    diff = np.diff(paper[:n]) / paper[: n - 1] - np.diff(reference[:n]) / reference[: n - 1]
    per_year = 365 * 24 / market.bar_hours
    te = float(np.std(diff, ddof=1) * np.sqrt(per_year)) if len(diff) > 1 else 0.0
    return TrackingReport(n, te, float(gap[-1]), float(np.abs(gap).max()))
