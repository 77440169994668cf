"""Cross-margin maintenance requirements (notional tiers) and liquidation inside a bar."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Tiers = tuple[tuple[float, float], ...]
"""Maintenance tiers as ``((notional_floor, rate), ...)``, floors increasing from 0."""

MAJOR_TIERS: Tiers = (
    (0.0, 0.004),
    (50_000.0, 0.005),
    (600_000.0, 0.01),
    (3_000_000.0, 0.025),
    (20_000_000.0, 0.05),
    (40_000_000.0, 0.1),
    (100_000_000.0, 0.125),
    (200_000_000.0, 0.15),
    (400_000_000.0, 0.25),
    (600_000_000.0, 0.5),
)
"""Modeled on Binance USDT-M BTCUSDT/ETHUSDT brackets (approximate)."""

ALT_TIERS: Tiers = (
    (0.0, 0.01),
    (5_000.0, 0.015),
    (25_000.0, 0.02),
    (100_000.0, 0.05),
    (250_000.0, 0.1),
    (1_000_000.0, 0.125),
    (3_000_000.0, 0.25),
    (5_000_000.0, 0.5),
)
"""Modeled on Binance USDT-M mid-cap altcoin brackets (approximate)."""


@dataclass(frozen=True)
class MarginModel:
    """Maintenance margin tiers per asset and the liquidation fee."""

    major_tiers: Tiers = MAJOR_TIERS
    """Tiers for symbols starting with one of ``majors``."""
    alt_tiers: Tiers = ALT_TIERS
    """Tiers for every other symbol."""
    majors: tuple[str, ...] = ("BTC", "ETH")
    """Symbol prefixes that use ``major_tiers``."""
    liquidation_fee_rate: float = 0.0125
    """Liquidation clearance fee as a fraction of liquidated notional."""

    def table(self, symbols: tuple[str, ...]) -> MarginTable:
        """Padded per-asset tier arrays for ``symbols``."""
        tiers = [
            self.major_tiers if s.upper().startswith(self.majors) else self.alt_tiers
            for s in symbols
        ]
        k = max(len(t) for t in tiers) + 1  # an inf floor column closes the last tier
        floors = np.full((len(symbols), k), np.inf)
        rates = np.zeros((len(symbols), k))
        cum = np.zeros((len(symbols), k))
        for i, tier in enumerate(tiers):
            if tier[0][0] != 0.0 or any(b[0] <= a[0] for a, b in zip(tier, tier[1:], strict=False)):
                raise ValueError(f"margin tiers for {symbols[i]}: floors must start at 0, increase")
            for j, (floor, rate) in enumerate(tier):
                floors[i, j], rates[i, j] = floor, rate
                if j:  # Binance "maintenance amount": keeps MM continuous across tier floors
                    cum[i, j] = cum[i, j - 1] + floor * (rate - rates[i, j - 1])
        return MarginTable(floors, rates, cum)


@dataclass(frozen=True)
class MarginTable:
    """(N, K) tier floors, rates and maintenance amounts; ``MM = notional * rate - cum``."""

    floors: np.ndarray
    rates: np.ndarray
    cum: np.ndarray
    _first: tuple[np.ndarray, ...] = field(init=False, repr=False, compare=False)
    """Contiguous (1, N) second-tier floors, first-tier rates and amounts (the common case)."""

    def __post_init__(self) -> None:
        first = (self.floors[:, 1], self.rates[:, 0], self.cum[:, 0])
        object.__setattr__(self, "_first", tuple(np.ascontiguousarray(a[None]) for a in first))

    def lookup(self, notional: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rate and maintenance amount of the tier of each |notional| (..., N)."""
        size = np.abs(notional)
        second, rate, cum = self._first
        if np.count_nonzero(size < second) == size.size:  # everything in the first tier
            # (1, N) rows: same shape as a (1, N) batch, which numpy handles without broadcasting
            return (rate, cum) if size.ndim > 1 else (rate[0], cum[0])
        idx = (size[..., None] >= self.floors).sum(-1) - 1
        cols = np.arange(self.rates.shape[0])
        return self.rates[cols, idx], self.cum[cols, idx]

    def maintenance(self, notional: np.ndarray) -> np.ndarray:
        """Maintenance margin per asset for signed or absolute notional (..., N)."""
        rate, cum = self.lookup(notional)
        return np.abs(notional) * rate - cum  # zero notional is in tier 0, where cum = 0


def liquidation_fraction(
    cash: np.ndarray,
    qty: np.ndarray,
    entry: np.ndarray,
    p0: np.ndarray,
    p1: np.ndarray,
    mm_rate: np.ndarray,
    mm_cum: np.ndarray,
) -> np.ndarray:
    """Where on the path p0 -> p1 the cross account first hits maintenance margin.

    Prices move linearly ``p(lam) = p0 + lam * (p1 - p0)`` for every asset at once (p1 is each
    position's adverse extreme). Equity and maintenance margin are linear in ``lam`` for fixed
    tiers, so the crossing is solved exactly. Returns ``lam`` in [0, 1] per account (B,), or
    ``inf`` where equity stays at or above maintenance margin over the whole path.
    """
    g0 = cash + (qty * (p0 - entry)).sum(-1) - (np.abs(qty) * p0 * mm_rate - mm_cum).sum(-1)
    dg = (qty * (p1 - p0)).sum(-1) - (np.abs(qty) * (p1 - p0) * mm_rate).sum(-1)
    g1 = g0 + dg
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = np.where(g0 < 0, 0.0, g0 / (g0 - g1))
    return np.where((g0 < 0) | (g1 < 0), np.clip(lam, 0.0, 1.0), np.inf)
