"""Performance metrics of an equity curve, annualized from the bar length."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

HOURS_PER_YEAR = 24 * 365


@dataclass(frozen=True)
class PerformanceMetrics:
    """Out-of-sample performance of one strategy over one window."""

    total_return: float
    annualized_return: float
    annualized_volatility: float
    sharpe: float
    sortino: float
    max_drawdown: float
    turnover: float
    fees_paid: float
    funding_paid: float
    liquidated: bool
    n_bars: int

    def as_dict(self) -> dict[str, float | bool | int]:
        """Plain Python values (no numpy scalars), so the dict round-trips into this class."""
        return {k: v if isinstance(v, bool | int) else float(v) for k, v in asdict(self).items()}


def compute_metrics(
    equity: np.ndarray,
    bar_hours: float,
    turnover: float = 0.0,
    fees_paid: float = 0.0,
    funding_paid: float = 0.0,
    liquidated: bool = False,
) -> PerformanceMetrics:
    """Metrics of an equity curve whose first value is the starting equity."""
    equity = np.asarray(equity, dtype=float)
    if equity.ndim != 1 or len(equity) < 2:
        raise ValueError(f"equity curve needs at least 2 points, got shape {equity.shape}")
    if not np.all(np.isfinite(equity)) or equity[0] <= 0:
        raise ValueError("equity curve must be finite with a positive start")
    returns = np.diff(equity) / equity[:-1]
    periods_per_year = HOURS_PER_YEAR / bar_hours
    n = len(returns)
    total = equity[-1] / equity[0] - 1.0
    annual = (max(equity[-1], 1e-12) / equity[0]) ** (periods_per_year / n) - 1.0
    std = returns.std(ddof=1) if n > 1 else 0.0
    downside = np.sqrt(np.mean(np.minimum(returns, 0.0) ** 2))
    mean = returns.mean()
    scale = np.sqrt(periods_per_year)
    peak = np.maximum.accumulate(equity)
    return PerformanceMetrics(
        total_return=total,
        annualized_return=annual,
        annualized_volatility=std * scale,
        sharpe=mean / std * scale if std > 0 else 0.0,
        sortino=mean / downside * scale if downside > 0 else 0.0,
        max_drawdown=float(np.max(1.0 - equity / peak)),
        turnover=turnover,
        fees_paid=fees_paid,
        funding_paid=funding_paid,
        liquidated=liquidated,
        n_bars=n,
    )
