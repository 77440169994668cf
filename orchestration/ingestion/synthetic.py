"""A seeded synthetic market of USDT perpetuals with their spot, mark and funding series.

The same seed and parameters always give the same frames. Prices follow correlated, fat-tailed
returns with GARCH-like volatility clustering under switching regimes (bull, bear, range); the
perp-spot basis mean-reverts towards a regime-dependent level; funding settles every 8 hours and
follows the average basis of its interval, Binance-style (premium + clamped interest).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

SYMBOLS = ("BTC", "ETH", "SOL", "BNB", "ADA", "AVAX", "DOT", "TRX", "LINK", "XTZ")
START_PRICES = (60_000.0, 3_000.0, 150.0, 550.0, 0.45, 30.0, 6.5, 0.12, 14.0, 0.9)
HOURLY_VOLS = (0.006, 0.008, 0.011, 0.007, 0.010, 0.011, 0.010, 0.006, 0.010, 0.011)
VENUE = "synthetic"

# Regime: (hourly drift, basis level).
REGIMES = {"bull": (0.0002, 0.0006), "bear": (-0.0002, -0.0004), "range": (0.0, 0.0001)}
REGIME_STAY = 0.995
INTEREST_8H = 0.0001
INTEREST_CLAMP = 0.0005
FUNDING_CAP = 0.0075


@dataclass(frozen=True)
class SyntheticMarketConfig:
    """Shape and seed of the synthetic market."""

    n_symbols: int = 5
    n_bars: int = 24 * 365
    start: str = "2024-01-01"
    seed: int = 7
    funding_interval_hours: int = 8
    venue: str = VENUE

    def __post_init__(self) -> None:
        if not 1 <= self.n_symbols <= len(SYMBOLS):
            raise ValueError(f"n_symbols must be in [1, {len(SYMBOLS)}], got {self.n_symbols}")
        if self.n_bars < self.funding_interval_hours:
            raise ValueError(f"n_bars must cover one funding interval, got {self.n_bars}")


@dataclass(frozen=True)
class SyntheticMarket:
    """Raw-table frames: OHLCV for perp, spot and mark, and funding events."""

    ohlcv: pd.DataFrame
    funding_rates: pd.DataFrame


def generate_market(config: SyntheticMarketConfig) -> SyntheticMarket:
    """Generate the market described by ``config``."""
    rng = np.random.default_rng(config.seed)
    n, t = config.n_symbols, config.n_bars
    symbols = SYMBOLS[:n]
    ts = pd.date_range(config.start, periods=t, freq="h")

    regimes = _regime_path(rng, t)
    drift = np.array([REGIMES[r][0] for r in regimes])
    basis_level = np.array([REGIMES[r][1] for r in regimes])

    base_vol = np.array(HOURLY_VOLS[:n])
    corr = np.full((n, n), 0.6) + 0.4 * np.eye(n)
    shocks = rng.standard_t(df=4, size=(t, n)) / np.sqrt(2.0)  # unit variance
    shocks = shocks @ np.linalg.cholesky(corr).T
    vol = np.empty((t, n))
    var = base_vol**2
    returns = np.empty((t, n))
    for i in range(t):
        vol[i] = np.sqrt(var)
        returns[i] = drift[i] + vol[i] * shocks[i]
        var = 0.05 * base_vol**2 + 0.85 * var + 0.10 * (returns[i] - drift[i]) ** 2

    close = np.array(START_PRICES[:n]) * np.exp(np.cumsum(returns, axis=0))
    open_ = np.vstack([np.array(START_PRICES[:n]), close[:-1]])
    wick = np.abs(rng.normal(0.0, 0.5, size=(2, t, n))) * vol
    high = np.maximum(open_, close) * np.exp(wick[0])
    low = np.minimum(open_, close) * np.exp(-wick[1])
    volume = np.exp(rng.normal(0.0, 0.4, size=(t, n))) * (1.0 + 50.0 * vol) * 1e6 / close

    basis = np.empty((t, n))
    b = np.full(n, basis_level[0])
    for i in range(t):
        b = b + 0.05 * (basis_level[i] - b) + 0.0002 * rng.standard_normal(n)
        basis[i] = b
    spot_scale = 1.0 / (1.0 + basis)
    mark_scale = 1.0 + 0.00005 * rng.standard_normal((t, n))

    frames = [
        _bars(config.venue, "perp", symbols, ts, open_, high, low, close, volume),
        _bars(
            config.venue,
            "spot",
            symbols,
            ts,
            open_ * spot_scale,
            high * spot_scale,
            low * spot_scale,
            close * spot_scale,
            volume * 1.5,
        ),
        _bars(
            config.venue,
            "mark",
            symbols,
            ts,
            open_ * mark_scale,
            high * mark_scale,
            low * mark_scale,
            close * mark_scale,
            None,
        ),
    ]
    funding = _funding(config, symbols, ts, basis)
    return SyntheticMarket(ohlcv=pd.concat(frames, ignore_index=True), funding_rates=funding)


def _regime_path(rng: np.random.Generator, t: int) -> list[str]:
    names = list(REGIMES)
    path, current = [], int(rng.integers(len(names)))
    for _ in range(t):
        if rng.random() > REGIME_STAY:
            current = int(rng.integers(len(names)))
        path.append(names[current])
    return path


def _bars(venue, market, symbols, ts, open_, high, low, close, volume) -> pd.DataFrame:
    t, n = close.shape
    return pd.DataFrame(
        {
            "venue": venue,
            "market": market,
            "symbol": np.tile(np.array(symbols, dtype=object), t),
            "timeframe": "1h",
            "ts": np.repeat(ts.values, n),
            "open": open_.ravel(),
            "high": high.ravel(),
            "low": low.ravel(),
            "close": close.ravel(),
            "volume": volume.ravel() if volume is not None else np.nan,
        }
    )


def _funding(config, symbols, ts, basis) -> pd.DataFrame:
    """Funding settles at multiples of the interval; the rate follows the interval's mean basis."""
    interval = config.funding_interval_hours
    bar_close = ts + pd.Timedelta(hours=1)
    settles = np.flatnonzero(bar_close.hour % interval == 0)
    rows = []
    for idx in settles:
        premium = basis[max(0, idx - interval + 1) : idx + 1].mean(axis=0)
        rate = premium + np.clip(INTEREST_8H - premium, -INTEREST_CLAMP, INTEREST_CLAMP)
        rate = np.clip(rate * interval / 8.0, -FUNDING_CAP, FUNDING_CAP)
        for j, symbol in enumerate(symbols):
            rows.append((config.venue, symbol, bar_close[idx], float(rate[j]), interval))
    return pd.DataFrame(rows, columns=["venue", "symbol", "ts", "funding_rate", "interval_hours"])
