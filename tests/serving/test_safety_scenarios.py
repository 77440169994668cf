"""Scenario tests of the safety layer, one per rule, with the figures worked out by hand: a
100,000 USDT account trading BTC at 50,000 and ETH at 2,500 (lot 0.001, min notional 5)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from serving.account import AccountState, MarketRules
from serving.safety import (
    ACTIVE,
    HALTED,
    MAX_ABS_WEIGHT,
    REDUCING,
    MarketSnapshot,
    Reason,
    SafetyDecision,
    SafetyLimits,
    SafetyState,
    check,
    reset_halt,
)

SYMBOLS = ("BTC", "ETH")
PRICES = np.array([50_000.0, 2_500.0])
T0 = np.datetime64("2024-03-01T12:00:00")
HOUR = np.timedelta64(1, "h")
RULES = MarketRules(SYMBOLS, np.array([0.001, 0.001]), np.array([5.0, 5.0]))


def account(qty: tuple[float, float] = (0.0, 0.0), cash: float = 100_000.0) -> AccountState:
    """Positions entered at today's prices (no unrealized PnL): equity equals ``cash``."""
    q = np.array(qty, float)
    entry = np.where(q != 0, PRICES, 0.0)
    return AccountState(SYMBOLS, cash, q, entry, np.zeros(2), PRICES.copy(), 100_000.0)


def market(
    close: np.ndarray = PRICES, prev: np.ndarray = PRICES, age_hours: float = 0.0, **kw
) -> MarketSnapshot:
    """The decision bar closed at T0; ``now`` is ``age_hours`` later."""
    return MarketSnapshot(
        SYMBOLS,
        np.asarray(close, float),
        np.asarray(prev, float),
        kw.pop("basis", np.zeros(2)),
        T0,
        HOUR,
        T0 + np.timedelta64(int(age_hours * 3600), "s"),
        **kw,
    )


def run(
    weights,
    acc: AccountState,
    mkt: MarketSnapshot | None = None,
    limits: SafetyLimits | None = None,
    state: SafetyState | None = None,
    rules: MarketRules = RULES,
) -> SafetyDecision:
    return check(
        weights,
        acc,
        mkt or market(),
        rules,
        limits or SafetyLimits(),
        state or SafetyState(),
        T0,
        lambda symbol, leg: f"acct-{T0}-{symbol}-{leg}",
    )


def qty_of(decision: SafetyDecision, symbol: str) -> list[float]:
    return [o.qty for o in decision.orders if o.symbol == symbol]


def codes(decision: SafetyDecision) -> set[str]:
    return {str(iv.code) for iv in decision.interventions}


def fill(acc: AccountState, decision: SafetyDecision, close: np.ndarray) -> AccountState:
    """Every order filled at its reference price, the account marked at ``close``."""
    qty = acc.qty.copy()
    cash = acc.cash
    for o in decision.orders:
        i = SYMBOLS.index(o.symbol)
        cash += -o.qty * (o.reference_price - acc.entry_price[i]) if qty[i] else 0.0
        qty[i] += o.qty
    return replace(acc, cash=cash, qty=qty, mark=np.asarray(close, float))


def test_a_fresh_bar_passes_the_model_through_as_orders():
    d = run([0.5, -0.25], account())
    assert qty_of(d, "BTC") == [pytest.approx(1.0)]
    assert qty_of(d, "ETH") == [pytest.approx(-10.0)]
    assert not any(o.reduce_only for o in d.orders)
    np.testing.assert_allclose(d.target_weights, [0.5, -0.25], rtol=1e-6)
    assert d.state.state == ACTIVE and d.state.peak_equity == 100_000.0
    assert d.interventions == ()
    assert [o.client_order_id for o in d.orders] == [f"acct-{T0}-BTC-0", f"acct-{T0}-ETH-0"]


def test_stale_bar_allows_no_new_risk_but_reductions_still_pass():
    acc = account((1.0, 0.0))  # 0.5x long BTC
    stale = market(age_hours=2.5)  # the latest bar closed 2.5 bar lengths ago: stale
    more = run([1.0, 0.5], acc, stale)
    assert more.orders == ()
    assert "STALE_DATA" in codes(more)
    assert any("2.5 bar lengths" in iv.message for iv in more.interventions)
    less = run([0.25, 0.5], acc, stale)  # BTC 1 -> 0.5 passes, the new ETH short does not
    assert qty_of(less, "BTC") == [pytest.approx(-0.5)]
    assert qty_of(less, "ETH") == []
    assert all(o.reduce_only for o in less.orders)
    on_time = run([1.0, 0.5], acc, market(age_hours=2.0))  # exactly 2 bar lengths: not stale
    assert qty_of(on_time, "BTC") == [pytest.approx(1.0)]
    assert qty_of(on_time, "ETH") == [pytest.approx(20.0)]
    behind = replace(market(age_hours=0.0), bar_close_ts=T0 - HOUR, now=T0 - HOUR)
    other_bar = run([1.0, 0.5], acc, behind)  # deciding T0 on data whose latest bar is T0 - 1h
    assert other_bar.orders == () and "STALE_DATA" in codes(other_bar)
    nan_feature = run([1.0, 0.5], acc, market(features_finite=False))
    assert nan_feature.orders == () and "NON_FINITE_FEATURES" in codes(nan_feature)


