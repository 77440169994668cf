"""Performance metrics of one strategy's ledger, its ratios from DAILY returns.

Every ratio (Sharpe, Sortino, volatility) is computed from the returns between consecutive UTC
day closes and annualized with ``sqrt(365)``: crypto perpetuals trade every day, so neither 252
trading days nor the bar frequency enter. The Sharpe ratio is ``evaluation.statistics``'s.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from evaluation.ledger import Ledger
from evaluation.statistics import DAYS_PER_YEAR, ZERO_TOLERANCE, sharpe_ratio
from ingestion.universe import timeframe as timeframe_spec

ROR_BY_SYMBOL_PREFIX = "ror_by_symbol."
"""Prefix of the per-symbol RORs' keys in ``PerformanceMetrics.as_dict``."""
_DAY = pd.Timedelta(days=1)
_NS = pd.Timedelta(1, "ns")


@dataclass(frozen=True)
class PerformanceMetrics:
    """Performance of one strategy over one window, from its ledger.

    "Daily returns" are ``daily_returns(ledger)``; ``sqrt(365)`` annualizes daily ratios.
    """

    total_return: float
    """``equity[-1] / equity[0] - 1``."""
    annualized_return: float
    """``(equity[-1] / equity[0]) ** (365 / days) - 1`` with ``days`` the span from
    ``start_time`` to the last bar close (365-day years); -1 if the final equity is <= 0."""
    annualized_volatility: float
    """``std(daily returns, ddof=1) * sqrt(365)``; NaN with fewer than 2 daily returns."""
    sharpe: float
    """``mean / std(ddof=1) * sqrt(365)`` of the daily returns; 0 when both are 0 (cash),
    NaN when only the standard deviation is 0 or there are fewer than 2 daily returns."""
    sortino: float
    """``mean / sqrt(mean(min(r, 0) ** 2)) * sqrt(365)`` of the daily returns ``r``; 0 when
    the mean and the downside deviation are both 0, NaN when only the latter is or with fewer
    than 2 daily returns."""
    calmar: float
    """``annualized_return / max_drawdown``; 0 when both are 0, NaN when only the drawdown is."""
    max_drawdown: float
    """Largest peak-to-trough loss of the bar-close equity, as a fraction of the peak."""
    max_daily_volatility: float
    """Largest realized volatility of one UTC day: ``sqrt(sum of squared bar returns)`` over
    the bars closing in that day (not annualized; a partial first or last day counts as is)."""
    hit_rate: float
    """Fraction of the daily returns that are positive."""
    avg_gross_exposure: float
    """Mean over bars of ``sum |weights|`` at the bar close."""
    avg_net_exposure: float
    """Mean over bars of ``sum weights`` at the bar close."""
    turnover: float
    """Sum over bars of traded notional / equity before the step."""
    turnover_cost: float
    """``(fees_paid + slippage_paid) / equity[0]``."""
    fees_paid: float
    """Total exchange fees (quote currency)."""
    slippage_paid: float
    """Total slippage (quote currency)."""
    funding_paid: float
    """Total funding paid (quote currency, > 0 paid): minus the ledger's funding cash flow."""
    liquidations: int
    """Number of bars on which the account was liquidated."""
    liquidated: bool
    """Whether the account was liquidated at least once."""
    n_bars: int
    """Number of simulated bars."""
    n_days: int
    """Number of daily returns (UTC days, partial first and last days included)."""
    ror: float
    """Chun & Lee (2025)'s rate of return: ``final / initial equity - 1`` (= total_return)."""
    ror_by_symbol: dict[str, float]
    """Each symbol's summed ``asset_pnl`` / ``equity[0]``, in the ledger's symbol order."""

    def as_dict(self) -> dict[str, float | int | bool]:
        """Flat plain values (float, int, bool; JSON-able, NaN as ``NaN``): every scalar field,
        and ``ror_by_symbol`` as one ``ror_by_symbol.<symbol>`` key per symbol."""
        out: dict[str, float | int | bool] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "ror_by_symbol":
                out.update({ROR_BY_SYMBOL_PREFIX + s: float(v) for s, v in value.items()})
            elif isinstance(value, bool | np.bool_):
                out[f.name] = bool(value)
            elif isinstance(value, int | np.integer):
                out[f.name] = int(value)
            else:
                out[f.name] = float(value)
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> PerformanceMetrics:
        """The metrics ``as_dict`` wrote; unknown or missing keys raise ``ValueError``."""
        names = {f.name: f.type for f in fields(cls)}
        by_symbol = {
            k.removeprefix(ROR_BY_SYMBOL_PREFIX): float(v)
            for k, v in values.items()
            if k.startswith(ROR_BY_SYMBOL_PREFIX)
        }
        scalars = {k: v for k, v in values.items() if not k.startswith(ROR_BY_SYMBOL_PREFIX)}
        expected = set(names) - {"ror_by_symbol"}
        if set(scalars) != expected:
            raise ValueError(
                f"metrics keys: missing {sorted(expected - set(scalars))}, "
                f"unknown {sorted(set(scalars) - expected)}"
            )
        cast = {"bool": bool, "int": int, "float": float}
        kwargs = {name: cast[str(names[name])](value) for name, value in scalars.items()}
        return cls(**kwargs, ror_by_symbol=by_symbol)


