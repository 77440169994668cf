"""A seeded synthetic market of USDT perpetuals, calibrated against real Binance data.

The same seed and parameters always give the same frames, and the frames are exactly the raw
tables the ccxt source and the file importers write (perp, spot, mark and index bars; funding
settlements; open interest; top-N order-book snapshots; an empty gap table), so nothing
downstream can tell the sources apart.

The model, per bar (``timeframe``; 1h by default):

* returns: one-factor correlated Student-t shocks (df 6) with per-asset loadings fitted to the
  real sample, GARCH(1,1) volatility clustering, an intraday volatility season and regimes
  (bull, bear, range; Markov switching) that move drift and volatility;
* flash crashes: rare liquidation cascades with a deep low wick, a partial recovery, a negative
  basis and funding spike, a volume burst followed by a liquidity drought, thinned order books
  and an open-interest flush;
* leverage demand: a mean-reverting state fed by momentum and the regime; it widens the perp-spot
  basis (which otherwise mean-reverts around a small discount, as in the real sample), lifts open
  interest and tilts order-book imbalance;
* funding: Binance's rule, premium + clamp(interest - premium, +-0.05%), on the interval's mean
  premium; 8-hourly, 4-hourly for a few symbols (XTZ settles every 4 h in the real sample);
* several venues (e.g. ``venues=("binance", "okx", "bybit")``) share the underlying prices but
  each has its own basis offset and basis noise, hence cross-venue basis dispersion;
* volume and order-book depth scale with volatility: volume rises with it, depth thins.

``tests/ingestion/test_calibration.py`` compares the statistics with the real sample.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from ingestion.frames import MarketFrames, empty_frame
from ingestion.universe import timeframe
from ingestion.warehouse import DATA_GAPS, ORDER_BOOK_SNAPSHOTS

VENUE = "synthetic"


@dataclass(frozen=True)
class AssetParams:
    """Per-asset calibration: start price, hourly vol, market loading, basis, liquidity."""

    price: float
    hourly_vol: float
    loading: float  # correlation with the common factor
    basis_bp: float  # median perp-spot basis, basis points
    basis_noise_bp: float  # std of the basis noise around it
    quote_volume: float  # median hourly perp volume, USDT
    funding_hours: int = 8


# Vol, loading and basis of the first ten are fitted to the real sample (Jan-Feb 2026); the rest
# are plausible values for Chun & Lee's universe.
ASSETS: dict[str, AssetParams] = {
    "BTC": AssetParams(87_800.0, 0.0056, 0.93, -4.7, 1.0, 3.9e8),
    "ETH": AssetParams(2_980.0, 0.0075, 0.95, -4.8, 1.2, 3.6e8),
    "SOL": AssetParams(125.0, 0.0082, 0.92, -5.9, 2.2, 9.1e7),
    "BNB": AssetParams(860.0, 0.0060, 0.85, -5.0, 1.8, 6.0e7),
    "ADA": AssetParams(0.334, 0.0086, 0.91, -7.0, 3.2, 7.6e6),
    "AVAX": AssetParams(12.33, 0.0080, 0.90, -6.4, 5.0, 5.4e6),
    "DOT": AssetParams(1.78, 0.0095, 0.86, -7.5, 5.2, 3.0e6),
    "TRX": AssetParams(0.284, 0.0026, 0.45, -6.2, 4.8, 1.9e6),
    "LINK": AssetParams(12.23, 0.0078, 0.96, -5.6, 4.6, 5.4e6),
    "XTZ": AssetParams(0.493, 0.0086, 0.75, -15.0, 11.0, 2.8e5, funding_hours=4),
    "BCH": AssetParams(603.0, 0.0075, 0.66, -6.9, 2.4, 6.0e6),
    "THETA": AssetParams(0.32, 0.0095, 0.80, -8.0, 6.0, 1.5e6),
    "NEAR": AssetParams(1.70, 0.0095, 0.86, -7.0, 4.5, 6.0e6),
    "FTM": AssetParams(0.55, 0.0110, 0.80, -8.0, 6.0, 4.0e6),
    "ALGO": AssetParams(0.13, 0.0090, 0.85, -7.5, 5.0, 2.0e6),
    "EGLD": AssetParams(7.5, 0.0095, 0.78, -9.0, 7.0, 8.0e5),
    "ATOM": AssetParams(2.4, 0.0085, 0.85, -7.0, 4.5, 3.0e6),
    "KAVA": AssetParams(0.09, 0.0090, 0.72, -10.0, 8.0, 5.0e5, funding_hours=4),
    "ENJ": AssetParams(0.035, 0.0095, 0.75, -10.0, 8.0, 5.0e5),
}
SYMBOLS = tuple(ASSETS)

# Venue: (basis offset bp, extra basis noise bp, volume share). Unknown venues get a seeded draw.
VENUE_PROFILES = {
    VENUE: (0.0, 0.0, 1.0),
    "binance": (0.0, 0.0, 1.0),
    "okx": (1.5, 1.5, 0.45),
    "bybit": (-1.0, 1.2, 0.55),
}

# Regime: (hourly drift, vol multiplier, leverage-demand push).
REGIMES = {"bull": (0.00012, 0.9, 1.0), "bear": (-0.00012, 1.25, -0.6), "range": (0.0, 0.8, 0.0)}
REGIME_STAY_HOURLY = 0.997
T_DF = 6.0
GARCH_ALPHA, GARCH_PERSISTENCE = 0.08, 0.965  # hourly
INTEREST_8H = 0.0001
INTEREST_CLAMP = 0.0005
FUNDING_CAP = 0.0075
FUNDING_PREMIUM_BP = -4.8  # premium index level where the basis sits at its median
CRASH_RATE_HOURLY = 1.0 / (24 * 90)  # per symbol; a third of them hit the whole market
SPOT_VOLUME_RATIO = 0.13


@dataclass(frozen=True)
class SyntheticMarketConfig:
    """Shape and seed of the synthetic market.

    ``symbols`` (default: the first ``n_symbols`` of ``SYMBOLS``) picks the universe, ``venues``
    (default: one venue named ``venue``) the venues. ``order_book_every`` is in bars (default:
    one snapshot per hour).
    """

    n_symbols: int = 5
    n_bars: int = 24 * 365
    start: str = "2024-01-01"
    seed: int = 7
    funding_interval_hours: int = 8
    venue: str = VENUE
    symbols: tuple[str, ...] | None = None
    venues: tuple[str, ...] | None = None
    timeframe: str = "1h"
    order_book_levels: int = 5
    order_book_every: int | None = None
    crash_rate_hourly: float = CRASH_RATE_HOURLY

    def __post_init__(self) -> None:
        if self.symbols is None and not 1 <= self.n_symbols <= len(SYMBOLS):
            raise ValueError(f"n_symbols must be in [1, {len(SYMBOLS)}], got {self.n_symbols}")
        unknown = [s for s in self.symbols or () if s not in ASSETS]
        if unknown:
            raise ValueError(f"no synthetic parameters for symbol(s) {unknown}; known: {SYMBOLS}")
        timeframe(self.timeframe)
        if self.n_bars * self.bar_hours < self.funding_interval_hours:
            raise ValueError(f"n_bars must cover one funding interval, got {self.n_bars}")
        if self.order_book_levels < 0:
            raise ValueError("order_book_levels must be >= 0")

    @property
    def universe(self) -> tuple[str, ...]:
        return tuple(self.symbols) if self.symbols else SYMBOLS[: self.n_symbols]

    @property
    def venue_names(self) -> tuple[str, ...]:
        return tuple(self.venues) if self.venues else (self.venue,)

    @property
    def bar_hours(self) -> float:
        return timeframe(self.timeframe).hours

    @property
    def snapshot_every(self) -> int:
        if self.order_book_every:
            return self.order_book_every
        return max(1, int(round(1.0 / self.bar_hours)))

    def funding_hours(self, symbol: str) -> int:
        own = ASSETS[symbol].funding_hours
        return own if own != 8 else self.funding_interval_hours


@dataclass
class _Paths:
    """The simulated state shared by every venue, arrays shaped (bars, symbols)."""

    ts: pd.DatetimeIndex
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray  # spot close
    vol: np.ndarray  # conditional per-bar volatility
    base_vol: np.ndarray  # (symbols,)
    leverage: np.ndarray  # leverage demand, ~N(0, 1)
    stress: np.ndarray  # >= 0, decays after crashes
    crash: np.ndarray  # bool, crash bars
    liquidity: np.ndarray  # volume multiplier (burst at crash, drought after)
    oi_state: np.ndarray  # log open-interest deviation


def generate_market(config: SyntheticMarketConfig) -> MarketFrames:
    """Generate the whole market described by ``config``."""
    paths = _simulate(config)
    return _frames(config, paths, list(range(len(config.universe))))


def iter_market(
    config: SyntheticMarketConfig, symbols_per_chunk: int = 1
) -> Iterator[MarketFrames]:
    """The same market as ``generate_market``, in chunks of symbols (bounded memory)."""
    paths = _simulate(config)
    n = len(config.universe)
    for lo in range(0, n, symbols_per_chunk):
        yield _frames(config, paths, list(range(lo, min(n, lo + symbols_per_chunk))))


def _ar1(x: np.ndarray, phi: float) -> np.ndarray:
    """y[t] = phi * y[t-1] + x[t] along axis 0."""
    return lfilter([1.0], [1.0, -phi], x, axis=0)


def _simulate(config: SyntheticMarketConfig) -> _Paths:
    rng = np.random.default_rng(config.seed)
    symbols = config.universe
    n, t, dt = len(symbols), config.n_bars, config.bar_hours
    assets = [ASSETS[s] for s in symbols]
    ts = pd.date_range(config.start, periods=t, freq=pd.Timedelta(hours=dt))

    # Regimes: Markov switching with an hourly stay probability.
    stay = REGIME_STAY_HOURLY**dt
    switches = rng.random(t) > stay
    draws = rng.integers(len(REGIMES), size=t)
    current = int(rng.integers(len(REGIMES)))
    last_switch = np.maximum.accumulate(np.where(switches, np.arange(t), -1))
    regime_idx = np.where(last_switch >= 0, draws[np.maximum(last_switch, 0)], current)
    regime = np.array(list(REGIMES.values()))[regime_idx]
    drift, vol_mult, push = regime[:, 0] * dt, regime[:, 1], regime[:, 2]

    # Correlated fat-tailed unit shocks: one factor plus idiosyncratic parts.
    loading = np.array([a.loading for a in assets])
    scale = np.sqrt(T_DF / (T_DF - 2.0))
    factor = rng.standard_t(T_DF, size=(t, 1)) / scale
    idio = rng.standard_t(T_DF, size=(t, n)) / scale
    shocks = loading * factor + np.sqrt(1.0 - loading**2) * idio

    # Intraday volatility season (peak around the US open), normalised to mean 1.
    hour = ts.hour.to_numpy() + ts.minute.to_numpy() / 60.0
    season = 1.0 + 0.3 * np.cos(2 * np.pi * (hour - 15.0) / 24.0) if dt < 24 else np.ones(t)
    season = season / np.sqrt(np.mean(season**2))

    # GARCH(1,1) on the standardised innovations, per bar.
    base_vol = np.array([a.hourly_vol for a in assets]) * np.sqrt(dt)
    persistence = GARCH_PERSISTENCE**dt
    alpha = min(GARCH_ALPHA * np.sqrt(dt), 0.5 * persistence)
    beta = persistence - alpha
    omega = 1.0 - persistence
    h = np.empty((t, n))
    g = np.ones(n)
    for i in range(t):
        h[i] = g
        g = omega + alpha * g * shocks[i] ** 2 + beta * g
    vol = base_vol * np.sqrt(h) * (vol_mult * season)[:, None]
    returns = drift[:, None] + vol * shocks

    # Flash crashes: a market-wide or single-symbol liquidation cascade.
    p_crash = 1.0 - np.exp(-config.crash_rate_hourly * dt)
    crash = rng.random((t, n)) < p_crash * 2.0 / 3.0
    crash |= (rng.random((t, 1)) < p_crash / 3.0) & (rng.random((t, n)) < 0.8)
    crash[0] = False
    depth = rng.uniform(0.04, 0.12, size=(t, n)) * base_vol / np.sqrt(dt) / 0.008
    recovered = rng.uniform(0.55, 0.8, size=(t, n))
    returns = np.where(crash, np.log1p(-depth * (1.0 - recovered)), returns)
    stress = _ar1(crash * 1.0, 0.85**dt)  # 1 at the crash, decaying over hours

    log_close = np.log([a.price for a in assets]) + np.cumsum(returns, axis=0)
    close = np.exp(log_close)
    open_ = np.vstack([np.array([a.price for a in assets]), close[:-1]])
    wick = np.abs(rng.normal(0.0, 0.6, size=(2, t, n))) * vol
    high = np.maximum(open_, close) * np.exp(wick[0])
    low = np.minimum(open_, close) * np.exp(-wick[1])
    low = np.where(crash, np.minimum(low, open_ * (1.0 - depth)), low)

    # Leverage demand: AR(1) fed by 24h momentum, the regime and crashes.
    per_day = max(1, int(round(24 / dt)))
    momentum = pd.DataFrame(returns).rolling(per_day, min_periods=1).sum().to_numpy()
    momentum = momentum / (base_vol * np.sqrt(per_day))
    phi = 0.98**dt
    lev_innov = 0.15 * rng.standard_normal((t, n)) + 0.05 * momentum + 0.04 * push[:, None]
    leverage = _ar1(lev_innov * np.sqrt(dt), phi) - 2.5 * stress
    leverage = leverage / max(1e-9, float(np.std(leverage))) if t > 1 else leverage

    liquidity = 1.0 + 3.0 * crash - 0.4 * np.clip(stress - crash, 0.0, 1.0)
    oi_state = _ar1(0.01 * np.sqrt(dt) * rng.standard_normal((t, n)), 0.999**dt)
    oi_state = oi_state + 0.15 * leverage - _ar1(0.1 * crash, 0.995**dt)
    return _Paths(
        ts=ts,
        open=open_,
        high=high,
        low=low,
        close=close,
        vol=vol,
        base_vol=base_vol,
        leverage=leverage,
        stress=stress,
        crash=crash,
        liquidity=liquidity,
        oi_state=oi_state,
    )


def _venue_profile(venue: str) -> tuple[float, float, float]:
    if venue in VENUE_PROFILES:
        return VENUE_PROFILES[venue]
    r = np.random.default_rng(abs(hash(venue)) % 2**32)
    return float(r.normal(0, 1.5)), float(r.uniform(0.5, 2.0)), float(r.uniform(0.3, 0.7))


def _frames(config: SyntheticMarketConfig, paths: _Paths, cols: list[int]) -> MarketFrames:
    symbols = [config.universe[j] for j in cols]
    parts: list[MarketFrames] = []
    for v, venue in enumerate(config.venue_names):
        # One stream per (seed, venue, symbol): chunks of symbols give the same market.
        rng = _ColumnRng(config.seed, v, cols)
        parts.append(_venue_frames(config, paths, cols, symbols, venue, rng))
    return MarketFrames.concat(parts)


class _ColumnRng:
    """Draws whose symbol axis comes from one generator per symbol."""

    def __init__(self, seed: int, venue_index: int, cols: list[int]) -> None:
        self.rngs = [np.random.default_rng([seed, venue_index, c]) for c in cols]

    def normal(self, lead=(), tail=(), loc=0.0, scale=1.0) -> np.ndarray:
        size = tuple(lead) + tuple(tail)
        draws = [r.normal(loc, scale, size=size) for r in self.rngs]
        return np.stack(draws, axis=len(lead))

    def random(self) -> np.ndarray:
        return np.array([r.random() for r in self.rngs])


def _venue_frames(config, paths: _Paths, cols, symbols, venue, rng) -> MarketFrames:
    t, n, dt = len(paths.ts), len(cols), config.bar_hours
    assets = [ASSETS[s] for s in symbols]
    o, h, lo, c = (a[:, cols] for a in (paths.open, paths.high, paths.low, paths.close))
    vol, lev, stress = paths.vol[:, cols], paths.leverage[:, cols], paths.stress[:, cols]
    base_vol = paths.base_vol[cols]
    offset_bp, extra_bp, share = _venue_profile(venue)

    # Basis (perp vs spot): a discount that mean-reverts, widens with leverage demand and
    # collapses in crashes; venue-specific offset and noise.
    level = np.array([a.basis_bp for a in assets]) + offset_bp
    noise_bp = np.sqrt(np.array([a.basis_noise_bp for a in assets]) ** 2 + extra_bp**2)
    phi = 0.6**dt
    noise = _ar1(rng.normal((t,)) * np.sqrt(1 - phi**2), phi)
    skew = _ar1(rng.normal((t,)) * np.sqrt(1 - phi**2), phi)
    # Left-skewed around the level (perps dip below spot more than they rise above it).
    dev_bp = noise_bp * (0.55 * noise + 0.45 * lev - 0.7 * (np.abs(skew) - 0.8))
    crash_bp = -40.0 * stress * (1.0 + rng.random())
    basis_bp = level + dev_bp + crash_bp
    basis = basis_bp * 1e-4
    spot_noise = 1.0 + 0.3e-4 * rng.normal((t,))
    perp_scale = (1.0 + basis) * spot_noise
    # The premium index that drives funding is smoother than the close-to-close basis: it
    # follows leverage demand and crashes, around Binance's typical level.
    p_noise = _ar1(rng.normal((t,)) * np.sqrt(1 - 0.9**2), 0.9)
    premium_bp = FUNDING_PREMIUM_BP + offset_bp + 1.1 * lev + 0.7 * p_noise
    premium = (premium_bp + 0.5 * crash_bp) * 1e-4

    vol_ratio = vol / base_vol
    quote_vol = np.array([a.quote_volume for a in assets]) * share
    lognorm = np.exp(rng.normal((t,), loc=-0.06, scale=0.35))
    volume_q = quote_vol * vol_ratio**1.2 * lognorm * paths.liquidity[:, cols] * np.sqrt(dt)
    perp_volume = volume_q / c

    mark_bp = 0.5 + 0.6 * noise_bp * rng.normal((t,))
    mark_scale = perp_scale * (1.0 + mark_bp * 1e-4)
    index_scale = 1.0 + 0.2e-4 * rng.normal((t,))

    def bars(market: str, scale: np.ndarray, volume: np.ndarray | None) -> pd.DataFrame:
        oo, cc = o * np.vstack([scale[:1], scale[:-1]]), c * scale
        hh = np.maximum(h * scale, np.maximum(oo, cc))
        ll = np.minimum(lo * scale, np.minimum(oo, cc))
        return _long(venue, market, symbols, config.timeframe, paths.ts, oo, hh, ll, cc, volume)

    ohlcv = pd.concat(
        [
            bars("perp", perp_scale, perp_volume),
            bars("spot", spot_noise, perp_volume * SPOT_VOLUME_RATIO * (1 + 0.2 * lognorm)),
            bars("mark", mark_scale, None),
            bars("index", index_scale, None),
        ],
        ignore_index=True,
    )
    funding = _funding(config, venue, symbols, paths.ts, premium)
    oi_base = np.array([a.quote_volume for a in assets]) * share * 6.0 / c[0]
    oi = oi_base * np.exp(paths.oi_state[:, cols])
    open_interest = pd.DataFrame(
        {
            "venue": venue,
            "symbol": np.tile(np.array(symbols, dtype=object), t),
            "timeframe": config.timeframe,
            "ts": np.repeat(paths.ts.values, n),
            "open_interest": oi.ravel(),
            "open_interest_value": (oi * c * mark_scale).ravel(),
        }
    )
    books = _order_books(config, venue, symbols, paths.ts, o * perp_scale, vol_ratio, lev, rng)
    return MarketFrames(
        ohlcv=ohlcv,
        funding_rates=funding,
        open_interest=open_interest,
        order_book_snapshots=books,
        data_gaps=empty_frame(DATA_GAPS),
    )


def _order_books(config, venue, symbols, ts, mid, vol_ratio, lev, rng) -> pd.DataFrame:
    """Top-N perp books at bar open (mid = the bar's open): spread widens, depth thins in stress,
    imbalance leans with leverage demand."""
    levels = config.order_book_levels
    if levels == 0:
        return empty_frame(ORDER_BOOK_SNAPSHOTS)
    take = np.arange(0, len(ts), config.snapshot_every)
    s, n = len(take), len(symbols)
    mid, vr, lv = mid[take], np.clip(vol_ratio[take], 0.3, 10.0), lev[take]
    assets = [ASSETS[x] for x in symbols]
    half_spread = np.array([0.5e-4 if a.quote_volume > 5e7 else 1.5e-4 for a in assets]) * vr
    step = half_spread[..., None] * (1.0 + np.arange(levels))  # (s, n, L)
    depth_q = np.array([a.quote_volume for a in assets]) * 0.002 / vr  # USDT per level
    tilt = np.tanh(0.5 * lv + 0.3 * rng.normal((s,)))
    noise = np.exp(rng.normal((2, s), (levels,), scale=0.3))
    prices = np.stack([mid[..., None] * (1.0 - step), mid[..., None] * (1.0 + step)])  # (2,s,n,L)
    ramp = 1.0 + 0.5 * np.arange(levels)
    sign = np.array([1.0, -1.0])[:, None, None, None]
    amounts = (
        depth_q[None, ..., None] * ramp * noise * np.exp(0.4 * sign * tilt[None, ..., None])
    ) / prices
    shape = (2, s, n, levels)
    return pd.DataFrame(
        {
            "venue": venue,
            "market": "perp",
            "symbol": np.broadcast_to(np.array(symbols, dtype=object)[None, None, :, None], shape)
            .ravel()
            .copy(),
            "ts": np.broadcast_to(ts.values[take][None, :, None, None], shape).ravel().copy(),
            "side": np.broadcast_to(
                np.array(["bid", "ask"], dtype=object)[:, None, None, None], shape
            )
            .ravel()
            .copy(),
            "level": np.broadcast_to(np.arange(1, levels + 1, dtype=np.int32), shape)
            .ravel()
            .copy(),
            "price": prices.ravel(),
            "amount": amounts.ravel(),
        }
    )


def _long(venue, market, symbols, timeframe, ts, open_, high, low, close, volume) -> pd.DataFrame:
    t, n = close.shape
    return pd.DataFrame(
        {
            "venue": venue,
            "market": market,
            "symbol": np.tile(np.array(symbols, dtype=object), t),
            "timeframe": timeframe,
            "ts": np.repeat(ts.values, n),
            "open": open_.ravel(),
            "high": high.ravel(),
            "low": low.ravel(),
            "close": close.ravel(),
            "volume": volume.ravel() if volume is not None else np.nan,
        }
    )


def _funding(config, venue, symbols, ts, premium) -> pd.DataFrame:
    """Settlements at multiples of each symbol's interval after 00:00 UTC; the rate follows the
    mean premium of the bars that closed during the interval (Binance's rule)."""
    bar = pd.Timedelta(hours=config.bar_hours)
    bar_close = (ts + bar).values
    t = len(ts)
    csum = np.vstack([np.zeros((1, premium.shape[1])), np.cumsum(premium, axis=0)])
    frames = []
    for j, symbol in enumerate(symbols):
        interval = config.funding_hours(symbol)
        step = pd.Timedelta(hours=interval)
        settles = pd.date_range(ts[0].floor("D"), ts[-1] + bar, freq=step)
        settles = settles[settles > ts[0]]
        hi = np.searchsorted(bar_close, settles.values, side="right")
        lo = np.searchsorted(bar_close, (settles - step).values, side="right")
        # Bars longer than the interval: the bar containing the settlement.
        short = hi <= lo
        lo = np.where(short, np.minimum(hi, t - 1), lo)
        hi = np.where(short, lo + 1, hi)
        mean_p = (csum[hi, j] - csum[lo, j]) / (hi - lo)
        rate = mean_p + np.clip(INTEREST_8H - mean_p, -INTEREST_CLAMP, INTEREST_CLAMP)
        rate = np.clip(rate * interval / 8.0, -FUNDING_CAP, FUNDING_CAP)
        frames.append(
            pd.DataFrame(
                {
                    "venue": venue,
                    "symbol": symbol,
                    "ts": settles,
                    "funding_rate": rate,
                    "interval_hours": np.int32(interval),
                }
            )
        )
    return pd.concat(frames, ignore_index=True).sort_values(["ts", "symbol"], ignore_index=True)
