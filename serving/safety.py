"""The hard-coded safety layer between any policy and the orders that reach an execution adapter.

It is deliberately independent of training and its configuration (numpy and the standard
library only): the limits are constants here, and a ``SafetyLimits`` can only tighten them, so
neither a mis-configured run nor a broken model can loosen them. ``check`` turns a policy's
proposed target weights into ``Order`` s that breach no limit, whatever its inputs, and records
every intervention with a reason code. The rules, the states and their transitions are in
``docs/safety.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import Any

import numpy as np

from serving.account import AccountState, MarketRules, Order

MAX_ABS_WEIGHT = 2.0
"""Largest leverage allowed on any single asset (|notional| / equity)."""
MAX_GROSS_LEVERAGE = 3.0
"""Largest sum of absolute weights allowed across the portfolio."""
MAX_MODEL_OUTPUT = 10.0
"""A proposed |weight| above this is not clipped but rejected: the model is broken."""
MIN_MARGIN_BUFFER = 0.5
"""Orders that add risk must leave equity >= (1 + buffer) x the estimated maintenance margin."""
MAINTENANCE_MARGIN_RATE = 0.02
"""The layer's own maintenance estimate per unit of notional (the alt tiers' rate up to 100,000
of notional); a larger per-asset rate given with the market is used instead."""
ESTIMATED_COST_RATE = 0.002
"""Fees and slippage assumed per unit of traded notional when estimating equity after orders."""
MAX_ORDER_NOTIONAL = 100_000.0
"""Largest single order, in quote currency; larger trades are split into several orders."""
MAX_ORDERS_PER_SYMBOL = 10
"""Most orders one symbol gets in one decision; what does not fit is cut."""
MAX_TURNOVER = 2.0
"""Largest sum |order notional| / equity of one bar while ACTIVE."""
MAX_STALE_BARS = 2.0
"""Data whose latest bar closed more than this many bar lengths before now is stale."""
MAX_ABS_BASIS = 0.03
"""|perp / spot - 1| beyond this on any asset starts an unwind."""
MAX_BAR_MOVE = 0.15
"""|price / previous close - 1| (close, or the bar's high / low when given) beyond this on any
asset starts an unwind."""
MAX_ABS_FUNDING_RATE = 0.005
"""|funding rate| per funding interval beyond this on any asset starts an unwind."""
UNWIND_BARS = 4
"""Bars over which an unwind (TWAP) takes every position to zero."""
MAX_DRAWDOWN = 0.30
"""Equity below its peak by this fraction trips the kill switch: flatten and halt."""

_EPS = 1e-9
"""Float noise forgiven: quantities within 1e-9 lots (plus 1e-12 relative) under a whole lot
round up to it, and a position closed to within 1e-9 of itself counts as closed (the final
exact check trims what that lets over a limit)."""


class Reason(StrEnum):
    """Reason codes of interventions."""

    MODEL_OUTPUT_SHAPE = "MODEL_OUTPUT_SHAPE"
    MODEL_OUTPUT_NON_FINITE = "MODEL_OUTPUT_NON_FINITE"
    MODEL_OUTPUT_OUT_OF_RANGE = "MODEL_OUTPUT_OUT_OF_RANGE"
    ASSET_CAP = "ASSET_CAP"
    GROSS_CAP = "GROSS_CAP"
    MARGIN_FLOOR = "MARGIN_FLOOR"
    TURNOVER_CAP = "TURNOVER_CAP"
    ORDER_SPLIT = "ORDER_SPLIT"
    ORDER_NOTIONAL_CAP = "ORDER_NOTIONAL_CAP"
    MIN_NOTIONAL = "MIN_NOTIONAL"
    INVALID_ACCOUNT = "INVALID_ACCOUNT"
    INVALID_MARKET = "INVALID_MARKET"
    INVALID_RULES = "INVALID_RULES"
    INVALID_PRICE = "INVALID_PRICE"
    STALE_DATA = "STALE_DATA"
    NON_FINITE_FEATURES = "NON_FINITE_FEATURES"
    BAR_MOVE_EXTREME = "BAR_MOVE_EXTREME"
    BASIS_EXTREME = "BASIS_EXTREME"
    FUNDING_EXTREME = "FUNDING_EXTREME"
    UNWIND = "UNWIND"
    RESUMED = "RESUMED"
    DRAWDOWN_KILL = "DRAWDOWN_KILL"
    HALTED = "HALTED"
    ROUNDING_TRIM = "ROUNDING_TRIM"
    SAFETY_NET = "SAFETY_NET"


ACTIVE = "ACTIVE"
REDUCING = "REDUCING"
HALTED = "HALTED"
TRADING_STATES = (ACTIVE, REDUCING, HALTED)
"""ACTIVE trades the policy; REDUCING unwinds every position (TWAP, reduce-only); HALTED
flattens and then holds until a person calls ``reset_halt`` (nautilus_trader's TradingState)."""


@dataclass(frozen=True)
class SafeWeights:
    """Clamped target weights and what the clamp changed."""

    weights: np.ndarray
    """Target weights within the per-asset and gross caps."""
    interventions: tuple[str, ...]
    """One message per clamp."""


def enforce_limits(raw_weights: np.ndarray, symbols: tuple[str, ...]) -> SafeWeights:
    """Clamp per-asset and gross leverage; a non-finite weight flattens the whole book."""
    raw = np.asarray(raw_weights, dtype=float)
    if raw.shape != (len(symbols),):
        raise ValueError(f"expected {len(symbols)} weights for {symbols}, got shape {raw.shape}")
    notes: list[str] = []
    bad = [s for s, w in zip(symbols, raw, strict=True) if not np.isfinite(w)]
    if bad:
        return SafeWeights(np.zeros_like(raw), (f"non-finite weight for {bad}: flattened",))
    weights = np.clip(raw, -MAX_ABS_WEIGHT, MAX_ABS_WEIGHT)
    for symbol, before, after in zip(symbols, raw, weights, strict=True):
        if before != after:
            notes.append(f"{symbol} weight {before:+.3f} clamped to {after:+.3f}")
    gross = float(np.abs(weights).sum())
    if gross > MAX_GROSS_LEVERAGE:
        weights = weights * (MAX_GROSS_LEVERAGE / gross)
        notes.append(f"gross leverage {gross:.3f} scaled to {MAX_GROSS_LEVERAGE:.1f}")
    return SafeWeights(weights, tuple(notes))


@dataclass(frozen=True)
class SafetyLimits:
    """The limits in force; each defaults to its constant and may only be tighter."""

    max_abs_weight: float = MAX_ABS_WEIGHT
    """Per-asset |weight| cap (at most ``MAX_ABS_WEIGHT``)."""
    max_gross_leverage: float = MAX_GROSS_LEVERAGE
    """Gross leverage cap (at most ``MAX_GROSS_LEVERAGE``)."""
    max_model_output: float = MAX_MODEL_OUTPUT
    """|proposed weight| above which the output is rejected (at most ``MAX_MODEL_OUTPUT``;
    the cycle may set the policy's own bound L)."""
    margin_buffer: float = MIN_MARGIN_BUFFER
    """Margin buffer over maintenance (at least ``MIN_MARGIN_BUFFER``)."""
    maintenance_rate: float = MAINTENANCE_MARGIN_RATE
    """Maintenance estimate per notional (at least ``MAINTENANCE_MARGIN_RATE``)."""
    cost_rate: float = ESTIMATED_COST_RATE
    """Cost assumed per traded notional (at least ``ESTIMATED_COST_RATE``)."""
    max_order_notional: float = MAX_ORDER_NOTIONAL
    """Largest single order in quote (at most ``MAX_ORDER_NOTIONAL``)."""
    max_orders_per_symbol: int = MAX_ORDERS_PER_SYMBOL
    """Most orders per symbol and decision (at most ``MAX_ORDERS_PER_SYMBOL``)."""
    max_turnover: float = MAX_TURNOVER
    """Turnover cap per bar while ACTIVE (at most ``MAX_TURNOVER``)."""
    max_stale_bars: float = MAX_STALE_BARS
    """Staleness threshold in bar lengths (at most ``MAX_STALE_BARS``)."""
    max_abs_basis: float = MAX_ABS_BASIS
    """|basis| that starts an unwind (at most ``MAX_ABS_BASIS``)."""
    max_bar_move: float = MAX_BAR_MOVE
    """Bar move that starts an unwind (at most ``MAX_BAR_MOVE``)."""
    max_abs_funding_rate: float = MAX_ABS_FUNDING_RATE
    """|funding rate| that starts an unwind (at most ``MAX_ABS_FUNDING_RATE``)."""
    unwind_bars: int = UNWIND_BARS
    """Length of an unwind in bars (at most ``UNWIND_BARS``: fewer unwinds faster)."""
    max_drawdown: float = MAX_DRAWDOWN
    """Drawdown from peak that halts (at most ``MAX_DRAWDOWN``)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"SafetyLimits.{f.name}: {value!r} is not a number")
            if not math.isfinite(value):
                raise ValueError(f"SafetyLimits.{f.name}: {value!r} is not finite")
            ceiling = _CEILINGS.get(f.name)
            if ceiling is not None and not 0 < value <= ceiling:
                raise ValueError(
                    f"SafetyLimits.{f.name}: {value!r} is looser than the hard limit "
                    f"{ceiling!r} (or not positive); configuration can only tighten"
                )
            floor = _FLOORS.get(f.name)
            if floor is not None and not value >= floor:
                raise ValueError(
                    f"SafetyLimits.{f.name}: {value!r} is looser than the hard floor "
                    f"{floor!r}; configuration can only tighten"
                )
        for name in ("max_orders_per_symbol", "unwind_bars"):
            if int(getattr(self, name)) != getattr(self, name):
                raise ValueError(f"SafetyLimits.{name}: {getattr(self, name)!r} is not whole")


_CEILINGS: dict[str, float] = {
    "max_abs_weight": MAX_ABS_WEIGHT,
    "max_gross_leverage": MAX_GROSS_LEVERAGE,
    "max_model_output": MAX_MODEL_OUTPUT,
    "max_order_notional": MAX_ORDER_NOTIONAL,
    "max_orders_per_symbol": MAX_ORDERS_PER_SYMBOL,
    "max_turnover": MAX_TURNOVER,
    "max_stale_bars": MAX_STALE_BARS,
    "max_abs_basis": MAX_ABS_BASIS,
    "max_bar_move": MAX_BAR_MOVE,
    "max_abs_funding_rate": MAX_ABS_FUNDING_RATE,
    "unwind_bars": UNWIND_BARS,
    "max_drawdown": MAX_DRAWDOWN,
}
"""Limits a configuration may lower but not raise."""
_FLOORS: dict[str, float] = {
    "margin_buffer": MIN_MARGIN_BUFFER,
    "maintenance_rate": MAINTENANCE_MARGIN_RATE,
    "cost_rate": ESTIMATED_COST_RATE,
}
"""Limits a configuration may raise but not lower."""


@dataclass(frozen=True)
class MarketSnapshot:
    """What the layer knows of the market at decision time; arrays are (N,) in symbol order."""

    symbols: tuple[str, ...]
    """The assets, in the policy's order."""
    close: np.ndarray
    """Close of the decision bar: the reference price orders are sized and valued at."""
    prev_close: np.ndarray
    """Close of the bar before."""
    basis: np.ndarray
    """Perp / spot - 1 at the decision bar's close."""
    bar_close_ts: np.datetime64
    """Close time of the latest bar in the data."""
    bar_length: np.timedelta64
    """Length of one bar."""
    now: np.datetime64
    """Wall-clock time of the decision."""
    features_finite: bool = True
    """Whether every feature of the observation was finite."""
    high: np.ndarray | None = None
    """High of the decision bar (a wick counts as a move), if known."""
    low: np.ndarray | None = None
    """Low of the decision bar, if known."""
    funding_rate: np.ndarray | None = None
    """Latest funding rate per funding interval, if known."""
    maintenance_rate: np.ndarray | None = None
    """The exchange's maintenance rate per asset, if known (the layer uses the larger of it and
    its own)."""


@dataclass(frozen=True)
class SafetyState:
    """What the layer carries from one bar to the next (stored by the cycle between bars)."""

    state: str = ACTIVE
    """ACTIVE, REDUCING or HALTED."""
    peak_equity: float = 0.0
    """Highest equity seen since the start or the last reset (0 = none yet)."""
    unwind_bars_remaining: int = 0
    """Bars left in the current unwind, this one included (REDUCING only)."""
    reason: str = ""
    """Why the layer is REDUCING or HALTED."""
    since: str = ""
    """Decision bar at which the current state was entered."""
    last_decision_ts: str = ""
    """Decision bar of the last check."""
    reset_by: str = ""
    """Who last reset a halt."""

    def __post_init__(self) -> None:
        if self.state not in TRADING_STATES:
            raise ValueError(f"SafetyState.state: {self.state!r} not in {TRADING_STATES}")
        if not (math.isfinite(self.peak_equity) and self.peak_equity >= 0):
            raise ValueError(f"SafetyState.peak_equity: {self.peak_equity!r} must be >= 0")
        if self.unwind_bars_remaining < 0:
            raise ValueError(
                f"SafetyState.unwind_bars_remaining: {self.unwind_bars_remaining!r} is negative"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SafetyState:
        """The inverse of ``to_dict``; unknown keys are an error."""
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"SafetyState.from_dict: unknown fields {sorted(unknown)}")
        return cls(
            state=str(data.get("state", ACTIVE)),
            peak_equity=float(data.get("peak_equity", 0.0)),
            unwind_bars_remaining=int(data.get("unwind_bars_remaining", 0)),
            reason=str(data.get("reason", "")),
            since=str(data.get("since", "")),
            last_decision_ts=str(data.get("last_decision_ts", "")),
            reset_by=str(data.get("reset_by", "")),
        )


def reset_halt(state: SafetyState, operator: str) -> SafetyState:
    """A person's explicit reset of a halt: ACTIVE again, the peak re-measured from the next bar."""
    if state.state != HALTED:
        raise ValueError(f"reset_halt: the layer is {state.state}, not HALTED")
    if not operator.strip():
        raise ValueError("reset_halt: name the person who resets the halt")
    return SafetyState(ACTIVE, 0.0, 0, "", "", state.last_decision_ts, operator.strip())


@dataclass(frozen=True)
class Intervention:
    """One thing the layer changed or refused, and why."""

    code: Reason
    """Reason code."""
    symbol: str
    """The asset concerned ("" when portfolio-wide)."""
    message: str
    """Human-readable account naming the figures."""

    def to_dict(self) -> dict[str, str]:
        """Plain strings (for the ledger and the Dagster metadata)."""
        return {"code": str(self.code), "symbol": self.symbol, "message": self.message}


@dataclass(frozen=True)
class SafetyDecision:
    """What ``check`` lets through for one decision bar."""

    orders: tuple[Order, ...]
    """Orders that breach no limit."""
    state: SafetyState
    """The state to carry to the next bar."""
    target_weights: np.ndarray
    """Weights the book will have if every order fills at its reference price (the current
    weights where nothing trades; zeros where the equity is unknown)."""
    interventions: tuple[Intervention, ...]
    """Everything clipped, cut, refused or triggered, each with its reason."""
    equity: float
    """Equity the orders were sized on (NaN when it could not be valued)."""


OrderIdFactory = Callable[[str, int], str]
"""``make_order_id(symbol, leg)`` -> a deterministic client order id for the ``leg``-th order
(0, 1, ...) of ``symbol`` in this decision (the cycle binds the account and decision bar)."""


def check(
    proposed_weights: Any,
    account: AccountState,
    market: MarketSnapshot,
    rules: MarketRules,
    limits: SafetyLimits,
    state: SafetyState,
    decision_ts: np.datetime64,
    make_order_id: OrderIdFactory,
) -> SafetyDecision:
    """Safe orders for one decision bar from a policy's proposed target weights."""
    with np.errstate(all="ignore"):  # inf and NaN inputs are handled, not warned about
        return _Check(account, market, rules, limits, state, decision_ts, make_order_id).run(
            proposed_weights
        )


def _f(x: float) -> str:
    """A figure for a message."""
    return f"{x:,.6g}"


def _array(value: Any, n: int) -> np.ndarray | None:
    """``value`` as a float (n,) array, or None when it is not one."""
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return None
    return arr if arr.shape == (n,) else None


class _Check:
    """One call of ``check``: the inputs, the interventions so far, the orders."""

    def __init__(
        self,
        account: AccountState,
        market: MarketSnapshot,
        rules: MarketRules,
        limits: SafetyLimits,
        state: SafetyState,
        decision_ts: np.datetime64,
        make_order_id: OrderIdFactory,
    ) -> None:
        self.account, self.market, self.rules, self.limits = account, market, rules, limits
        self.prior = state
        self.decision_ts = decision_ts
        self.ts = str(decision_ts)
        self.make_order_id = make_order_id
        self.notes: list[Intervention] = []
        self.symbols: tuple[str, ...] = tuple(getattr(account, "symbols", ()))
        self.n = len(self.symbols)

    def note(self, code: Reason, message: str, symbol: str = "") -> None:
        """Record an intervention."""
        self.notes.append(Intervention(code, symbol, message))

    # ---- inputs -------------------------------------------------------------------------

    def load(self) -> bool:
        """Validate the account, market and rules; False when nothing can be traded at all."""
        n, acc, mkt, rules = self.n, self.account, self.market, self.rules
        qty, cash = _array(getattr(acc, "qty", None), n), getattr(acc, "cash", None)
        entry = _array(getattr(acc, "entry_price", None), n)
        mark = _array(getattr(acc, "mark", None), n)
        if n == 0 or qty is None or entry is None or mark is None or not np.isfinite(qty).all():
            self.note(Reason.INVALID_ACCOUNT, f"account arrays are not {n} finite quantities")
            return False
        try:
            cash_f = float(cash)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            cash_f = math.nan
        if tuple(getattr(mkt, "symbols", ())) != self.symbols:
            self.note(
                Reason.INVALID_MARKET,
                f"market symbols {getattr(mkt, 'symbols', None)} differ from {self.symbols}",
            )
            return False
        if tuple(getattr(rules, "symbols", ())) != self.symbols:
            self.note(
                Reason.INVALID_RULES,
                f"rule symbols {getattr(rules, 'symbols', None)} differ from {self.symbols}",
            )
            return False
        close, prev, basis = (_array(getattr(mkt, k), n) for k in ("close", "prev_close", "basis"))
        lot, min_notional = _array(rules.lot_size, n), _array(rules.min_notional, n)
        if close is None or prev is None or basis is None:
            self.note(Reason.INVALID_MARKET, f"close, prev_close and basis must be ({n},) arrays")
            return False
        if lot is None or min_notional is None:
            self.note(Reason.INVALID_RULES, f"lot_size and min_notional must be ({n},) arrays")
            return False
        self.qty, self.close, self.prev, self.basis = qty, close, prev, basis
        self.lot, self.min_notional = lot, min_notional
        self.price_ok = np.isfinite(close) & (close > 0)
        rules_ok = np.isfinite(lot) & (lot > 0) & np.isfinite(min_notional) & (min_notional >= 0)
        for i, s in enumerate(self.symbols):
            if not self.price_ok[i]:
                self.note(Reason.INVALID_PRICE, f"{s} close {close[i]!r}: no order", s)
            if not rules_ok[i]:
                self.note(
                    Reason.INVALID_RULES,
                    f"{s} lot {lot[i]!r}, min notional {min_notional[i]!r}: no order",
                    s,
                )
        self.tradeable = self.price_ok & rules_ok
        with np.errstate(all="ignore"):
            held = qty != 0
            pnl_close = np.where(held, qty * (close - entry), 0.0)
            pnl_mark = np.where(held, qty * (mark - entry), 0.0)
            equity = min(cash_f + float(pnl_close.sum()), cash_f + float(pnl_mark.sum()))
        self.equity = equity if math.isfinite(equity) else math.nan
        if math.isnan(self.equity):
            self.note(Reason.INVALID_ACCOUNT, "equity cannot be valued (non-finite cash or price)")
        rate = np.full(n, self.limits.maintenance_rate)
        given = _array(mkt.maintenance_rate, n) if mkt.maintenance_rate is not None else None
        if given is not None:
            rate = np.maximum(rate, np.where(np.isfinite(given), given, 0.0))
        self.mm_rate = rate
        return True

    def data_problems(self) -> list[tuple[Reason, str, str]]:
        """Why the data allows no new risk (stale, non-finite): (code, symbol, message)."""
        mkt, out = self.market, []
        try:
            with np.errstate(all="ignore"):
                age = np.datetime64(mkt.now) - np.datetime64(mkt.bar_close_ts)
                age_f = float(age / np.timedelta64(mkt.bar_length))
        except (TypeError, ValueError, OverflowError, ZeroDivisionError):
            age_f = math.nan
        if not (math.isfinite(age_f) and 0 <= age_f <= self.limits.max_stale_bars):
            out.append(
                (
                    Reason.STALE_DATA,
                    "",
                    f"latest bar closed {mkt.bar_close_ts} is {_f(age_f)} bar lengths "
                    f"({mkt.bar_length}) before now {mkt.now}; limit "
                    f"{_f(self.limits.max_stale_bars)}: no new risk",
                )
            )
        try:
            same_bar = bool(np.datetime64(self.decision_ts) == np.datetime64(mkt.bar_close_ts))
        except (TypeError, ValueError, OverflowError):
            same_bar = False
        if not same_bar:
            out.append(
                (
                    Reason.STALE_DATA,
                    "",
                    f"decision bar {self.decision_ts} is not the latest bar {mkt.bar_close_ts}: "
                    "no new risk",
                )
            )
        finite = mkt.features_finite
        if not (isinstance(finite, bool | np.bool_) and finite):
            out.append((Reason.NON_FINITE_FEATURES, "", "a feature is not finite: no new risk"))
        for i, s in enumerate(self.symbols):
            values = (self.close[i], self.prev[i], self.basis[i])
            if not (np.isfinite(values).all() and self.prev[i] > 0 and self.close[i] > 0):
                out.append(
                    (
                        Reason.INVALID_MARKET,
                        s,
                        f"{s} close {values[0]!r}, previous close {values[1]!r}, basis "
                        f"{values[2]!r}: no new risk",
                    )
                )
        return out

    def extremes(self) -> list[tuple[Reason, str, str]]:
        """Price, basis and funding extremes on this bar: (code, symbol, message)."""
        n, mkt, lim, out = self.n, self.market, self.limits, []
        prices = [("close", self.close)]
        for name in ("high", "low"):
            arr = _array(getattr(mkt, name), n) if getattr(mkt, name) is not None else None
            if arr is not None:
                prices.append((name, arr))
        funding = _array(mkt.funding_rate, n) if mkt.funding_rate is not None else None
        with np.errstate(all="ignore"):
            for i, s in enumerate(self.symbols):
                if not (math.isfinite(self.prev[i]) and self.prev[i] > 0):
                    continue
                for name, arr in prices:
                    move = arr[i] / self.prev[i] - 1.0
                    if math.isfinite(move) and abs(move) > lim.max_bar_move:
                        out.append(
                            (
                                Reason.BAR_MOVE_EXTREME,
                                s,
                                f"{s} {name} {_f(arr[i])} is {move:+.2%} from the previous close "
                                f"{_f(self.prev[i])}; limit {lim.max_bar_move:.2%}",
                            )
                        )
                        break
                if math.isfinite(self.basis[i]) and abs(self.basis[i]) > lim.max_abs_basis:
                    out.append(
                        (
                            Reason.BASIS_EXTREME,
                            s,
                            f"{s} basis {self.basis[i]:+.3%}; limit {lim.max_abs_basis:.3%}",
                        )
                    )
                rate = math.nan if funding is None else float(funding[i])
                if math.isfinite(rate) and abs(rate) > lim.max_abs_funding_rate:
                    out.append(
                        (
                            Reason.FUNDING_EXTREME,
                            s,
                            f"{s} funding rate {rate:+.4%}; limit {lim.max_abs_funding_rate:.4%}",
                        )
                    )
        return out

    # ---- orders -------------------------------------------------------------------------

    def legs(self, i: int, delta: float, reduce_only: bool, max_orders: int) -> list[float]:
        """``delta`` of symbol i as order quantities: rounded toward zero to the lot, split at
        the max order notional, at most ``max_orders``, none under the min notional."""
        s, lot, price = self.symbols[i], float(self.lot[i]), float(self.close[i])
        lim = self.limits
        if not math.isfinite(delta) or delta == 0 or max_orders <= 0:
            return []
        closes = reduce_only and abs(delta) >= abs(self.qty[i]) * (1 - _EPS)
        unit = lot * price
        lots_per_order = lim.max_order_notional / unit if unit > 0 else math.inf
        if not (math.isfinite(lots_per_order) and lots_per_order < 1e12):
            self.note(
                Reason.INVALID_RULES,
                f"{s} lot {lot!r} at {_f(price)} gives {lots_per_order!r} lots per order: no order",
                s,
            )
            return []
        chunk = math.floor(lots_per_order)
        while chunk > 0 and abs(chunk * lot) * price > lim.max_order_notional:
            chunk -= 1
        with np.errstate(all="ignore"):
            wanted = min(
                abs(delta) / lot * (1 + 1e-12) + _EPS, float(max_orders * max(chunk, 1) + 1)
            )
        total = math.floor(wanted)
        if total == 0:
            return []
        if chunk <= 0:
            self.note(
                Reason.ORDER_NOTIONAL_CAP,
                f"{s} one lot {_f(lot)} at {_f(price)} exceeds the max order notional "
                f"{_f(lim.max_order_notional)}: no order",
                s,
            )
            return []
        n_legs = -(-total // chunk)
        if n_legs > max_orders:
            self.note(
                Reason.ORDER_NOTIONAL_CAP,
                f"{s} {_f(total * lot)} needs {n_legs} orders of at most "
                f"{_f(lim.max_order_notional)}; cut to {max_orders}",
                s,
            )
            n_legs, total = max_orders, max_orders * chunk
        sizes = [total // n_legs + (1 if j < total % n_legs else 0) for j in range(n_legs)]
        sign = 1.0 if delta > 0 else -1.0
        qtys = [sign * k * lot for k in sizes]
        if closes and total * lot >= abs(self.qty[i]) * (1 - _EPS):
            last = -self.qty[i] - sum(qtys[:-1])
            if abs(last) * price <= lim.max_order_notional and last * sign > 0:
                qtys[-1] = last
        kept = [q for q in qtys if abs(q) * price >= self.min_notional[i]]
        if len(kept) < len(qtys):
            self.note(
                Reason.MIN_NOTIONAL,
                f"{s} order of {_f(sum(qtys) - sum(kept))} at {_f(price)} is under the min "
                f"notional {_f(self.min_notional[i])}: dropped",
                s,
            )
        if len(kept) > 1:
            self.note(
                Reason.ORDER_SPLIT,
                f"{s} {_f(sum(kept))} split into {len(kept)} orders of at most "
                f"{_f(lim.max_order_notional)}",
                s,
            )
        return kept

    def reduce_all(self, fraction_of: Callable[[int], float], why: str) -> dict[int, list[float]]:
        """Reduce-only orders taking each position toward zero by ``fraction_of(i)``."""
        out: dict[int, list[float]] = {}
        for i in range(self.n):
            if self.qty[i] == 0:
                continue
            if not self.tradeable[i]:
                self.note(
                    Reason.INVALID_PRICE,
                    f"{self.symbols[i]} {_f(self.qty[i])} cannot be reduced ({why}): "
                    "no valid price or rules",
                    self.symbols[i],
                )
                continue
            legs = self.legs(
                i, -self.qty[i] * fraction_of(i), True, self.limits.max_orders_per_symbol
            )
            if legs:
                out[i] = legs
        return out

    # ---- the decision -------------------------------------------------------------------

    def run(self, proposed: Any) -> SafetyDecision:
        """Validate, update the state, then flatten, unwind or trade the policy."""
        prior = self.prior
        if not self.load():
            kept = SafetyState(**{**prior.to_dict(), "last_decision_ts": self.ts})
            return SafetyDecision((), kept, np.zeros(self.n), tuple(self.notes), math.nan)
        equity, state = self.equity, prior
        peak = prior.peak_equity
        if not math.isnan(equity) and state.state != HALTED:
            peak = max(peak, equity)
            drawdown = 1.0 - equity / peak if peak > 0 else 1.0
            if equity <= 0 or drawdown >= self.limits.max_drawdown:
                why = (
                    f"equity {_f(equity)} is {drawdown:.2%} below its peak {_f(peak)}; "
                    f"limit {self.limits.max_drawdown:.2%}: flatten and halt"
                )
                self.note(Reason.DRAWDOWN_KILL, why)
                state = SafetyState(HALTED, peak, 0, why, self.ts, self.ts, prior.reset_by)
        if state.state == HALTED:
            if state is prior:
                self.note(Reason.HALTED, f"halted since {prior.since}: {prior.reason}")
            legs = self.reduce_all(lambda i: 1.0, "halted")
            new = SafetyState(**{**state.to_dict(), "last_decision_ts": self.ts})
            return self.decide(legs, new)
        extremes = self.extremes()
        problems = self.data_problems()
        if state.state == ACTIVE and extremes:
            for code, sym, msg in extremes:
                self.note(code, f"{msg}: unwind over {self.limits.unwind_bars} bars", sym)
            reason = "; ".join(msg for _, _, msg in extremes)
            state = SafetyState(
                REDUCING, peak, self.limits.unwind_bars, reason, self.ts, self.ts, prior.reset_by
            )
        elif state.state == REDUCING:
            for code, sym, msg in extremes:
                self.note(code, f"{msg}: still reducing", sym)
            if state.unwind_bars_remaining == 0 and not extremes and not problems:
                self.note(Reason.RESUMED, f"unwind since {state.since} complete: ACTIVE again")
                state = SafetyState(ACTIVE, peak, 0, "", self.ts, self.ts, prior.reset_by)
            elif state.unwind_bars_remaining == 0:
                for code, sym, msg in problems:
                    self.note(code, f"{msg}: still reducing", sym)
        if state.state == REDUCING:
            remaining = state.unwind_bars_remaining
            self.note(
                Reason.UNWIND,
                f"unwind bar with {remaining} left (since {state.since}): positions reduced by "
                f"1/{max(remaining, 1)}",
            )
            legs = self.reduce_all(lambda i: 1.0 / max(remaining, 1), "unwind")
            new = SafetyState(
                REDUCING,
                peak,
                max(remaining - 1, 0),
                state.reason,
                state.since,
                self.ts,
                prior.reset_by,
            )
            return self.decide(legs, new)
        new = SafetyState(ACTIVE, peak, 0, "", state.since, self.ts, prior.reset_by)
        for code, sym, msg in problems:
            self.note(code, msg, sym)
        return self.decide(self.active(proposed, no_new_risk=bool(problems)), new)

    def model_weights(self, proposed: Any) -> np.ndarray | None:
        """The proposal as (N,) weights within the caps, or None (rejected: hold)."""
        lim, n = self.limits, self.n
        try:
            raw = np.asarray(proposed, dtype=float)
        except (TypeError, ValueError, OverflowError):
            self.note(Reason.MODEL_OUTPUT_SHAPE, f"model output {proposed!r:.60} is not numeric")
            return None
        if raw.shape != (n,):
            self.note(
                Reason.MODEL_OUTPUT_SHAPE,
                f"model output has shape {raw.shape}, expected ({n},) for {self.symbols}: hold",
            )
            return None
        bad = [s for s, w in zip(self.symbols, raw, strict=True) if not math.isfinite(w)]
        if bad:
            self.note(Reason.MODEL_OUTPUT_NON_FINITE, f"model weight not finite for {bad}: hold")
            return None
        out = [
            f"{s} {w:+.4g}"
            for s, w in zip(self.symbols, raw, strict=True)
            if abs(w) > lim.max_model_output
        ]
        if out:
            self.note(
                Reason.MODEL_OUTPUT_OUT_OF_RANGE,
                f"model weights {', '.join(out)} beyond +-{_f(lim.max_model_output)}: hold",
            )
            return None
        cap = lim.max_abs_weight
        w = np.clip(raw, -cap, cap)
        for i, s in enumerate(self.symbols):
            if abs(raw[i]) > cap:
                self.note(
                    Reason.ASSET_CAP,
                    f"{s} weight {raw[i]:+.4f} clipped to {w[i]:+.4f} (cap "
                    f"{_f(lim.max_abs_weight)})",
                    s,
                )
        gross, gross_cap = float(np.abs(w).sum()), lim.max_gross_leverage
        if gross > gross_cap:
            w = w * (gross_cap / gross)
            self.note(
                Reason.GROSS_CAP,
                f"gross leverage {gross:.4f} scaled to {_f(lim.max_gross_leverage)}",
            )
        margin = (1 + lim.margin_buffer) * float((self.mm_rate * np.abs(w)).sum())
        if margin > 1:
            scale = 1 / margin
            w = w * scale
            self.note(
                Reason.MARGIN_FLOOR,
                f"maintenance {margin / (1 + lim.margin_buffer):.4f} x equity with buffer "
                f"{_f(lim.margin_buffer)} exceeds equity: weights scaled by {scale:.4f}",
            )
        return w

    def active(self, proposed: Any, no_new_risk: bool) -> dict[int, list[float]]:
        """Orders toward the policy's safe targets: reductions first, then increases that fit
        the turnover, gross and margin budgets of the book the reductions leave."""
        equity, lim = self.equity, self.limits
        if math.isnan(equity):
            self.note(Reason.INVALID_ACCOUNT, "equity unknown while ACTIVE: no orders")
            return {}
        w = self.model_weights(proposed)
        if w is None:
            return {}
        q0, price, n = self.qty, self.close, self.n
        with np.errstate(all="ignore"):
            target = np.where(self.tradeable, w * equity / np.where(self.price_ok, price, 1.0), q0)
        target = np.where(np.isfinite(target), target, q0)
        same = np.sign(target) == np.sign(q0)
        toward = np.where(same & (np.abs(target) < np.abs(q0)), target, 0.0)
        reduce = np.where((q0 != 0) & ~(same & (np.abs(target) >= np.abs(q0))), toward - q0, 0.0)
        reduce = np.where(self.tradeable, reduce, 0.0)
        budget = lim.max_turnover * equity
        px = np.where(self.price_ok, price, 0.0)
        wanted = float((np.abs(reduce) * px).sum())
        if wanted > budget:
            scale = max(budget, 0.0) / wanted
            reduce = reduce * scale
            self.note(
                Reason.TURNOVER_CAP,
                f"reductions of {_f(wanted)} exceed the turnover budget {_f(budget)} "
                f"({_f(lim.max_turnover)} x equity {_f(equity)}): scaled by {scale:.4f}",
            )
        legs: dict[int, list[float]] = {}
        for i in range(n):
            if reduce[i] != 0:
                got = self.legs(i, float(reduce[i]), True, lim.max_orders_per_symbol)
                if got:
                    legs[i] = got
        after = q0 + np.array([sum(legs.get(i, [])) for i in range(n)])
        used = sum(abs(q) * price[i] for i, qs in legs.items() for q in qs)
        grow = (
            self.tradeable
            & (target != 0)
            & ~((np.sign(target) == np.sign(after)) & (np.abs(target) <= np.abs(after)))
        )
        if not grow.any() or equity <= 0:
            return legs
        if no_new_risk:
            names = [s for s, g in zip(self.symbols, grow, strict=True) if g]
            self.note(Reason.STALE_DATA, f"increases refused for {names}: no new risk")
            return legs
        step = np.where(grow, np.abs(target - after) * px, 0.0)
        total_step = float(step.sum())
        gross_after = float((np.abs(after) * px).sum())
        mm_after = float((self.mm_rate * np.abs(after) * px).sum())
        buf = 1 + lim.margin_buffer
        limits = {
            Reason.TURNOVER_CAP: (budget - used) / total_step,
            Reason.GROSS_CAP: (lim.max_gross_leverage * equity - gross_after) / total_step,
            Reason.MARGIN_FLOOR: (equity - lim.cost_rate * used - buf * mm_after)
            / (lim.cost_rate * total_step + buf * float((self.mm_rate * step).sum())),
        }
        values = [v if not math.isnan(v) else 0.0 for v in limits.values()]
        beta = max(0.0, min(1.0, *values))
        for code, value in limits.items():
            if value < 1.0:
                self.note(
                    code,
                    f"increases of {_f(total_step)} cut to {max(value, 0.0):.2%} to stay within "
                    + {
                        Reason.TURNOVER_CAP: f"turnover {_f(lim.max_turnover)} x equity",
                        Reason.GROSS_CAP: f"gross leverage {_f(lim.max_gross_leverage)}",
                        Reason.MARGIN_FLOOR: f"the margin buffer {_f(lim.margin_buffer)} over "
                        f"maintenance {_f(mm_after)}",
                    }[code],
                )
        if beta <= 0:
            return legs
        for i in map(int, np.flatnonzero(grow)):
            room = lim.max_orders_per_symbol - len(legs.get(i, []))
            got = self.legs(i, float(beta * (target[i] - after[i])), False, room)
            if got:
                legs[i] = legs.get(i, []) + got
        return legs

    def decide(self, legs: dict[int, list[float]], new: SafetyState) -> SafetyDecision:
        """Orders from the legs, after the safety net; the post-trade weights."""
        legs = self.safety_net(legs, new)
        orders: list[Order] = []
        for i in sorted(legs):
            s = self.symbols[i]
            for j, q in enumerate(legs[i]):
                reduces = np.sign(q) == -np.sign(self.qty[i]) and _reduces(
                    self.qty[i], self.qty[i] + sum(legs[i][: j + 1])
                )
                orders.append(
                    Order(
                        self.make_order_id(s, j),
                        self.decision_ts,
                        s,
                        float(q),
                        float(self.close[i]),
                        bool(reduces),
                    )
                )
        post = self.qty + np.array([sum(legs.get(i, [])) for i in range(self.n)])
        with np.errstate(all="ignore"):
            weights = np.where(self.price_ok, post * self.close, 0.0) / self.equity
        weights = np.where(np.isfinite(weights), weights, 0.0)
        return SafetyDecision(tuple(orders), new, weights, tuple(self.notes), self.equity)

    def safety_net(self, legs: dict[int, list[float]], new: SafetyState) -> dict[int, list[float]]:
        """Re-check every limit, exactly, on the final legs. Targets sit on a binding limit, so
        float noise in the rounding can cross it by a hair: then every symbol's last order is
        trimmed by one lot; if a limit is still breached, every increase is dropped, and then
        every order."""
        breaches = _breaches(self, legs, new)
        if not breaches:
            return legs
        trimmed: dict[int, list[float]] = {}
        for i, qs in legs.items():
            lot, last = float(self.lot[i]), qs[-1]
            cut = last - math.copysign(lot, last)
            keep = abs(cut) >= lot / 2 and abs(cut) * self.close[i] >= self.min_notional[i]
            rest = qs[:-1] + ([cut] if keep else [])
            if rest:
                trimmed[i] = rest
        if not _breaches(self, trimmed, new):
            self.note(
                Reason.ROUNDING_TRIM,
                f"last orders trimmed by one lot: the rounding crossed {'; '.join(breaches)}",
            )
            return trimmed
        self.note(Reason.SAFETY_NET, f"increases dropped: {'; '.join(breaches)}")
        out: dict[int, list[float]] = {}
        for i, qs in legs.items():
            q0, ok = self.qty[i], list[float]()
            for q in qs:
                if np.sign(q) == -np.sign(q0) and _reduces(q0, q0 + sum(ok) + q):
                    ok.append(q)
            if ok:
                out[i] = ok
        still = _breaches(self, out, new)
        if still:
            self.note(Reason.SAFETY_NET, f"all orders dropped: {'; '.join(still)}")
            return {}
        return out


def _reduces(q0: float, q1: float) -> bool:
    """Whether going from position q0 to q1 only shrinks it (never past zero, up to float dust
    of 1e-9 x |q0|)."""
    return bool(
        q0 != 0
        and abs(q1) <= abs(q0)
        and (np.sign(q1) != -np.sign(q0) or abs(q1) <= _EPS * abs(q0))
    )


def _breaches(c: _Check, legs: dict[int, list[float]], new: SafetyState) -> list[str]:
    """Every limit the legs would breach (empty when none)."""
    lim, out = c.limits, []
    increases: list[int] = []
    traded = 0.0
    for i, qs in legs.items():
        s, q0, p = c.symbols[i], c.qty[i], c.close[i]
        if len(qs) > lim.max_orders_per_symbol:
            out.append(f"{s} has {len(qs)} orders")
        for q in qs:
            if not (math.isfinite(q) and abs(q) * p <= lim.max_order_notional):
                out.append(f"{s} order {q!r} exceeds the max order notional")
            traded += abs(q) * p
        if not _reduces(q0, q0 + sum(qs)):
            increases.append(i)
    if increases:
        if new.state != ACTIVE:
            out.append(f"an increase while {new.state}")
        post = c.qty.copy()
        for i, qs in legs.items():
            post[i] += sum(qs)
        notional = np.abs(post) * np.where(c.price_ok, c.close, 0.0)
        e = c.equity
        if not e > 0:
            out.append(f"an increase with equity {e!r}")
        else:
            for i in increases:
                if notional[i] > lim.max_abs_weight * e:
                    out.append(f"{c.symbols[i]} above the per-asset cap")
            if notional.sum() > lim.max_gross_leverage * e:
                out.append("gross above the cap")
            mm = float((c.mm_rate * notional).sum())
            if e - lim.cost_rate * traded < (1 + lim.margin_buffer) * mm:
                out.append("margin buffer breached")
    if new.state == ACTIVE and legs and not traded <= lim.max_turnover * c.equity:
        out.append(f"turnover {traded!r} above the cap")
    return out
