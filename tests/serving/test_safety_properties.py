"""Property tests of the safety layer: whatever the model output, the account and the market
(NaN, inf, huge, negative values, wrong shapes), no order that leaves ``check`` breaches a limit,
and every intervention names its reason. Each limit is recomputed here, independently of
``serving.safety``, from the rules in docs/safety.md."""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from serving.account import AccountState, MarketRules, Order
from serving.safety import (
    ACTIVE,
    HALTED,
    REDUCING,
    MarketSnapshot,
    Reason,
    SafetyDecision,
    SafetyLimits,
    SafetyState,
    check,
)

PROFILE = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
"""Reproducible (derandomized), no example database in the checkout, no per-example deadline."""


set_hypothesis_home_dir(tempfile.mkdtemp(prefix="perpfolio-hypothesis-"))
"""Hypothesis keeps its caches (the constants its pytest plugin collects from the test modules
at collection time, unicode data) in a temporary folder, not in a ``.hypothesis`` folder of the
checkout: set on import, before that collection hook runs."""

TOL = 1e-9
"""Relative tolerance of the recomputed limits (float sums in another order)."""

WILD = (math.nan, math.inf, -math.inf, 1e308, -1e308, 0.0, -1.0, 1e-300, 1e20, -1e20)
"""Values that replace a well-formed one when a category is drawn as wild."""

CATEGORIES = (
    "cash",
    "qty",
    "entry",
    "mark",
    "close",
    "prev_close",
    "basis",
    "lot",
    "min_notional",
    "high_low",
    "funding",
    "maintenance",
    "clock",
    "shape",
)
"""Input fields that an example may corrupt."""

PROPOSALS = (
    *("ok",) * 8,
    "beyond_cap",
    "beyond_cap",
    "nan",
    "inf",
    "huge",
    "out_of_range",
    "short",
    "long",
    "2d",
    "scalar",
    "text",
    "none",
)
"""Kinds of model output: well-formed ones most often, then every kind of broken one."""

T0 = np.datetime64("2024-03-01T12:00:00")
BAR = np.timedelta64(1, "h")


@dataclass
class Inputs:
    """One call of ``check``."""

    proposed: Any
    account: AccountState
    market: MarketSnapshot
    rules: MarketRules
    limits: SafetyLimits
    state: SafetyState


def _wild(rng: np.random.Generator, arr: np.ndarray, corrupt: bool) -> np.ndarray:
    """``arr`` with one or more entries replaced by wild values when ``corrupt``."""
    if not corrupt:
        return arr
    out = arr.astype(float).copy()
    k = int(rng.integers(1, len(out) + 1))
    out[rng.choice(len(out), k, replace=False)] = rng.choice(WILD, k)
    return out


def _limits(rng: np.random.Generator) -> SafetyLimits:
    """Defaults half of the time, else every field tightened at random."""
    if rng.random() < 0.5:
        return SafetyLimits()
    base, values = SafetyLimits(), {}
    for f in fields(SafetyLimits):
        v = getattr(base, f.name)
        if f.name in ("margin_buffer", "maintenance_rate", "cost_rate"):
            values[f.name] = v * float(rng.uniform(1, 4))
        elif isinstance(v, int):
            values[f.name] = int(rng.integers(1, v + 1))
        elif f.name in ("max_abs_basis", "max_bar_move", "max_abs_funding_rate", "max_drawdown"):
            values[f.name] = v * float(rng.uniform(0.3, 1.0))
        else:
            values[f.name] = v * float(rng.uniform(0.02, 1.0))
    return SafetyLimits(**values)


