"""Baseline strategies as point-in-time target-weight schedules for ``evaluation.engine``.

Row t of every schedule uses only what is known at the close of bar t (closes, funding
settlements and features up to t). Rebalancing strategies set targets at the decision bars of
their schedule (default ``"1d"``: the bars whose close is 00:00 UTC) and NaN (hold, no order)
in between; the engine's first decision starts from the latest targets at or before it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pandas as pd

from evaluation.engine import ScheduledWeights
from ingestion.importers import QUOTES
from training.env_config import EnvConfig
from training.market import MarketData

DAY_HOURS = 24.0


def rebalance_bars(market: MarketData, rebalance: str = "1d") -> np.ndarray:
    """(T,) bool: decision bars whose close is a multiple of ``rebalance`` (a pandas offset
    string such as ``"1d"``, ``"8h"``; ``"1d"`` = closes at 00:00 UTC) since the Unix epoch."""
    period = pd.Timedelta(rebalance).value
    if period <= 0:
        raise ValueError(f"rebalance {rebalance!r}: must be a positive duration")
    closes = market.close_times.astype("datetime64[ns]").astype(np.int64)
    return closes % period == 0


def _bars(market: MarketData, days: float) -> int:
    """Bars in ``days`` at the market's bar length (at least 1)."""
    return max(1, round(days * DAY_HOURS / market.bar_hours))


def _scheduled(name: str, rows: np.ndarray, on: np.ndarray) -> ScheduledWeights:
    """Targets ``rows`` at the bars ``on``, NaN (hold) elsewhere."""
    return ScheduledWeights(name, np.where(on[:, None], rows, np.nan))


def cash(market: MarketData, name: str = "cash") -> ScheduledWeights:
    """No position at any bar (equity stays at the initial capital): flat from the first
    decision, then holding nothing."""
    targets = np.full((market.n_bars, market.n_assets), np.nan)
    targets[0] = 0.0
    return ScheduledWeights(name, targets)


def equal_weight(
    market: MarketData, rebalance: str = "1d", name: str = "equal_weight"
) -> ScheduledWeights:
    """1x gross long split equally: +1/N per asset at each rebalance."""
    rows = np.full((market.n_bars, market.n_assets), 1.0 / market.n_assets)
    return _scheduled(name, rows, rebalance_bars(market, rebalance))


def inverse_volatility(
    market: MarketData,
    lookback_bars: int | None = None,
    rebalance: str = "1d",
    name: str = "risk_parity",
) -> ScheduledWeights:
    """Risk-parity heuristic: long weights proportional to 1 / realized volatility, gross 1.

    Volatility is the sample std of the log close-to-close returns of the ``lookback_bars``
    bars up to t (default 30 days). Assets without a positive finite volatility get 0; rows
    with fewer than ``lookback_bars`` returns of history, or no such asset, hold.
    """
    lookback = lookback_bars or _bars(market, 30)
    returns = np.diff(np.log(market.close), axis=0, prepend=np.nan)
    vol = pd.DataFrame(returns).rolling(lookback, min_periods=lookback).std().to_numpy()
    inverse = np.where(np.isfinite(vol) & (vol > 0), 1.0 / np.where(vol > 0, vol, 1.0), 0.0)
    total = inverse.sum(axis=1, keepdims=True)
    rows = np.where(total > 0, inverse / np.where(total > 0, total, 1.0), np.nan)
    rows[np.isnan(vol).all(axis=1)] = np.nan
    return _scheduled(name, rows, rebalance_bars(market, rebalance))


def buy_and_hold(
    market: MarketData, symbol: str = "BTC", name: str | None = None
) -> ScheduledWeights:
    """1x long ``symbol`` bought once (at the first decision), then held without rebalancing.

    ``symbol`` is a base asset (``BTC``) and matches the market's ``BTC`` or a quoted name such as
    ``BTCUSDT``; name default: ``<symbol>_buy_and_hold`` in lower case (``btc_buy_and_hold``).
    Raises ``ValueError`` if the market has no such symbol.
    """
    bases = [_base(s) for s in market.symbols]
    if _base(symbol) not in bases:
        raise ValueError(f"buy_and_hold: symbol {symbol!r} not in the market {market.symbols}")
    targets = np.full((market.n_bars, market.n_assets), np.nan)
    targets[0] = 0.0
    targets[0, bases.index(_base(symbol))] = 1.0
    label = name or f"{_base(symbol).lower()}_buy_and_hold"
    return ScheduledWeights(label, targets)


def _base(symbol: str) -> str:
    """The base asset of a symbol: ``BTCUSDT`` and ``BTC`` are both ``BTC``."""
    for quote in QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)]
    return symbol