def daily_returns(ledger: Ledger) -> pd.Series:
    """Returns between consecutive UTC day closes, indexed by the day (its 00:00 UTC).

    A day's close is the equity at the last bar close at or before the next 00:00 UTC; the
    first point is the equity at ``ledger.start_time``. The first day is partial when
    ``start_time`` is not 00:00 (it runs from ``start_time``), the last when the last bar does
    not close at 00:00 (it ends at that close); a day without any bar close returns 0, and so
    does a day that starts with no equity. At 1d bars these are the bar returns themselves.
    """
    if ledger.n_bars == 0:
        raise ValueError(f"ledger {ledger.name!r} has no bars")
    times = np.r_[
        np.asarray([ledger.start_time], dtype="datetime64[ns]"),
        np.asarray(ledger.close_times, dtype="datetime64[ns]"),
    ]
    start, last = pd.Timestamp(times[0]), pd.Timestamp(times[-1])
    midnights = pd.date_range(start.floor("D") + _DAY, last, freq="D", inclusive="left")
    points = pd.DatetimeIndex([*midnights, last])
    at = np.searchsorted(times, points.to_numpy(dtype="datetime64[ns]"), side="right") - 1
    values = np.r_[ledger.equity[0], ledger.equity[at]]
    days = (points - _NS).floor("D")
    return pd.Series(_simple_returns(values), index=days.rename("day"), name=ledger.name)


def compute_metrics(ledger: Ledger, *, timeframe: str | None = None) -> PerformanceMetrics:
    """Every ``PerformanceMetrics`` field of ``ledger``.

    ``timeframe`` (e.g. ``"1h"``), when given, must match ``ledger.bar_hours``. Raises
    ``ValueError`` for a ledger without bars or whose equity is not finite with a positive
    start. Not enough data for a ratio gives NaN, which the gate refuses.
    """
    if timeframe is not None and not math.isclose(
        timeframe_spec(timeframe).hours, ledger.bar_hours
    ):
        raise ValueError(
            f"ledger {ledger.name!r} has {ledger.bar_hours} h bars, not timeframe {timeframe!r}"
        )
    equity = np.asarray(ledger.equity, dtype=float)
    if not np.all(np.isfinite(equity)) or equity[0] <= 0:
        raise ValueError(f"ledger {ledger.name!r}: equity must be finite with a positive start")
    daily = daily_returns(ledger).to_numpy()
    initial, final = float(equity[0]), float(equity[-1])
    total = final / initial - 1.0
    span_days = (pd.Timestamp(ledger.close_times[-1]) - pd.Timestamp(ledger.start_time)) / _DAY
    annual = _annualized_return(final / initial, span_days)
    peak = np.maximum.accumulate(equity)
    drawdown = float(np.max(1.0 - equity / peak))
    fees, slippage = float(np.sum(ledger.fees)), float(np.sum(ledger.slippage))
    liquidations = int(np.count_nonzero(ledger.liquidated))
    return PerformanceMetrics(
        total_return=total,
        annualized_return=annual,
        annualized_volatility=(
            float(np.std(daily, ddof=1) * np.sqrt(DAYS_PER_YEAR)) if len(daily) > 1 else np.nan
        ),
        sharpe=sharpe_ratio(daily),
        sortino=_sortino(daily),
        calmar=_ratio(annual, drawdown),
        max_drawdown=drawdown,
        max_daily_volatility=_max_daily_volatility(ledger),
        hit_rate=float(np.mean(daily > 0)),
        avg_gross_exposure=float(np.mean(ledger.gross)),
        avg_net_exposure=float(np.mean(ledger.net)),
        turnover=float(np.sum(ledger.turnover)),
        turnover_cost=(fees + slippage) / initial,
        fees_paid=fees,
        slippage_paid=slippage,
        funding_paid=-float(np.sum(ledger.funding)),
        liquidations=liquidations,
        liquidated=liquidations > 0,
        n_bars=ledger.n_bars,
        n_days=len(daily),
        ror=total,
        ror_by_symbol=symbol_rors(ledger),
    )