def _proposal(rng: np.random.Generator, kind: str, n: int) -> Any:
    """A model output of the given kind."""
    w = rng.uniform(-1.5, 1.5, n)
    if kind == "beyond_cap":
        return rng.uniform(-6, 6, n)
    if kind in ("nan", "inf", "huge"):
        w[rng.integers(n)] = {"nan": math.nan, "inf": -math.inf, "huge": 1e300}[kind]
    if kind == "out_of_range":
        w[rng.integers(n)] = 10.5
    return {
        "short": w[:-1],
        "long": np.append(w, 0.1),
        "2d": w[None],
        "scalar": float(w[0]),
        "text": ["buy"] * n,
        "none": None,
    }.get(kind, w)


def build(seed: int, n: int, wild: frozenset[str], kind: str) -> Inputs:
    """The inputs of one example: plausible figures from ``seed``, corrupted where ``wild``."""
    rng = np.random.default_rng(seed)
    symbols = tuple(f"A{i}" for i in range(n))
    close = rng.choice([0.5, 8.0, 150.0, 30_000.0], n) * rng.uniform(0.8, 1.25, n)
    lot = np.array([{0.5: 1.0, 8.0: 0.1}.get(round(p, 0), 0.001) for p in close])
    lot = rng.choice([0.001, 0.01, 0.1, 1.0], n) if rng.random() < 0.3 else lot
    equity0 = float(rng.choice([200.0, 10_000.0, 1e6]))
    qty = rng.uniform(-3, 3, n) * equity0 / n / close
    if rng.random() < 0.5:
        qty = np.trunc(qty / lot) * lot
    qty[rng.random(n) < 0.3] = 0.0
    entry = np.where(qty != 0, close * rng.uniform(0.9, 1.1, n), 0.0)
    cash = equity0 - float((qty * (close - entry)).sum()) * rng.uniform(0.8, 1.2)
    mark = close * (1 + rng.normal(0, 0.001, n)) if rng.random() < 0.3 else close.copy()
    prev = close / (1 + rng.choice([0.0, 0.004, -0.01, 0.03], n))
    basis = rng.choice([0.0, 0.0005, -0.001, 0.002], n)
    rough = rng.random() < 0.25
    if rough:
        i = int(rng.integers(n))
        prev[i] = close[i] / (1 + rng.choice([-0.2, 0.25]))
        basis[i] = rng.choice([0.0, 0.05, -0.04])
    high = low = funding = maintenance = None
    if rng.random() < 0.3 or "high_low" in wild:
        high = _wild(rng, np.maximum(close, prev) * rng.uniform(1, 1.04, n), "high_low" in wild)
        low = _wild(rng, np.minimum(close, prev) * rng.uniform(0.96, 1, n), "high_low" in wild)
    if rng.random() < 0.3 or "funding" in wild:
        funding = _wild(
            rng, rng.choice([0.0001, -0.0003, 0.0001, 0.01 if rough else 0.0], n), "funding" in wild
        )
    if rng.random() < 0.3 or "maintenance" in wild:
        maintenance = _wild(rng, rng.choice([0.004, 0.01, 0.05, 0.3], n), "maintenance" in wild)
    age = float(rng.choice([0.0, 0.5, 1.0, 2.0, 0.0, 0.5, 1.0, 1.5, 2.5, 30.0]))
    bar, now = BAR, T0 + np.timedelta64(int(age * 3600), "s")
    if "clock" in wild:
        bar, now = [
            (np.timedelta64(0, "h"), now),
            (-BAR, now),
            (BAR, T0 - np.timedelta64(3, "h")),
            (BAR, np.datetime64("NaT")),
        ][int(rng.integers(4))]
    latest = T0 - BAR if "clock" in wild and rng.random() < 0.3 else T0
    account = AccountState(
        symbols,
        float(rng.choice(WILD)) if "cash" in wild else cash,
        _wild(rng, qty, "qty" in wild),
        _wild(rng, entry, "entry" in wild),
        np.zeros(n),
        _wild(rng, mark, "mark" in wild),
        equity0,
    )
    market = MarketSnapshot(
        symbols,
        _wild(rng, close, "close" in wild),
        _wild(rng, prev, "prev_close" in wild),
        _wild(rng, basis, "basis" in wild),
        latest,
        bar,
        now,
        bool(rng.random() < 0.95),
        high,
        low,
        funding,
        maintenance,
    )
    rules = MarketRules(
        symbols,
        _wild(rng, lot, "lot" in wild),
        _wild(rng, rng.choice([0.0, 5.0, 100.0], n), "min_notional" in wild),
    )
    if "shape" in wild:
        target = str(rng.choice(["qty", "close", "lot", "symbols"]))
        if target == "qty":
            account = replace(account, qty=np.append(account.qty, 1.0))
        elif target == "close":
            market = replace(market, close=market.close[:-1])
        elif target == "lot":
            rules = replace(rules, lot_size=np.ones((n, 2)))
        else:
            market = replace(market, symbols=symbols[::-1] + ("X",))
    state_kind = str(rng.choice([ACTIVE] * 6 + [REDUCING, HALTED]))
    peak = float(equity0 * rng.choice([0.0, 0.5, 1.0, 1.0, 1.1, 2.0]))
    remaining = int(rng.integers(0, 5)) if state_kind == REDUCING else 0
    reason = "" if state_kind == ACTIVE else "test"
    state = SafetyState(state_kind, peak, remaining, reason, "2024-03-01T00:00:00")
    return Inputs(_proposal(rng, kind, n), account, market, rules, _limits(rng), state)


