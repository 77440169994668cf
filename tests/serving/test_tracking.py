"""Paper against backtest: the backtest of the served policy on the same bars measures the
execution gap of the paper lots (with fine lots there is none: tests/serving/test_cycle.py)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from serving.cycle import run_cycle
from serving.paper import PaperBroker
from serving.safety import SafetyState
from serving.tracking import paper_tracking
from tests.support.markets import make_synthetic_market
from tests.support.policies import untrained_policy
from training.env_config import EnvConfig

CONFIG = EnvConfig(window=8, episode_length=20, max_leverage=0.5, no_trade_band=0.02)
FIRST_BAR, BARS = 40, 30


@pytest.fixture(scope="module")
def market():
    base = make_synthetic_market(n_assets=3, n_bars=FIRST_BAR + BARS + 1)
    return replace(base, mark=base.close.copy())


def serve(market, tmp_path, rules):
    """Serve every bar from FIRST_BAR - 1; the tracking report of the paper equity curve."""
    policy = untrained_policy(market, CONFIG, FIRST_BAR - 1)
    broker = PaperBroker(tmp_path / "paper.duckdb", "paper", market.symbols, 10_000.0)
    state = SafetyState()
    for t in range(FIRST_BAR - 1, market.n_bars):
        state = run_cycle(policy, market.slice(0, t + 1), broker, state, rules=rules).safety.state
    times, equity = broker.equity_curve()
    normalizer = policy.spec.builder.normalizer
    return paper_tracking(market, CONFIG, policy.act, normalizer, times, equity)


def test_paper_lots_show_as_a_small_tracking_error(market, tmp_path):
    report = serve(market, tmp_path, None)  # paper rules: lots worth $1 at most, a $5 minimum
    assert report is not None
    assert 1e-7 < report.max_abs_gap < 1e-3
    assert 0 < report.tracking_error < 0.05


def test_too_short_a_paper_history_has_no_report(market):
    times = market.close_times[FIRST_BAR : FIRST_BAR + 1]
    policy = untrained_policy(market, CONFIG, FIRST_BAR - 1)
    normalizer = policy.spec.builder.normalizer
    one = paper_tracking(market, CONFIG, policy.act, normalizer, times, np.array([10_000.0]))
    assert one is None