def test_flash_crash_wick_unwinds_every_position_over_four_bars():
    # BTC closes 5% down but its low is 20% under the previous close: a wick beyond 15%.
    acc = account((2.0, -10.0))
    crash = market(
        close=[47_500.0, 2_500.0],
        prev=PRICES,
        low=np.array([40_000.0, 2_480.0]),
        high=np.array([50_100.0, 2_520.0]),
    )
    acc = replace(acc, mark=crash.close)
    d = run([1.0, -1.0], acc, crash)
    assert d.state.state == REDUCING and d.state.unwind_bars_remaining == 3
    assert "BAR_MOVE_EXTREME" in codes(d)
    assert any("BTC low 40,000 is -20.00%" in iv.message for iv in d.interventions)
    slices = [(qty_of(d, "BTC"), qty_of(d, "ETH"))]
    state, close = d.state, crash.close
    for bar in range(1, 5):  # calm bars; the model keeps asking for more risk
        acc = fill(acc, d, close)
        close = np.array([47_600.0, 2_505.0])
        calm = replace(market(close=close, prev=close), bar_close_ts=T0, now=T0)
        d = run([2.0, -2.0], acc, calm, state=state)
        state = d.state
        slices.append((qty_of(d, "BTC"), qty_of(d, "ETH")))
        if bar < 4:
            assert state.state == REDUCING and state.unwind_bars_remaining == 3 - bar
            assert all(o.reduce_only for o in d.orders)
    # Each bar takes 1/remaining of what is left: 2 BTC and 10 ETH in four equal slices.
    for btc, eth in slices[:4]:
        assert btc == [pytest.approx(-0.5)] and eth == [pytest.approx(2.5)]
    assert acc.qty.tolist() == pytest.approx([0.0, 0.0], abs=1e-12)
    # Bar 5: unwind complete, market calm: ACTIVE again and the model trades (capped at 2x).
    assert state.state == ACTIVE and "RESUMED" in codes(d)
    btc, eth = slices[4]
    assert sum(btc) > 0 and sum(eth) < 0


def test_basis_spike_unwinds_and_a_new_extreme_neither_restarts_nor_ends_it():
    acc = account((1.0, 0.0))
    limits = SafetyLimits(unwind_bars=2)
    spike = market(basis=np.array([0.045, 0.0]), funding_rate=np.array([0.012, 0.0001]))
    d = run([1.0, 0.0], acc, spike, limits)
    assert {"BASIS_EXTREME", "FUNDING_EXTREME"} <= codes(d)
    assert d.state.state == REDUCING and d.state.unwind_bars_remaining == 1
    assert qty_of(d, "BTC") == [pytest.approx(-0.5)]
    acc = fill(acc, d, PRICES)
    d = run([1.0, 0.0], acc, spike, limits, d.state)  # still spiking: the schedule goes on
    assert qty_of(d, "BTC") == [pytest.approx(-0.5)] and d.state.unwind_bars_remaining == 0
    acc = fill(acc, d, PRICES)
    d = run([1.0, 0.0], acc, spike, limits, d.state)  # unwound, but the spike persists
    assert d.orders == () and d.state.state == REDUCING
    d = run([1.0, 0.0], acc, market(), limits, d.state)  # calm: ACTIVE, and it trades
    assert d.state.state == ACTIVE and qty_of(d, "BTC") == [pytest.approx(2.0)]