def _run(inputs: Inputs) -> SafetyDecision:
    return check(
        inputs.proposed,
        inputs.account,
        inputs.market,
        inputs.rules,
        inputs.limits,
        inputs.state,
        T0,
        lambda symbol, leg: f"acct-{T0}-{symbol}-{leg}",
    )


def _floats(value: Any, n: int) -> np.ndarray | None:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return None
    return arr if arr.shape == (n,) else None


def _model_ok(proposed: Any, n: int, limits: SafetyLimits) -> bool:
    w = _floats(proposed, n)
    return (
        w is not None
        and bool(np.isfinite(w).all())
        and bool((np.abs(w) <= limits.max_model_output).all())
    )


def _shrinks(q0: float, q1: float) -> bool:
    """From q0 to q1 only shrinks the position (float dust of 1e-9 x |q0| past zero aside)."""
    return (
        q0 != 0
        and abs(q1) <= abs(q0) * (1 + 1e-12)
        and (np.sign(q1) != -np.sign(q0) or abs(q1) <= TOL * abs(q0))
    )


def assert_safe(inputs: Inputs, decision: SafetyDecision) -> None:
    """Every limit of docs/safety.md, recomputed from the inputs, holds for the decision."""
    codes = {str(r) for r in Reason}
    for iv in decision.interventions:
        assert str(iv.code) in codes and iv.message, iv
    got = {str(iv.code) for iv in decision.interventions}
    acc, mkt, rules, lim, prior = (
        inputs.account,
        inputs.market,
        inputs.rules,
        inputs.limits,
        inputs.state,
    )
    new = decision.state.state
    if prior.state == HALTED:
        assert new == HALTED
    symbols, n = acc.symbols, len(acc.symbols)
    qty, close = _floats(acc.qty, n), _floats(mkt.close, n)
    prev, basis = _floats(mkt.prev_close, n), _floats(mkt.basis, n)
    lot, min_notional = _floats(rules.lot_size, n), _floats(rules.min_notional, n)
    formed = (
        qty is not None
        and bool(np.isfinite(qty).all())
        and tuple(mkt.symbols) == symbols
        and tuple(rules.symbols) == symbols
        and all(a is not None for a in (close, prev, basis, lot, min_notional))
        and _floats(acc.entry_price, n) is not None
        and _floats(acc.mark, n) is not None
    )
    if not formed:
        assert decision.orders == ()
        assert got & {"INVALID_ACCOUNT", "INVALID_MARKET", "INVALID_RULES"}
        return
    assert qty is not None and close is not None and prev is not None and basis is not None
    assert lot is not None and min_notional is not None
    with np.errstate(all="ignore"):
        held = qty != 0
        entry, mark = np.asarray(acc.entry_price, float), np.asarray(acc.mark, float)
        by_close = acc.cash + np.where(held, qty * (close - entry), 0.0).sum()
        by_mark = acc.cash + np.where(held, qty * (mark - entry), 0.0).sum()
    equity = min(float(by_close), float(by_mark))
    if math.isfinite(equity) and prior.state != HALTED:
        peak = max(prior.peak_equity, equity)
        if equity <= 0 or 1 - equity / peak >= lim.max_drawdown:
            assert new == HALTED and "DRAWDOWN_KILL" in got
    with np.errstate(all="ignore"):
        age = float((np.datetime64(mkt.now) - np.datetime64(mkt.bar_close_ts)) / mkt.bar_length)
    with np.errstate(all="ignore"):
        bad_data = not (
            bool(np.isfinite(np.concatenate([close, prev, basis])).all())
            and bool((close > 0).all() and (prev > 0).all())
        )
    stale = (
        not (0 <= age <= lim.max_stale_bars)
        or not mkt.features_finite
        or bad_data
        or mkt.bar_close_ts != T0
    )
    model_ok = _model_ok(inputs.proposed, n, lim)
    if new == ACTIVE and not model_ok:
        assert decision.orders == ()
        if math.isfinite(equity):
            assert got & {
                "MODEL_OUTPUT_SHAPE",
                "MODEL_OUTPUT_NON_FINITE",
                "MODEL_OUTPUT_OUT_OF_RANGE",
            }
    if new == ACTIVE and model_ok and math.isfinite(equity):
        w = np.asarray(inputs.proposed, float)
        for i, s in enumerate(symbols):
            if abs(w[i]) > lim.max_abs_weight:
                assert any(
                    iv.code == Reason.ASSET_CAP and iv.symbol == s for iv in decision.interventions
                )
    if new == ACTIVE and stale and math.isfinite(equity):
        assert got & {"STALE_DATA", "NON_FINITE_FEATURES", "INVALID_MARKET"}

    per_symbol: dict[int, list[Order]] = {}
    ids = [o.client_order_id for o in decision.orders]
    assert len(set(ids)) == len(ids)
    for o in decision.orders:
        assert o.symbol in symbols
        i = symbols.index(o.symbol)
        per_symbol.setdefault(i, []).append(o)
        p = close[i]
        assert math.isfinite(p) and p > 0 and o.reference_price == p
        assert o.decision_ts == T0
        assert math.isfinite(o.qty) and o.qty != 0
        assert math.isfinite(lot[i]) and lot[i] > 0
        lots = o.qty / lot[i]
        assert abs(lots - round(lots)) <= 1e-6 * max(1.0, abs(lots)), (o, lot[i])
        assert abs(o.qty) * p <= lim.max_order_notional * (1 + TOL), o
        assert abs(o.qty) * p >= min_notional[i] * (1 - TOL), o
    traded = sum(abs(o.qty) * o.reference_price for o in decision.orders)
    post = qty.copy()
    increasing = []
    for i, orders in per_symbol.items():
        assert len(orders) <= lim.max_orders_per_symbol
        post[i] = qty[i] + sum(o.qty for o in orders)
        shrinks = _shrinks(qty[i], post[i])
        if not shrinks:
            increasing.append(i)
        done = qty[i]
        for o in orders:
            if o.reduce_only:
                assert np.sign(o.qty) == -np.sign(qty[i]) and _shrinks(qty[i], done + o.qty), o
            done += o.qty
    if new in (REDUCING, HALTED):
        assert not increasing
        assert all(o.reduce_only for o in decision.orders)
    if stale:
        assert not increasing, "new risk on stale or non-finite data"
    if increasing:
        assert math.isfinite(equity) and equity > 0
        notional = np.abs(post) * close
        for i in increasing:
            assert notional[i] <= lim.max_abs_weight * equity * (1 + TOL), symbols[i]
        assert notional.sum() <= lim.max_gross_leverage * equity * (1 + TOL)
        rate = np.full(n, lim.maintenance_rate)
        given = _floats(mkt.maintenance_rate, n) if mkt.maintenance_rate is not None else None
        if given is not None:
            rate = np.maximum(rate, np.nan_to_num(given, nan=0.0, posinf=0.0, neginf=0.0))
        maintenance = float((rate * notional).sum())
        assert equity - lim.cost_rate * traded >= (1 + lim.margin_buffer) * maintenance * (1 - TOL)
    if new == ACTIVE and decision.orders:
        assert traded <= lim.max_turnover * equity * (1 + TOL)