def symbol_rors(ledger: Ledger) -> dict[str, float]:
    """Chun & Lee's ROR of each symbol: its summed ``asset_pnl`` / ``equity[0]``."""
    totals = np.sum(ledger.asset_pnl, axis=0) / float(ledger.equity[0])
    return {symbol: float(v) for symbol, v in zip(ledger.symbols, totals, strict=True)}


def ror_table(ledgers_by_timeframe: Mapping[str, Ledger]) -> pd.DataFrame:
    """Chun & Lee's ROR per symbol (rows, first-seen order) and timeframe (columns, in the
    mapping's order); NaN where a timeframe's ledger lacks the symbol. ``table.to_dict("list")``
    is the input of ``anova_across_timeframes``."""
    table = pd.DataFrame(
        {tf: pd.Series(symbol_rors(ledger)) for tf, ledger in ledgers_by_timeframe.items()}
    )
    table.index.name, table.columns.name = "symbol", "timeframe"
    return table


def _annualized_return(growth: float, span_days: float) -> float:
    """``growth ** (365 / span_days) - 1`` (inf on overflow), -1 for a growth <= 0."""
    if growth <= 0:
        return -1.0
    with np.errstate(over="ignore"):
        return float(np.power(growth, DAYS_PER_YEAR / span_days)) - 1.0


def _simple_returns(values: np.ndarray) -> np.ndarray:
    """``values[k + 1] / values[k] - 1``, 0 where ``values[k] <= 0``."""
    before, after = values[:-1], values[1:]
    safe = np.where(before > 0, before, 1.0)
    return np.where(before > 0, after / safe - 1.0, 0.0)


def _max_daily_volatility(ledger: Ledger) -> float:
    """Largest ``sqrt(sum of squared bar returns)`` over the UTC days the bars close in (a bar
    closing at 00:00 belongs to the day before, as in ``daily_returns``)."""
    days = (pd.DatetimeIndex(ledger.close_times) - _NS).floor("D")
    squares = pd.Series(_simple_returns(np.asarray(ledger.equity, dtype=float)) ** 2)
    return float(np.sqrt(squares.groupby(days.to_numpy()).sum().max()))


def _sortino(daily: np.ndarray) -> float:
    if len(daily) < 2:
        return float("nan")
    downside = float(np.sqrt(np.mean(np.minimum(daily, 0.0) ** 2)))
    return _ratio(float(np.mean(daily)), downside) * math.sqrt(DAYS_PER_YEAR)


def _ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``; 0 when both are zero, NaN when only the denominator is."""
    if abs(denominator) < ZERO_TOLERANCE:
        return 0.0 if abs(numerator) < ZERO_TOLERANCE else float("nan")
    return numerator / denominator
