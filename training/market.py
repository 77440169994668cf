"""Aligned per-bar market arrays consumed by the trading environment."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

_PRICE_FIELDS = ("open", "high", "low", "close", "mark")
_PER_ASSET_FIELDS = (*_PRICE_FIELDS, "volume", "funding_rate", "hours_to_funding", "basis")
_NS_PER_HOUR = 3_600 * 10**9


@dataclass(frozen=True)
class MarketData:
    """Aligned per-bar arrays for N assets over T bars.

    Bar t covers ``[timestamps[t], close_times[t])``. Every per-bar value is known at the close
    of bar t; the environment never lets an agent act on bar t+1 values at bar t.
    """

    timestamps: np.ndarray
    """(T,) datetime64[ns] bar open times, UTC, strictly increasing."""
    symbols: tuple[str, ...]
    """(N,) asset symbols, e.g. ``("BTCUSDT", "ETHUSDT")``."""
    open: np.ndarray
    """(T, N) float64 perp open price."""
    high: np.ndarray
    """(T, N) float64 perp high price."""
    low: np.ndarray
    """(T, N) float64 perp low price."""
    close: np.ndarray
    """(T, N) float64 perp close price."""
    mark: np.ndarray
    """(T, N) mark price at bar close (funding notional, unrealized PnL, margin)."""
    volume: np.ndarray
    """(T, N) base-asset volume of the bar."""
    funding_rate: np.ndarray
    """(T, N) rate of a settlement at the CLOSE of bar t; 0.0 where there is none."""
    hours_to_funding: np.ndarray
    """(T, N) hours from bar t's close to the next settlement."""
    basis: np.ndarray
    """(T, N) (perp close - spot close) / spot close at bar t close."""
    features: np.ndarray
    """(T, N, F) float32 features; the value at bar t is known at the close of bar t."""
    feature_names: tuple[str, ...]
    """(F,) feature names, in the order of the last axis of ``features``."""
    bar_hours: float = 1.0
    """Bar length in hours."""
    tradable: np.ndarray | None = None
    """(T, N) bool, False where an asset's bar t holds prices carried forward over a data gap: the
    decision at the close of bar t places no new order for that asset (it keeps its position).
    None (the default) means all True."""

    def __post_init__(self) -> None:
        if self.tradable is None:
            n_bars = self.timestamps.shape[0] if np.ndim(self.timestamps) else 0
            object.__setattr__(self, "tradable", np.ones((n_bars, len(self.symbols)), dtype=bool))

    @property
    def n_bars(self) -> int:
        """Number of bars T."""
        return int(self.timestamps.shape[0])

    @property
    def n_assets(self) -> int:
        """Number of assets N."""
        return len(self.symbols)

    @property
    def close_times(self) -> np.ndarray:
        """(T,) datetime64[ns] bar close times: ``timestamps + bar_hours``."""
        bar = np.timedelta64(round(self.bar_hours * _NS_PER_HOUR), "ns")
        return self.timestamps.astype("datetime64[ns]") + bar

    def validate(self) -> MarketData:
        """Raise ``ValueError`` naming the field (and symbol/timestamp) of the first problem."""
        t, n = self.n_bars, self.n_assets
        if self.timestamps.ndim != 1 or not np.issubdtype(self.timestamps.dtype, np.datetime64):
            raise ValueError("timestamps: expected a 1-D datetime64 array")
        steps = np.diff(self.timestamps.astype("datetime64[ns]").astype(np.int64))
        if np.any(steps <= 0):
            i = int(np.argmax(steps <= 0)) + 1
            raise ValueError(f"timestamps: not strictly increasing at {_iso(self.timestamps[i])}")
        if len(set(self.symbols)) != n:
            raise ValueError("symbols: duplicate symbols")
        for name in _PER_ASSET_FIELDS:
            arr = getattr(self, name)
            if arr.shape != (t, n):
                raise ValueError(f"{name}: shape {arr.shape}, expected {(t, n)}")
            bad = ~np.isfinite(arr)
            if name in _PRICE_FIELDS:
                bad |= arr <= 0
            elif name in ("volume", "hours_to_funding"):
                bad |= arr < 0
            if bad.any():
                i, j = (int(k[0]) for k in np.nonzero(bad))
                raise ValueError(
                    f"{name}: invalid value {float(arr[i, j])} for {self.symbols[j]} "
                    f"at {_iso(self.timestamps[i])}"
                )
        if np.any(self.high < np.maximum(self.open, self.close)) or np.any(
            self.low > np.minimum(self.open, self.close)
        ):
            raise ValueError("high/low: bar extremes do not contain open and close")
        f = len(self.feature_names)
        if self.features.shape != (t, n, f):
            raise ValueError(f"features: shape {self.features.shape}, expected {(t, n, f)}")
        if self.bar_hours <= 0:
            raise ValueError("bar_hours: must be positive")
        tradable = np.asarray(self.tradable)
        if tradable.shape != (t, n) or tradable.dtype != np.bool_:
            raise ValueError(
                f"tradable: {tradable.dtype} array of shape {tradable.shape}, "
                f"expected bool {(t, n)}"
            )
        return self

    def slice(self, start: int, stop: int | None = None) -> MarketData:
        """Bars ``[start, stop)`` as a new ``MarketData`` (views, no copies)."""
        s = np.s_[start:stop]
        return replace(
            self,
            timestamps=self.timestamps[s],
            features=self.features[s],
            tradable=np.asarray(self.tradable)[s],
            **{name: getattr(self, name)[s] for name in _PER_ASSET_FIELDS},
        )


def _iso(timestamp: np.datetime64) -> str:
    """A bar timestamp as ``YYYY-MM-DD HH:MM:SS`` (UTC)."""
    return str(np.datetime_as_string(timestamp, unit="s")).replace("T", " ")