def decode(structure: int, seed: int) -> Inputs:
    """The example a (structure, seed) pair stands for: the low bits of ``structure`` give the
    number of assets and the kind of model output; one time in four its high bits corrupt input
    categories (shrinking goes toward one asset, a well-formed output and nothing corrupted)."""
    n = 1 + structure % 4
    kind = PROPOSALS[(structure >> 2) % len(PROPOSALS)]
    mask = structure >> 9 if (structure >> 7) % 4 == 0 else 0
    wild = frozenset(c for j, c in enumerate(CATEGORIES) if mask >> j & 1)
    return build(seed, n, wild, kind)


STRUCTURES = st.integers(0, 2 ** (9 + len(CATEGORIES)) - 1)
SEEDS = st.integers(0, 2**32 - 1)
"""Two draws per example keep hypothesis' own cost near 1 ms an example."""


SINGLE_BAR_EXAMPLES = 6_500
"""Examples of the single-bar property (the run-of-bars property adds about 4,000 calls)."""
RUNS = 1_000
"""Runs of bars of the run-of-bars property (2 to 6 bars each)."""
STATS: dict[str, int] = {}
"""Calls of ``check`` made by a property and what they produced (its test checks them)."""


@settings(PROFILE, max_examples=SINGLE_BAR_EXAMPLES)
@given(STRUCTURES, SEEDS)
def _single_bar_property(structure: int, seed: int) -> None:
    inputs = decode(structure, seed)
    decision = _run(inputs)
    assert_safe(inputs, decision)
    STATS["examples"] = STATS.get("examples", 0) + 1
    STATS["with_orders"] = STATS.get("with_orders", 0) + bool(decision.orders)
    STATS["increases"] = STATS.get("increases", 0) + any(not o.reduce_only for o in decision.orders)
    STATS["trimmed"] = STATS.get("trimmed", 0) + any(
        iv.code == Reason.ROUNDING_TRIM for iv in decision.interventions
    )
    STATS["safety_net"] = STATS.get("safety_net", 0) + any(
        iv.code == Reason.SAFETY_NET for iv in decision.interventions
    )


