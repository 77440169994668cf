"""Trading cost models: exchange fees, slippage and funding cash flows.

All functions are element-wise on numpy arrays so the single and batched environments share them.
Notionals are in quote currency (USDT); a positive cost is money leaving the account.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class FeeModel:
    """Exchange trading fee, a fraction of traded notional.

    Defaults: Binance USDT-M futures, regular tier (VIP 0): 0.05% taker, 0.02% maker.
    """

    taker_rate: float = 0.0005
    """Fee rate on notional filled as taker (market orders)."""
    maker_rate: float = 0.0002
    """Fee rate on notional filled as maker (resting limit orders)."""
    maker_fraction: float = 0.0
    """Share of traded notional assumed filled as maker; 0 = all market orders."""

    @property
    def rate(self) -> float:
        """Blended fee rate per unit of traded notional."""
        return self.taker_rate * (1.0 - self.maker_fraction) + self.maker_rate * self.maker_fraction

    def fee(self, traded_notional: np.ndarray) -> np.ndarray:
        """Fee paid for trading ``traded_notional`` (sign ignored)."""
        return self.rate * np.abs(traded_notional)


@dataclass(frozen=True)
class SlippageModel:
    """Execution shortfall versus the bar open: half spread plus market impact.

    ``cost = |Q| * (half_spread + min(impact_coef * (|Q| / V) ** impact_exponent, max_impact))``
    where ``Q`` is traded notional and ``V`` the fill bar's quote volume (volume x open).
    ``impact_exponent = 0.5`` is the square-root law; ``impact_coef`` plays the role of
    ``Y * sigma_bar`` (about 1 x hourly volatility of a major perp).
    """

    half_spread: float = 0.0001
    """Half the quoted bid/ask spread as a fraction of price (1 bp)."""
    impact_coef: float = 0.005
    """Impact of trading 100% of the bar's volume, as a fraction of price."""
    impact_exponent: float = 0.5
    """Exponent of participation in the impact law (0.5 = square root)."""
    max_impact: float = 0.05
    """Cap on the impact fraction (guards bars with near-zero volume)."""

    def rate(self, traded_notional: np.ndarray, quote_volume: np.ndarray) -> np.ndarray:
        """Slippage per unit of traded notional."""
        floor, coef, cap, spread = self._operands
        participation = np.abs(traded_notional) / np.maximum(quote_volume, floor)
        impact = np.minimum(coef * participation**self.impact_exponent, cap)
        return spread + impact

    @cached_property
    def _operands(self) -> tuple[np.ndarray, ...]:
        """Volume floor and the float parameters of ``rate`` as 0-d float64 arrays.

        The environment calls ``rate`` on (1, N) arrays every step, where converting a Python
        float operand is a noticeable share of each numpy call. The exponent stays a float, so
        that ``** 0.5`` keeps numpy's square-root fast path.
        """
        values = (1e-12, self.impact_coef, self.max_impact, self.half_spread)
        return tuple(np.array(v, dtype=np.float64) for v in values)

    def cost(self, traded_notional: np.ndarray, quote_volume: np.ndarray) -> np.ndarray:
        """Slippage paid for trading ``traded_notional`` against ``quote_volume``."""
        return np.abs(traded_notional) * self.rate(traded_notional, quote_volume)


def funding_cash_flow(qty: np.ndarray, mark: np.ndarray, rate: np.ndarray) -> np.ndarray:
    """Cash received at a funding settlement: ``-qty * mark * rate``.

    Longs (qty > 0) pay when the rate is positive, shorts receive; rate 0 means no settlement.
    """
    return -qty * mark * rate
