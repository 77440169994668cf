"""The serving cycle on a live account for real: ccxt's binanceusdm against the local exchange on
127.0.0.1, through ``LiveExecution``; the account comes from the exchange, a re-run of the bar
sends nothing twice."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from ingestion.local_exchange import LocalBinance
from ingestion.synthetic import SyntheticMarketConfig, generate_market
from serving.cycle import LiveExecution, run_cycle
from serving.live import API_KEY_ENV, API_SECRET_ENV, LIVE_ENV, LiveBroker, LiveConfig
from serving.safety import SafetyState
from tests.support.markets import make_synthetic_market
from training.env_config import EnvConfig
from training.observation import FeatureNormalizer, ObservationBuilder
from training.policy_model import BASELINE_ALGORITHM, PolicyModel, PolicySpec

KEY, SECRET = "cycle-key-R4nd0mK3y", "cycle-secret-S3cr3tV4l"
NOW = pd.Timestamp("2024-01-02 05:00")
SYMBOLS = ("BTC", "ETH")
CONFIG = EnvConfig(window=4, episode_length=10)
WEIGHTS = np.array([0.3, -0.2])


@pytest.fixture(scope="module")
def frames():
    return generate_market(SyntheticMarketConfig(symbols=SYMBOLS, n_bars=48, venue="binance"))


@pytest.fixture
def server(frames):
    with LocalBinance(frames, now=NOW, delay=0.6, api_key=KEY, api_secret=SECRET) as srv:
        yield srv


def cycle_market(frames):
    """A market of the two assets whose last bar closes at NOW at the exchange's prices."""
    base = make_synthetic_market(n_assets=2, n_bars=29, start="2024-01-01T00:00")
    perp = frames.ohlcv[frames.ohlcv.market == "perp"]
    last = perp[perp.ts == NOW - pd.Timedelta(hours=1)].set_index("symbol").close
    scale = np.array([last[s] for s in SYMBOLS]) / base.close[-1]
    prices = {k: getattr(base, k) * scale for k in ("open", "high", "low", "close", "mark")}
    return replace(base, symbols=SYMBOLS, **prices)


def fixed_policy(market) -> PolicyModel:
    policy = PolicyModel()
    policy.fixed_weights = WEIGHTS
    builder = ObservationBuilder(
        market.feature_names, 2, CONFIG.window, FeatureNormalizer.fit(market.features)
    )
    policy.spec = PolicySpec(
        BASELINE_ALGORITHM, SYMBOLS, "binance", "1h", CONFIG, builder, str(market.timestamps[-1])
    )
    return policy


def live(server) -> LiveExecution:
    config = LiveConfig(live=True, base_url=server.base_url, timeout_ms=2_000, rate_limit_ms=1)
    environ = {LIVE_ENV: "1", API_KEY_ENV: KEY, API_SECRET_ENV: SECRET}
    return LiveExecution(LiveBroker(config, SYMBOLS, environ=environ), "live1", 10_000.0)


def test_a_live_cycle_trades_the_exchange_account_once_per_bar(server, frames):
    market = cycle_market(frames)
    assert market.close_times[-1] == np.datetime64(NOW)
    policy = fixed_policy(market)
    first = run_cycle(policy, market, live(server), SafetyState())
    assert first.decided and first.account.equity == pytest.approx(first.account.cash)
    assert first.account.qty.tolist() == [0.0, 0.0]  # the exchange's account starts flat
    sent = {o["newClientOrderId"]: o for o in (r["params"] for r in server.order_requests)}
    assert set(sent) == {o.client_order_id for o in first.orders}
    assert {o.client_order_id for o in first.orders} == {
        "pf-live1-20240102T0500-BTC",
        "pf-live1-20240102T0500-ETH",
    }
    assert [o.side for o in first.orders] == ["BUY", "SELL"]
    # the account now comes from the exchange's positions; the same bar again sends nothing
    requests = len(server.order_requests)
    again = run_cycle(policy, market, live(server), first.safety.state)
    held = again.account.qty
    assert np.sign(held).tolist() == [1.0, -1.0]
    weights = held * market.close[-1] / again.account.equity
    np.testing.assert_allclose(weights, WEIGHTS, atol=0.01)  # lot rounding, fees
    assert again.orders == () and len(server.order_requests) == requests