def _fill(account: AccountState, decision: SafetyDecision, close: np.ndarray) -> AccountState:
    """Every order filled at its reference price (no cost): the next bar's account."""
    qty = np.array(account.qty, float)
    cash = account.cash
    entry = np.array(account.entry_price, float)
    for o in decision.orders:
        i = account.symbols.index(o.symbol)
        cash += qty[i] * (o.reference_price - entry[i]) if qty[i] else 0.0
        qty[i] += o.qty
        entry[i] = o.reference_price if qty[i] else 0.0
        cash -= qty[i] * (o.reference_price - entry[i])
    return replace(account, cash=cash, qty=qty, entry_price=entry, mark=close)


MOVES = (0.0, 0.01, -0.03, 0.08, -0.2, 0.25, -0.4)
"""Bar-to-bar price moves of the run-of-bars property (calm ones, wicks, crashes)."""


@settings(PROFILE, max_examples=RUNS)
@given(st.lists(st.integers(0, 2**12 - 1), min_size=2, max_size=6), SEEDS)
def _run_of_bars_property(bars: list[int], seed: int) -> None:
    """Bars in a row, each filled before the next: the states the layer reaches by itself
    (unwinds, halts, resumes) never let a breaching order through. Each bar's integer picks the
    price move, the kind of model output and whether the data is late."""
    inputs = build(seed, 3, frozenset(), "ok")
    inputs.state = SafetyState()
    rng = np.random.default_rng(seed)
    account, close = inputs.account, np.asarray(inputs.market.close, float)
    for code in bars:
        move, kind = MOVES[code % len(MOVES)], PROPOSALS[(code >> 3) % len(PROPOSALS)]
        late = (code >> 8) % 4 == 0
        prev, close = close, close * (1 + move)
        account = replace(account, mark=close)
        market = replace(
            inputs.market,
            close=close,
            prev_close=prev,
            now=T0 + np.timedelta64(3 if late else 0, "h"),
            features_finite=True,
        )
        step = Inputs(
            _proposal(rng, kind, 3), account, market, inputs.rules, inputs.limits, inputs.state
        )
        decision = _run(step)
        assert_safe(step, decision)
        STATS["bars"] = STATS.get("bars", 0) + 1
        inputs.state = decision.state
        account = _fill(account, decision, close)


