"""Symbols, venues and timeframes: the configurable universe of the market-data sources."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Timeframe:
    """A bar length the warehouse stores, named as ccxt, freqtrade and Binance name it."""

    name: str
    """The ``timeframe`` column's value, e.g. ``"1h"``."""
    minutes: int
    """Bar length in minutes."""

    @property
    def delta(self) -> pd.Timedelta:
        """Bar length as a ``pandas.Timedelta``."""
        return pd.Timedelta(minutes=self.minutes)

    @property
    def milliseconds(self) -> int:
        """Bar length in milliseconds (exchange APIs' unit)."""
        return self.minutes * 60_000

    @property
    def hours(self) -> float:
        """Bar length in hours."""
        return self.minutes / 60.0


TIMEFRAMES: dict[str, Timeframe] = {
    tf.name: tf
    for tf in (
        Timeframe("5m", 5),
        Timeframe("10m", 10),
        Timeframe("30m", 30),
        Timeframe("1h", 60),
        Timeframe("1d", 1440),
    )
}
"""Every timeframe the warehouse stores. 10m is built from 5m candles where a venue has no native
10m (Binance, OKX and Bybit all lack it). ``dbt_project/macros/timeframes.sql`` repeats this table
for dbt, and a test keeps the two equal."""
MART_TIMEFRAMES = ("10m", "30m", "1h", "1d")
"""Timeframes of the feature mart: dbt's ``timeframes`` var (a test keeps the two equal)."""


# The 18 Binance USDT-M perpetuals studied by Chun & Lee (2025).
CHUN_LEE_2025 = (
    "BTC", "ETH", "ADA", "SOL", "THETA", "NEAR", "BNB", "AVAX", "DOT",
    "BCH", "TRX", "FTM", "ALGO", "EGLD", "ATOM", "XTZ", "KAVA", "ENJ",
)  # fmt: skip
# The ten perpetuals of the real two-month sample (../shared/data/binance-sample).
BINANCE_SAMPLE = ("BTC", "ETH", "SOL", "ADA", "AVAX", "LINK", "TRX", "DOT", "XTZ", "BCH")
DEFAULT = ("BTC", "ETH", "SOL", "BNB", "ADA")

PRESETS: dict[str, tuple[str, ...]] = {
    "default": DEFAULT,
    "chun_lee_2025": CHUN_LEE_2025,
    "binance_sample": BINANCE_SAMPLE,
}


@dataclass(frozen=True)
class VenueSpec:
    """How one venue is reached through ccxt and named in the warehouse."""

    name: str  # the ``venue`` column
    perp_exchange: str  # ccxt id of the perpetuals API
    spot_exchange: str | None  # ccxt id of the spot API (None: no spot series)
    quote: str = "USDT"

    def perp_symbol(self, base: str) -> str:
        return f"{base}/{self.quote}:{self.quote}"

    def spot_symbol(self, base: str) -> str:
        return f"{base}/{self.quote}"


VENUES: dict[str, VenueSpec] = {
    "binance": VenueSpec("binance", "binanceusdm", "binance"),
    "okx": VenueSpec("okx", "okx", "okx"),
    "bybit": VenueSpec("bybit", "bybit", "bybit"),
}


def resolve_symbols(symbols: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """A preset name ("default", "chun_lee_2025", ...) or an explicit list of base assets."""
    if isinstance(symbols, str):
        if symbols in PRESETS:
            return PRESETS[symbols]
        symbols = [s for s in symbols.replace(",", " ").split() if s]
    out = tuple(s.strip().upper() for s in symbols)
    if not out:
        raise ValueError("the symbol universe is empty")
    return out


def timeframe(name: str) -> Timeframe:
    """The ``Timeframe`` called ``name``; raises on anything the warehouse does not store."""
    if name not in TIMEFRAMES:
        raise ValueError(f"unsupported timeframe {name!r}; supported: {list(TIMEFRAMES)}")
    return TIMEFRAMES[name]


def timeframe_delta(name: str) -> pd.Timedelta:
    """Bar length of timeframe ``name``; raises on anything the warehouse does not store."""
    return timeframe(name).delta
