"""The serving cycle: bar by bar on a paper account it observes, decides and trades exactly as
the backtest of the same bars does; a re-run of a bar trades nothing twice; between decisions
it holds."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from evaluation.engine import PolicyActor, backtest
from serving.account import AccountState, MarketRules
from serving.cycle import is_decision_bar, paper_rules, portfolio_state, run_cycle
from serving.paper import PaperBroker
from serving.safety import SafetyState
from serving.tracking import paper_tracking
from tests.support.markets import make_synthetic_market
from tests.support.policies import untrained_policy
from training.env_config import EnvConfig
from training.market import MarketData
from training.policy_model import PolicyModel
from training.simulator import BatchedSimulator

CONFIG = EnvConfig(window=8, episode_length=20, max_leverage=0.5, no_trade_band=0.02)
FIRST_BAR, BARS = 40, 30


def policy_for(market: MarketData, config: EnvConfig = CONFIG) -> PolicyModel:
    return untrained_policy(market, config, FIRST_BAR - 1)


@pytest.fixture(scope="module")
def market() -> MarketData:
    base = make_synthetic_market(n_assets=3, n_bars=FIRST_BAR + BARS + 1)
    return replace(base, mark=base.close.copy())  # the safety layer sizes at min(close, mark)


def fine_rules(market: MarketData) -> MarketRules:
    """Lots of 1e-6 units (1e-4 of quote): rounding moves the book by less than 1e-7 of it."""
    n = market.n_assets
    return MarketRules(market.symbols, np.full(n, 1e-6), np.zeros(n))


def test_serving_bar_by_bar_equals_the_backtest_of_the_same_bars(market, tmp_path):
    policy = policy_for(market)
    seen: list[np.ndarray] = []

    def act(obs):
        seen.append(obs[0].copy())
        return policy.act(obs)

    ledger = backtest(
        market, CONFIG, policy.spec.builder.normalizer, [PolicyActor("p", act)], FIRST_BAR
    )["p"]
    broker = PaperBroker(tmp_path / "paper.duckdb", "paper", market.symbols, 10_000.0)
    state, served, equity = SafetyState(), [], []
    for t in range(FIRST_BAR - 1, market.n_bars - 1):  # each cycle sees one new bar
        result = run_cycle(policy, market.slice(0, t + 1), broker, state, rules=fine_rules(market))
        state = result.safety.state
        served.append(result)
        equity.append(result.account.equity)
    assert len(served) == len(seen) == BARS + 1
    for result, observation in zip(served, seen, strict=True):
        np.testing.assert_allclose(result.observation, observation, rtol=1e-6, atol=1e-6)
        assert result.decided
        assert not any(i.code == "TURNOVER_CAP" for i in result.safety.interventions)
    traded = sum(len(r.orders) for r in served)
    assert traded > BARS  # the policy trades several assets on most bars
    # the account each cycle decides on is the backtest's after as many bars
    np.testing.assert_allclose(equity, ledger.equity[: BARS + 1], rtol=1e-8)
    weights = np.array([r.account.weights for r in served[1:]])
    np.testing.assert_allclose(weights, ledger.weights[:BARS], atol=1e-7)
    # the tracking report of the same paper account finds no gap
    times, curve = broker.equity_curve()
    normalizer = policy.spec.builder.normalizer
    report = paper_tracking(market, CONFIG, policy.act, normalizer, times, curve)
    assert report is not None and report.bars == BARS + 1
    assert report.max_abs_gap < 1e-7 and report.tracking_error < 1e-6


def test_rerunning_a_bar_trades_nothing_twice(market, tmp_path):
    policy = policy_for(market)
    broker = PaperBroker(tmp_path / "paper.duckdb", "paper", market.symbols, 10_000.0)
    bars = market.slice(0, FIRST_BAR)
    first = run_cycle(policy, bars, broker, SafetyState())
    again = run_cycle(policy, bars, broker, first.safety.state)
    assert first.orders and first.bars_processed == 1 and again.bars_processed == 0
    assert [o.client_order_id for o in again.orders] == [o.client_order_id for o in first.orders]
    assert len(broker.orders()) == len(first.orders)
    following = run_cycle(policy, market.slice(0, FIRST_BAR + 1), broker, again.safety.state)
    assert following.bars_processed == 1
    assert {f.client_order_id for f in following.fills} == {o.client_order_id for o in first.orders}


def test_between_decisions_the_cycle_holds(market, tmp_path):
    daily = replace(CONFIG, decision_interval=24, episode_length=2)
    policy = policy_for(market, daily)
    broker = PaperBroker(tmp_path / "paper.duckdb", "paper", market.symbols, 10_000.0)
    state, decided_at, orders_at = SafetyState(), [], []
    for t in range(FIRST_BAR - 20, FIRST_BAR + 20):
        result = run_cycle(policy, market.slice(0, t + 1), broker, state)
        state = result.safety.state
        if result.decided:
            decided_at.append(str(result.decision_ts))
        if result.orders:
            orders_at.append(str(result.decision_ts))
    assert decided_at == ["2024-01-02T00:00:00.000000000", "2024-01-03T00:00:00.000000000"]
    assert orders_at == decided_at


def test_between_decisions_a_large_book_places_no_order_when_marks_differ_from_closes(tmp_path):
    market = make_synthetic_market(n_assets=3, n_bars=FIRST_BAR + BARS + 1)  # mark != close
    daily = replace(CONFIG, decision_interval=24, episode_length=2)
    policy = policy_for(market, daily)
    broker = PaperBroker(tmp_path / "paper.duckdb", "paper", market.symbols, 1e8)
    state, orders_at, differing = SafetyState(), [], 0
    for t in range(FIRST_BAR - 20, FIRST_BAR + 20):
        result = run_cycle(policy, market.slice(0, t + 1), broker, state)
        state = result.safety.state
        if result.orders:
            orders_at.append(str(result.decision_ts))
        if not result.decided:  # held bars where the close values the book below the marks
            differing += abs(result.account.equity - result.safety.equity) > 100.0
    assert differing >= 5
    assert orders_at == ["2024-01-02T00:00:00.000000000", "2024-01-03T00:00:00.000000000"]


def test_decision_bars_are_whole_intervals_since_the_epoch():
    midnight = np.datetime64("2024-01-02T00:00", "ns")
    assert is_decision_bar(midnight, 1.0, 24) and is_decision_bar(midnight, 1.0, 1)
    assert not is_decision_bar(midnight + np.timedelta64(1, "h"), 1.0, 24)
    assert is_decision_bar(midnight + np.timedelta64(8, "h"), 1.0, 8)


def test_the_observed_account_is_the_simulators(market):
    sim = BatchedSimulator(market, CONFIG, 1)
    sim.reset_env(0, np.random.default_rng(0))
    sim.refresh()
    sim.step(np.array([[1.0, -1.0, 0.5]]))
    account = AccountState(
        market.symbols,
        float(sim.cash[0]),
        sim.qty[0].copy(),
        sim.entry[0].copy(),
        sim.entry_basis[0].copy(),
        market.mark[int(sim.t[0])],
        CONFIG.initial_equity,
    )
    ours = portfolio_state(account, CONFIG, market.hours_to_funding[int(sim.t[0])])
    theirs = sim.portfolio_of(0)
    for name in ("weights", "unrealized_pnl", "entry_basis", "hours_to_funding"):
        np.testing.assert_allclose(getattr(ours, name), getattr(theirs, name), rtol=1e-12)
    for name in ("equity_ratio", "margin_ratio", "distance_to_liquidation"):
        assert float(getattr(ours, name)) == pytest.approx(float(getattr(theirs, name)), 1e-12)
    assert float(ours.margin_ratio) > 0


def test_paper_lots_are_worth_at_most_one_unit_of_quote():
    rules = paper_rules(("BTCUSDT", "DOGEUSDT"), np.array([60_000.0, 0.08]))
    np.testing.assert_allclose(rules.lot_size, [1e-5, 10.0])
    assert (rules.lot_size * np.array([60_000.0, 0.08]) <= 1.0).all()