@settings(PROFILE, max_examples=1_500)
@given(
    st.sampled_from([f.name for f in fields(SafetyLimits)]),
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(-5, 50),
        st.sampled_from([0.0, -0.0, 1e-12, 1e308]),
    ),
)
def test_limits_can_only_tighten(name: str, value: float) -> None:
    """A value looser than the constant, not finite or not positive is refused, naming the field;
    a tighter one is kept as given."""
    default = getattr(SafetyLimits(), name)
    floor = name in ("margin_buffer", "maintenance_rate", "cost_rate")
    whole = name in ("max_orders_per_symbol", "unwind_bars")
    ok = (
        math.isfinite(value)
        and (value >= default if floor else 0 < value <= default)
        and (not whole or float(value).is_integer())
    )
    if ok:
        assert getattr(SafetyLimits(**{name: value}), name) == value
    else:
        with pytest.raises(ValueError, match=f"SafetyLimits.{name}"):
            SafetyLimits(**{name: value})


@settings(PROFILE, max_examples=300)
@given(
    st.sampled_from([ACTIVE, REDUCING, HALTED]),
    st.floats(0, 1e12),
    st.integers(0, 10),
    st.sampled_from(["", "BTC basis +4.5%", "équité < pic", "a;b\nc"]),
)
def test_state_round_trips_through_a_dict(kind: str, peak: float, remaining: int, why: str) -> None:
    state = SafetyState(kind, peak, remaining, why, str(T0), str(T0), "ops")
    assert SafetyState.from_dict(state.to_dict()) == state


@pytest.mark.slow
def test_no_order_breaches_a_limit() -> None:
    """6,500 single-bar cases; they are not vacuous: many trade, increases included, and the
    final safety net never had to catch anything the budgets let through."""
    STATS.clear()
    _single_bar_property()
    assert STATS["examples"] >= 0.95 * SINGLE_BAR_EXAMPLES
    assert STATS["with_orders"] > 0.3 * STATS["examples"]
    assert STATS["increases"] > 0.05 * STATS["examples"]
    assert STATS["safety_net"] == 0


@pytest.mark.slow
def test_no_order_breaches_a_limit_over_a_run_of_bars() -> None:
    """The run-of-bars property; with the single-bar one, more than 10,000 calls of ``check``."""
    STATS.clear()
    _run_of_bars_property()
    assert STATS["bars"] >= 10_000 - SINGLE_BAR_EXAMPLES