def funding_carry(
    market: MarketData,
    lookback_bars: int | None = None,
    n_per_side: int | None = None,
    rebalance: str = "1d",
    name: str = "funding_carry",
) -> ScheduledWeights:
    """Market-neutral carry: short the perps with the highest recent funding, long the lowest.

    Each asset's recent funding is its average rate over the settlements (bars with a nonzero
    ``funding_rate``, the settlement at the close of bar t) within the ``lookback_bars`` bars up
    to t (default 7 days). The ``n_per_side`` highest (default N // 2) are shorted and as many
    lowest are held long, -0.5 / n and +0.5 / n each: net 0, gross 1; ties go by symbol order.
    Rows where some asset had no settlement in the lookback hold.
    """
    n = market.n_assets
    k = n_per_side or n // 2
    if n < 2:
        raise ValueError(f"funding_carry: needs at least 2 assets, have {n}")
    if not 1 <= k <= n // 2:
        raise ValueError(f"funding_carry: n_per_side {k} not in [1, {n // 2}] for {n} assets")
    lookback = lookback_bars or _bars(market, 7)
    rate = pd.DataFrame(market.funding_rate)
    total = rate.rolling(lookback, min_periods=1).sum().to_numpy()
    count = (rate != 0).rolling(lookback, min_periods=1).sum().to_numpy()
    average = total / np.where(count > 0, count, 1.0)
    order = np.argsort(average, axis=1, kind="stable")  # ascending: lowest funding first
    rows = np.zeros((market.n_bars, n))
    bars = np.arange(market.n_bars)[:, None]
    rows[bars, order[:, :k]] = 0.5 / k
    rows[bars, order[:, n - k :]] = -0.5 / k
    rows[(count == 0).any(axis=1)] = np.nan
    return _scheduled(name, rows, rebalance_bars(market, rebalance))


def time_series_momentum(
    market: MarketData,
    lookback_bars: int | None = None,
    rebalance: str = "1d",
    name: str = "momentum",
) -> ScheduledWeights:
    """Time-series momentum: each asset +-1/N by the sign of its return over ``lookback_bars``
    bars up to t (``close[t] / close[t - lookback] - 1``, default 30 days); 0 on a flat return,
    hold before the first full lookback."""
    lookback = lookback_bars or _bars(market, 30)
    close = market.close
    rows = np.full(close.shape, np.nan)
    rows[lookback:] = np.sign(close[lookback:] / close[:-lookback] - 1.0) / market.n_assets
    return _scheduled(name, rows, rebalance_bars(market, rebalance))


def weights_table(
    frame: pd.DataFrame, market: MarketData, name: str = "weights_table"
) -> ScheduledWeights:
    """A user's own target weights: columns ``ts`` (open time of the decision bar, UTC),
    ``symbol`` and ``weight``, aligned to the market's bars; a missing (ts, symbol) holds.

    Raises ``ValueError`` naming an unknown symbol or timestamp, or a duplicated row.
    """
    missing = {"ts", "symbol", "weight"} - set(frame.columns)
    if missing:
        raise ValueError(f"weights_table: missing column(s) {sorted(missing)}")
    ts = pd.to_datetime(frame["ts"], utc=True).dt.tz_convert(None).to_numpy("datetime64[ns]")
    symbols = frame["symbol"].astype(str).to_numpy()
    known = {s: j for j, s in enumerate(market.symbols)}
    unknown = sorted(set(symbols) - set(known))
    if unknown:
        raise ValueError(f"weights_table: unknown symbol {unknown[0]!r} (market: {market.symbols})")
    stamps = market.timestamps.astype("datetime64[ns]")
    rows = np.searchsorted(stamps, ts).clip(0, max(market.n_bars - 1, 0))
    off = stamps[rows] != ts
    if off.any():
        bad = pd.Timestamp(ts[np.argmax(off)])
        raise ValueError(f"weights_table: timestamp {bad} is not a bar open time of the market")
    cols = np.array([known[s] for s in symbols], dtype=np.int64)
    keys = rows * market.n_assets + cols
    unique, counts = np.unique(keys, return_counts=True)
    if (counts > 1).any():
        i, j = divmod(int(unique[np.argmax(counts > 1)]), market.n_assets)
        raise ValueError(
            f"weights_table: duplicate rows for {market.symbols[j]} at {pd.Timestamp(stamps[i])}"
        )
    targets = np.full((market.n_bars, market.n_assets), np.nan)
    targets[rows, cols] = frame["weight"].to_numpy(dtype=np.float64)
    return ScheduledWeights(name, targets)


def baseline_env(env_config: EnvConfig) -> EnvConfig:
    """The environment the baselines trade in: the candidate's accounting (fees, slippage,
    funding, margin, leverage caps, initial equity) without its no-trade band, a trading rule of
    the policy that would freeze a baseline's small rebalances (1/N of 18 assets is below a 10%
    band)."""
    return replace(env_config, no_trade_band=0.0)


BASELINES: dict[str, Callable[[MarketData], ScheduledWeights]] = {
    "cash": cash,
    "equal_weight": equal_weight,
    "risk_parity": inverse_volatility,
    "btc_buy_and_hold": buy_and_hold,
    "funding_carry": funding_carry,
    "momentum": time_series_momentum,
}
"""The baseline strategies by name, each with its defaults (daily rebalance)."""

BENCHMARKS = ("equal_weight", "risk_parity")
"""The design's two benchmarks among ``BASELINES`` (labelled as benchmarks in reports)."""