def test_kill_switch_flattens_then_stays_halted_until_a_person_resets_it():
    peak = SafetyState(peak_equity=100_000.0)
    acc = account((3.0, -20.0), cash=65_000.0)  # 35% below the peak; limit 30%
    d = run([1.0, -1.0], acc, state=peak)
    assert d.state.state == HALTED and "DRAWDOWN_KILL" in codes(d)
    assert any("35.00% below its peak 100,000" in iv.message for iv in d.interventions)
    # 3 BTC = 150,000 of notional: two reduce-only orders of at most 100,000 each.
    assert qty_of(d, "BTC") == [pytest.approx(-1.5), pytest.approx(-1.5)]
    assert qty_of(d, "ETH") == [pytest.approx(20.0)]
    assert all(o.reduce_only for o in d.orders)
    flat = fill(acc, d, PRICES)
    assert flat.qty.tolist() == pytest.approx([0.0, 0.0])
    recovered = replace(flat, cash=120_000.0)
    for _ in range(3):  # equity above the old peak, fresh data, a valid model: still halted
        d = run([1.0, -1.0], recovered, state=d.state)
        assert d.orders == () and d.state.state == HALTED and "HALTED" in codes(d)
    with pytest.raises(ValueError, match="name the person"):
        reset_halt(d.state, " ")
    resumed = reset_halt(d.state, "alice")
    assert resumed.state == ACTIVE and resumed.reset_by == "alice" and resumed.peak_equity == 0
    d = run([0.5, 0.0], recovered, state=resumed)
    assert qty_of(d, "BTC") == [pytest.approx(1.2)]  # 0.5 x 120,000 / 50,000
    assert d.state.peak_equity == 120_000.0
    with pytest.raises(ValueError, match="not HALTED"):
        reset_halt(d.state, "alice")


def test_kill_switch_trips_at_exactly_the_limit_and_on_a_bust_account():
    at_limit = run([0.0, 0.0], account((1.0, 0.0), 70_000.0), state=SafetyState(peak_equity=1e5))
    assert at_limit.state.state == HALTED
    just_above = run([0.0, 0.0], account((1.0, 0.0), 70_001.0), state=SafetyState(peak_equity=1e5))
    assert just_above.state.state == ACTIVE
    bust = run([1.0, 0.0], account((1.0, 0.0), -5.0))
    assert bust.state.state == HALTED and qty_of(bust, "BTC") == [pytest.approx(-1.0)]


def test_margin_floor_cuts_an_order_that_would_breach():
    # Maintenance 30% of notional, equity must stay >= 2x maintenance after costs (0.2%):
    # the largest BTC weight is 1 / (0.002 + 2 x 0.3) = 1.66113.
    limits = SafetyLimits(maintenance_rate=0.3, margin_buffer=1.0)
    d = run([2.0, 0.0], account(), limits=limits)
    bought = sum(qty_of(d, "BTC"))
    assert bought == pytest.approx(100_000 / 50_000 / (0.002 + 0.6), abs=0.001)
    assert "MARGIN_FLOOR" in codes(d)
    traded = sum(o.notional for o in d.orders)
    assert 100_000 - 0.002 * traded >= 2 * 0.3 * bought * 50_000
    # The exchange's own rate counts when it is the larger one.
    same = run(
        [2.0, 0.0],
        account(),
        market(maintenance_rate=np.array([0.3, 0.01])),
        SafetyLimits(margin_buffer=1.0),
    )
    assert sum(qty_of(same, "BTC")) == pytest.approx(bought)


def test_margin_floor_refuses_new_risk_while_the_account_is_inside_the_buffer():
    limits = SafetyLimits(maintenance_rate=0.3, margin_buffer=1.0)
    acc = account((0.0, -70.0))  # 175,000 of ETH: maintenance x 2 = 105,000 > equity 100,000
    eth_frozen = MarketRules(SYMBOLS, np.array([0.001, np.nan]), np.array([5.0, 5.0]))
    d = run([0.5, -1.75], acc, limits=limits, rules=eth_frozen)
    assert d.orders == ()
    assert "MARGIN_FLOOR" in codes(d) and "INVALID_RULES" in codes(d)
    # A reduction is never refused by the floor: ETH -70 -> -30.
    d = run([0.0, -0.75], acc, limits=limits)
    assert qty_of(d, "ETH") == [pytest.approx(40.0)] and d.orders[0].reduce_only


def test_max_order_notional_splits_then_caps_orders():
    limits = SafetyLimits(max_order_notional=20_000.0)
    d = run([0.5, 0.0], account(), limits=limits)  # 1 BTC = 50,000: three orders
    assert qty_of(d, "BTC") == [pytest.approx(0.334), pytest.approx(0.333), pytest.approx(0.333)]
    assert max(o.notional for o in d.orders) <= 20_000.0
    assert "ORDER_SPLIT" in codes(d)
    capped = run([0.5, 0.0], account(), limits=replace(limits, max_orders_per_symbol=2))
    assert qty_of(capped, "BTC") == [pytest.approx(0.4), pytest.approx(0.4)]
    assert "ORDER_NOTIONAL_CAP" in codes(capped)
    whole_coins = MarketRules(SYMBOLS, np.array([1.0, 0.001]), np.array([5.0, 5.0]))
    refused = run([0.5, 0.0], account(), limits=limits, rules=whole_coins)
    assert refused.orders == ()
    assert any("one lot 1 at 50,000 exceeds" in iv.message for iv in refused.interventions)


