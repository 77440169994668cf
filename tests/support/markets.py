"""Synthetic ``MarketData`` for environment, training and serving tests."""

from __future__ import annotations

import numpy as np

from training.market import MarketData

FUNDING_EVERY_HOURS = 8


def make_synthetic_market(
    n_assets: int = 3,
    n_bars: int = 600,
    seed: int = 0,
    n_features: int = 4,
    start: str = "2024-01-01T00:00",
) -> MarketData:
    """Random-walk 1h perp market with 8-hourly funding at 00/08/16 UTC and noisy features."""
    rng = np.random.default_rng(seed)
    ts = np.datetime64(start, "ns") + np.arange(n_bars) * np.timedelta64(1, "h")
    rets = rng.normal(0.0, 0.006, (n_bars, n_assets))
    close = 100.0 * (1 + np.arange(n_assets)) * np.exp(np.cumsum(rets, axis=0))
    open_ = np.vstack([close[:1], close[:-1]]) * np.exp(rng.normal(0, 0.0005, close.shape))
    wick = np.abs(rng.normal(0, 0.003, (2, n_bars, n_assets)))
    high = np.maximum(open_, close) * (1 + wick[0])
    low = np.minimum(open_, close) * (1 - wick[1])
    mark = close * (1 + rng.normal(0, 0.0002, close.shape))
    volume = rng.uniform(1e5, 5e5, close.shape)
    hour_close = (ts.astype("datetime64[h]").astype(np.int64) + 1) % 24
    settles = (hour_close % FUNDING_EVERY_HOURS == 0)[:, None]
    funding = np.where(settles, rng.normal(1e-4, 1e-4, close.shape), 0.0)
    hours = (FUNDING_EVERY_HOURS - hour_close % FUNDING_EVERY_HOURS) % FUNDING_EVERY_HOURS
    hours = np.repeat(hours[:, None].astype(float), n_assets, axis=1)
    basis = rng.normal(2e-4, 3e-4, close.shape)
    feats = [np.vstack([np.zeros((1, n_assets)), np.diff(np.log(close), axis=0)])]
    feats += [rng.normal(j, 1 + j, close.shape) for j in range(n_features - 1)]
    features = np.stack(feats, axis=-1).astype(np.float32)
    return MarketData(
        timestamps=ts,
        symbols=tuple(
            ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"][i % 4] + str(i // 4 or "")
            for i in range(n_assets)
        ),
        open=open_,
        high=high,
        low=low,
        close=close,
        mark=mark,
        volume=volume,
        funding_rate=funding,
        hours_to_funding=hours,
        basis=basis,
        features=features,
        feature_names=tuple(f"f{j}" for j in range(n_features)),
        bar_hours=1.0,
    ).validate()


def make_flat_market(
    n_assets: int = 1,
    n_bars: int = 40,
    price: float = 100.0,
    volume: float = 1e6,
    n_features: int = 2,
) -> dict[str, np.ndarray]:
    """Field arrays of a constant-price market (edit them, then call ``to_market``)."""
    shape = (n_bars, n_assets)
    return {
        "open": np.full(shape, price),
        "high": np.full(shape, price),
        "low": np.full(shape, price),
        "close": np.full(shape, price),
        "mark": np.full(shape, price),
        "volume": np.full(shape, volume),
        "funding_rate": np.zeros(shape),
        "hours_to_funding": np.full(shape, 4.0),
        "basis": np.zeros(shape),
        "features": np.random.default_rng(0).normal(size=(*shape, n_features)).astype(np.float32),
    }


def to_market(fields: dict[str, np.ndarray]) -> MarketData:
    """``MarketData`` from ``make_flat_market``-style fields."""
    n_bars, n_assets = fields["close"].shape
    ts = np.datetime64("2024-01-01T00:00", "ns") + np.arange(n_bars) * np.timedelta64(1, "h")
    return MarketData(
        timestamps=ts,
        symbols=tuple(f"A{i}USDT" for i in range(n_assets)),
        feature_names=tuple(f"f{j}" for j in range(fields["features"].shape[-1])),
        bar_hours=1.0,
        **fields,
    ).validate()
