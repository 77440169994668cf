"""The per-bar ledger of one strategy's backtest: what every metric, statistic and report reads.

Step k of a backtest is the decision at the close of bar ``t - 1`` filled at the open of bar ``t``
and marked at the close of bar ``t``; row k of every per-step array belongs to that bar ``t``, and
``close_times[k]`` is the moment its equity is known. ``equity`` has one more entry: the
equity at the close of the first decision bar, before any order (``start_time``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

LEDGER_COLUMNS = ("equity", "fees", "slippage", "funding", "turnover", "gross", "net", "liquidated")
"""Per-bar columns of ``Ledger.bar_frame`` beside ``strategy`` and ``ts``."""


@dataclass(frozen=True)
class Ledger:
    """One strategy's accounting over the bars of a backtest, as the environment computed it."""

    name: str
    """Strategy name, e.g. ``candidate`` or ``equal_weight``."""
    symbols: tuple[str, ...]
    """(N,) symbols, in the order of the per-asset columns."""
    bar_hours: float
    """Bar length in hours."""
    start_time: np.datetime64
    """Close of the bar of the first decision: when ``equity[0]`` is measured (UTC)."""
    close_times: np.ndarray
    """(T,) datetime64[ns] close of the bar each step simulates (UTC)."""
    equity: np.ndarray
    """(T + 1,) account equity: ``equity[0]`` before the first order, then at each bar close."""
    weights: np.ndarray
    """(T, N) signed position notional / equity at each bar close, after the step."""
    fees: np.ndarray
    """(T,) exchange fees paid in the step (quote currency, >= 0)."""
    slippage: np.ndarray
    """(T,) slippage paid in the step (quote currency, >= 0)."""
    funding: np.ndarray
    """(T,) funding cash flow to the account in the step (> 0 received, < 0 paid)."""
    turnover: np.ndarray
    """(T,) traded notional / equity before the step."""
    liquidated: np.ndarray
    """(T,) bool: the account was liquidated in this step (it stays flat afterwards)."""
    asset_pnl: np.ndarray
    """(T, N) each asset's share of the step's equity change: realized and unrealized price PnL
    plus its funding, minus its fees and slippage. Rows sum to ``diff(equity)`` except on a
    liquidation bar, where the difference is the liquidation's own loss and fee."""

    def __post_init__(self) -> None:
        t, n = len(self.close_times), len(self.symbols)
        shapes = {
            "equity": (t + 1,),
            "weights": (t, n),
            "fees": (t,),
            "slippage": (t,),
            "funding": (t,),
            "turnover": (t,),
            "liquidated": (t,),
            "asset_pnl": (t, n),
        }
        for field, shape in shapes.items():
            if np.shape(getattr(self, field)) != shape:
                raise ValueError(
                    f"ledger {self.name!r}: {field} has shape {np.shape(getattr(self, field))}, "
                    f"expected {shape}"
                )

    @property
    def n_bars(self) -> int:
        """Number of simulated bars T."""
        return len(self.close_times)

    @property
    def returns(self) -> np.ndarray:
        """(T,) simple return of each bar: ``equity[k + 1] / equity[k] - 1``."""
        return np.diff(self.equity) / self.equity[:-1]

    @property
    def gross(self) -> np.ndarray:
        """(T,) gross exposure: sum of |weights| at each bar close."""
        return np.abs(self.weights).sum(axis=1)

    @property
    def net(self) -> np.ndarray:
        """(T,) net exposure: sum of signed weights at each bar close."""
        return self.weights.sum(axis=1)

    def equity_series(self) -> pd.Series:
        """Equity indexed by the time it is known, ``start_time`` first (UTC, tz-naive)."""
        start = np.asarray([self.start_time], dtype="datetime64[ns]")
        index = pd.DatetimeIndex(np.concatenate([start, self.close_times.astype("datetime64[ns]")]))
        return pd.Series(self.equity, index=index, name=self.name)

    def bar_frame(self) -> pd.DataFrame:
        """One row per bar: ``strategy``, ``ts`` (bar close) and ``LEDGER_COLUMNS``."""
        frame = pd.DataFrame(
            {
                "strategy": self.name,
                "ts": pd.DatetimeIndex(self.close_times),
                "equity": self.equity[1:],
                "fees": self.fees,
                "slippage": self.slippage,
                "funding": self.funding,
                "turnover": self.turnover,
                "gross": self.gross,
                "net": self.net,
                "liquidated": np.asarray(self.liquidated, dtype=bool),
            }
        )
        return frame

    def asset_frame(self) -> pd.DataFrame:
        """One row per bar and symbol: ``strategy``, ``ts``, ``symbol``, ``weight``, ``pnl``."""
        t, n = self.weights.shape
        return pd.DataFrame(
            {
                "strategy": self.name,
                "ts": np.repeat(pd.DatetimeIndex(self.close_times), n),
                "symbol": np.tile(np.asarray(self.symbols, dtype=object), t),
                "weight": self.weights.reshape(-1),
                "pnl": self.asset_pnl.reshape(-1),
            }
        )