def test_max_turnover_scales_increases_and_puts_reductions_first():
    limits = SafetyLimits(max_turnover=0.5)  # 50,000 of orders per bar on 100,000
    d = run([1.0, -1.0], account(), limits=limits)
    assert qty_of(d, "BTC") == [pytest.approx(0.5)]  # 1/4 of each increase
    assert qty_of(d, "ETH") == [pytest.approx(-10.0)]
    assert sum(o.notional for o in d.orders) <= 50_000.0
    assert "TURNOVER_CAP" in codes(d)
    flip = run([-1.0, 0.0], account((2.0, 0.0)), limits=limits)  # 2 BTC long -> 2 BTC short
    assert qty_of(flip, "BTC") == [pytest.approx(-1.0)] and flip.orders[0].reduce_only


@pytest.mark.parametrize(
    ("output", "code"),
    [
        ([np.nan, 0.5], "MODEL_OUTPUT_NON_FINITE"),
        ([0.5, np.inf], "MODEL_OUTPUT_NON_FINITE"),
        ([0.5], "MODEL_OUTPUT_SHAPE"),
        ([[0.5, 0.5]], "MODEL_OUTPUT_SHAPE"),
        (["long", "short"], "MODEL_OUTPUT_SHAPE"),
        (None, "MODEL_OUTPUT_SHAPE"),
        ([11.0, 0.0], "MODEL_OUTPUT_OUT_OF_RANGE"),
        ([-1e300, 0.0], "MODEL_OUTPUT_OUT_OF_RANGE"),
    ],
)
def test_bad_model_output_holds_and_says_why(output, code):
    acc = account((1.0, -10.0))
    d = run(output, acc)
    assert d.orders == ()
    assert code in codes(d)
    assert d.state.state == ACTIVE
    np.testing.assert_allclose(d.target_weights, [0.5, -0.25])  # the book is held as it is


def test_a_weight_beyond_the_cap_but_in_range_is_clipped_not_rejected():
    d = run([2.5, 0.0], account())
    assert sum(qty_of(d, "BTC")) == pytest.approx(MAX_ABS_WEIGHT * 2, abs=0.001)
    assert any(iv.code == Reason.ASSET_CAP and iv.symbol == "BTC" for iv in d.interventions)
    policy_bound = run([3.5, 0.0], account(), limits=SafetyLimits(max_model_output=3.0))
    assert policy_bound.orders == () and "MODEL_OUTPUT_OUT_OF_RANGE" in codes(policy_bound)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_abs_weight", 2.5),
        ("max_gross_leverage", 3.01),
        ("max_model_output", 20.0),
        ("margin_buffer", 0.1),
        ("maintenance_rate", 0.004),
        ("cost_rate", 0.0),
        ("max_order_notional", 1e6),
        ("max_orders_per_symbol", 11),
        ("max_turnover", 5.0),
        ("max_stale_bars", 3.0),
        ("max_abs_basis", 0.1),
        ("max_bar_move", 0.3),
        ("max_abs_funding_rate", 0.02),
        ("unwind_bars", 8),
        ("max_drawdown", 0.5),
        ("max_turnover", float("nan")),
        ("max_abs_weight", 0.0),
        ("unwind_bars", 2.5),
    ],
)
def test_configuration_cannot_loosen_a_limit(field, value):
    with pytest.raises(ValueError, match=f"SafetyLimits.{field}"):
        SafetyLimits(**{field: value})


def test_configuration_can_tighten_every_limit():
    tight = SafetyLimits(
        max_abs_weight=1.0, margin_buffer=2.0, max_drawdown=0.1, unwind_bars=2, max_turnover=1.0
    )
    assert (tight.max_abs_weight, tight.margin_buffer, tight.unwind_bars) == (1.0, 2.0, 2)
    d = run([1.5, 0.0], account(), limits=tight)
    assert sum(qty_of(d, "BTC")) == pytest.approx(2.0, abs=0.001)  # 1.0 x 100,000 / 50,000


def test_state_round_trips_and_refuses_unknown_states():
    state = SafetyState(REDUCING, 123_456.0, 2, "BTC basis +4.5%", str(T0), str(T0), "bob")
    assert SafetyState.from_dict(state.to_dict()) == state
    with pytest.raises(ValueError, match="SafetyState.state"):
        SafetyState.from_dict({"state": "PAUSED"})
    with pytest.raises(ValueError, match="unknown fields"):
        SafetyState.from_dict({"state": ACTIVE, "colour": "red"})


def test_nan_price_or_wrong_shapes_trade_nothing_and_say_so():
    acc = account((1.0, 0.0))
    d = run([0.5, 0.0], acc, market(close=np.array([np.nan, 2_500.0])))
    assert d.orders == () and "INVALID_PRICE" in codes(d)
    short = replace(acc, qty=np.array([1.0]))
    d = run([0.5, 0.0], short)
    assert d.orders == () and "INVALID_ACCOUNT" in codes(d) and np.isnan(d.equity)
