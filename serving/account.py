"""The account and order types every part of serving shares: the paper broker and the live
adapter produce an ``AccountState``, the safety layer checks ``Order`` lists against it, and
the serving cycle turns target weights into orders. Plain numpy, no ML imports."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AccountState:
    """One account valued at the marks of a bar's close; arrays are (N,) in ``symbols`` order."""

    symbols: tuple[str, ...]
    """The assets, in the policy's order."""
    cash: float
    """Wallet balance in quote currency: deposits plus realized PnL, minus fees and slippage,
    plus funding received."""
    qty: np.ndarray
    """Signed position size in base units (contracts of 1 base unit); 0 when flat."""
    entry_price: np.ndarray
    """Average entry price of each open position (0 when flat)."""
    entry_basis: np.ndarray
    """Quantity-weighted basis (perp / spot - 1) at entry (0 when flat)."""
    mark: np.ndarray
    """Mark price each position is valued at."""
    initial_equity: float
    """Equity the account started with (the observation's equity ratio divides by it)."""

    @property
    def notional(self) -> np.ndarray:
        """Signed position value at mark."""
        return self.qty * self.mark

    @property
    def unrealized_pnl(self) -> np.ndarray:
        """PnL of each open position at mark."""
        return self.qty * (self.mark - self.entry_price)

    @property
    def equity(self) -> float:
        """Cash plus unrealized PnL."""
        return float(self.cash + self.unrealized_pnl.sum())

    @property
    def weights(self) -> np.ndarray:
        """Signed notional / equity (0 where the equity is not positive)."""
        equity = self.equity
        return self.notional / equity if equity > 0 else np.zeros(len(self.symbols))

    @classmethod
    def flat(cls, symbols: tuple[str, ...], cash: float, mark: np.ndarray) -> AccountState:
        """A new account holding only ``cash``."""
        zeros = np.zeros(len(symbols))
        return cls(tuple(symbols), float(cash), zeros, zeros, zeros, np.asarray(mark, float), cash)


@dataclass(frozen=True)
class MarketRules:
    """Exchange order rules per asset, (N,) in ``symbols`` order (Binance's LOT_SIZE and
    MIN_NOTIONAL filters)."""

    symbols: tuple[str, ...]
    lot_size: np.ndarray
    """Quantity step: order sizes are whole multiples of it."""
    min_notional: np.ndarray
    """Smallest order value accepted, in quote currency."""


@dataclass(frozen=True)
class Order:
    """One market order decided at the close of ``decision_ts``, to fill at the next open."""

    client_order_id: str
    """Deterministic id from (account, decision bar, symbol): re-sending it never trades twice."""
    decision_ts: np.datetime64
    """Close time of the bar the order was decided on."""
    symbol: str
    qty: float
    """Signed base quantity: positive buys, negative sells; a whole multiple of the lot size."""
    reference_price: float
    """Price the order was sized at (the decision bar's close)."""
    reduce_only: bool = False
    """True when the order only shrinks an existing position (unwinds, kill switch)."""

    @property
    def side(self) -> str:
        """'BUY' or 'SELL'."""
        return "BUY" if self.qty > 0 else "SELL"

    @property
    def notional(self) -> float:
        """|qty| x reference price."""
        return abs(self.qty) * self.reference_price
