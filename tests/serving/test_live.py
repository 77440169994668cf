"""The live adapter for real: ccxt's binanceusdm against the local exchange on 127.0.0.1."""

import json
import logging
import math
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest

from ingestion.local_exchange import LocalBinance
from ingestion.synthetic import SyntheticMarketConfig, generate_market
from serving.account import Order
from serving.ledger import client_order_id
from serving.live import (
    ALREADY_SUBMITTED,
    API_KEY_ENV,
    API_SECRET_ENV,
    LIVE_ENV,
    PLACED,
    REJECTED,
    LiveBroker,
    LiveBrokerError,
    LiveConfig,
    LiveOrderRefused,
    LiveTradingDisabled,
)

KEY = "live-key-Zq8W3mX1pL0vN7rT"
SECRET = "live-secret-Hk2Jd9Fs4Ga6Qw1E"
NOW = pd.Timestamp("2024-01-02 05:00")
DECIDED = np.datetime64("2024-01-02T05:00")
SYMBOLS = ("BTC", "ETH")
FEE = 0.0005


@pytest.fixture(scope="module")
def market():
    return generate_market(SyntheticMarketConfig(symbols=SYMBOLS, n_bars=48, venue="binance"))


@pytest.fixture
def server(market):
    with LocalBinance(
        market, now=NOW, delay=0.6, api_key=KEY, api_secret=SECRET, lot_sizes={"ETH": "0.01"},
        min_notional=7.5, taker_fee=FEE,
    ) as srv:  # fmt: skip
        yield srv


def env(**changes):
    base = {LIVE_ENV: "1", API_KEY_ENV: KEY, API_SECRET_ENV: SECRET}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def broker(server, environ=None, **config):
    settings = dict(live=True, base_url=server.base_url, timeout_ms=300, retries=1,
                    retry_backoff_s=0.0, rate_limit_ms=1)  # fmt: skip
    settings.update(config)
    return LiveBroker(
        LiveConfig(**settings), SYMBOLS, environ=env() if environ is None else environ
    )


def order(symbol, qty, price=100.0, reduce_only=False, ts=DECIDED):
    return Order(client_order_id("acct1", ts, symbol), ts, symbol, qty, price, reduce_only)


def posts(server):
    return [r["params"] for r in server.order_requests]


# ---------------------------------------------------------------------- the opt-ins
@pytest.mark.parametrize(
    ("live", "flag"), [(False, "1"), (True, None), (True, "0"), (True, "true"), (False, None)]
)
def test_nothing_is_sent_without_both_opt_ins(server, live, flag):
    with pytest.raises(LiveTradingDisabled, match=r"live: true.*PERPFOLIO_LIVE=1.*no order"):
        broker(server, environ=env(**{LIVE_ENV: flag}), live=live)
    assert server.requests == [] and server.order_requests == []


def test_submit_checks_the_opt_ins_again_before_any_request(server, monkeypatch):
    environ = env()
    live = broker(server, environ=environ)
    del environ[LIVE_ENV]
    with pytest.raises(LiveTradingDisabled, match="got unset"):
        live.submit([order("BTC", 0.01)])
    assert server.requests == [] and server.order_requests == []
    # The process environment is the default, and it is read too.
    monkeypatch.delenv(LIVE_ENV, raising=False)
    config = LiveConfig(live=True, base_url=server.base_url)
    with pytest.raises(LiveTradingDisabled):
        LiveBroker(config, SYMBOLS)
    assert server.requests == []


def test_keys_come_from_the_environment_only(server):
    with pytest.raises(LiveTradingDisabled, match=f"needs {API_SECRET_ENV} set"):
        broker(server, environ=env(**{API_SECRET_ENV: None}))
    with pytest.raises(LiveTradingDisabled, match=f"{API_KEY_ENV} and {API_SECRET_ENV}"):
        broker(server, environ=env(**{API_KEY_ENV: "", API_SECRET_ENV: None}))
    assert server.requests == []


def test_config_is_strict():
    assert LiveConfig.from_mapping({"live": True, "demo": True}) == LiveConfig(live=True, demo=True)
    with pytest.raises(ValueError, match="live must be true or false"):
        LiveConfig.from_mapping({"live": "true"})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['api_key'\]"):
        LiveConfig.from_mapping({"live": True, "api_key": "x"})
    with pytest.raises(ValueError, match="loopback"):
        LiveConfig(live=True, base_url="http://10.0.0.1:8080")


# ---------------------------------------------------------------------- orders
def test_orders_go_in_with_side_quantity_and_client_order_id(server):
    btc, eth = order("BTC", 0.01), order("ETH", -0.5)
    results = broker(server).submit([btc, eth])
    sent = posts(server)
    fields = ["symbol", "side", "type", "quantity", "newClientOrderId"]
    assert [[p[f] for f in fields] for p in sent] == [
        ["BTCUSDT", "BUY", "MARKET", "0.01", btc.client_order_id],
        ["ETHUSDT", "SELL", "MARKET", "0.5", eth.client_order_id],
    ]
    assert all("reduceOnly" not in p for p in sent)
    assert {r["host"] for r in server.order_requests} == {"fapi.binance.com"}
    assert [r.status for r in results] == [PLACED, PLACED]
    assert [r.filled_qty for r in results] == [0.01, -0.5]
    assert results[0].average_price == server.price("BTC")
    assert results[1].average_price == server.price("ETH")
    assert [r.exchange_order_id for r in results] == [str(o["orderId"]) for o in server.orders]


def test_resending_the_same_ids_never_trades_twice(server):
    live = broker(server)
    orders = [order("BTC", 0.01), order("ETH", -0.5)]
    first = live.submit(orders)
    again = live.submit(orders)
    assert [r.status for r in again] == [ALREADY_SUBMITTED, ALREADY_SUBMITTED]
    assert [(r.exchange_order_id, r.filled_qty) for r in again] == [
        (r.exchange_order_id, r.filled_qty) for r in first
    ]
    assert len(server.order_requests) == 2  # the second submission looked the ids up only
    ids = [o["clientOrderId"] for o in server.orders]
    assert sorted(ids) == sorted(o.client_order_id for o in orders)
    assert float(server.positions["BTC"].qty) == 0.01


def test_a_lost_answer_is_resent_and_minus_4116_counts_as_submitted(server):
    btc = order("BTC", 0.02)
    server.inject("POST order", "lost")  # the order goes in; its answer comes after the timeout
    (result,) = broker(server).submit([btc])
    codes = [r["code"] for r in server.order_requests]
    assert codes == [None, -4116]
    assert [p["newClientOrderId"] for p in posts(server)] == [btc.client_order_id] * 2
    assert result.status == ALREADY_SUBMITTED
    assert result.filled_qty == 0.02 and result.average_price == server.price("BTC")
    assert [o["clientOrderId"] for o in server.orders] == [btc.client_order_id]
    assert float(server.positions["BTC"].qty) == 0.02


def test_no_answer_at_all_raises_and_says_a_resend_is_safe(server):
    server.inject("POST order", "timeout", times=2)
    with pytest.raises(
        LiveBrokerError,
        match=r"no answer after 2 attempt.*unknown: re-submitting the same client order id",
    ):
        broker(server).submit([order("BTC", 0.01)])


def test_exchange_refusals_are_reported_per_order(server):
    close_nothing = order("BTC", -0.01, reduce_only=True)
    tiny = order("ETH", 0.01)  # 0.01 ETH is about 28 USDT: above 7.5
    results = broker(server).submit([close_nothing, tiny])
    assert [r.status for r in results] == [REJECTED, PLACED]
    assert results[0].reason.startswith('{"code": -2022') and results[0].filled_qty == 0.0
    assert posts(server)[0]["reduceOnly"] == "true"
    assert math.isnan(results[0].average_price)


def test_orders_it_has_not_been_tested_with_are_refused_before_sending(server):
    live = broker(server)
    good = order("BTC", 0.01)
    later = np.datetime64("2024-01-02T06:00")
    bad = [
        (order("SOL", 1.0), "symbol 'SOL' is not traded"),
        (order("BTC", 0.0015, ts=later), "not a whole multiple of the lot size 0.001"),
        (order("ETH", 0.015), "not a whole multiple of the lot size 0.01"),
        (order("ETH", float("nan")), "qty nan is zero or not finite"),
        (order("ETH", 0.0), "qty 0.0 is zero"),
        (Order("x" * 37, later, "BTC", 0.01, 1.0), "1-36 of"),
        (Order("a b", later, "BTC", 0.01, 1.0), "1-36 of"),
        (order("ETH", 0.01, price=float("inf")), "reference_price inf not positive"),
        (good, "repeated in one submission"),
    ]
    for wrong, message in bad:
        with pytest.raises(LiveOrderRefused, match=message):
            live.submit([good, wrong])
    assert server.order_requests == []
    unlisted = LiveBroker(LiveConfig(live=True, base_url=server.base_url, rate_limit_ms=1),
                          ("BTC", "DOGE"), environ=env())  # fmt: skip
    with pytest.raises(LiveOrderRefused, match="DOGE: DOGE/USDT:USDT is not listed"):
        unlisted.market_rules()


# ---------------------------------------------------------------------- account and rules
def test_market_rules_come_from_the_lot_size_and_min_notional_filters(server):
    rules = broker(server).market_rules()
    assert rules.symbols == SYMBOLS
    np.testing.assert_array_equal(rules.lot_size, [0.001, 0.01])
    np.testing.assert_array_equal(rules.min_notional, [7.5, 7.5])


def test_account_state_from_positions_and_balance(server):
    live = broker(server)
    flat = live.account(10_000.0)
    assert flat.cash == 10_000.0 and not flat.qty.any() and not flat.entry_price.any()
    np.testing.assert_array_equal(flat.mark, [server.mark_price(s) for s in SYMBOLS])
    live.submit([order("BTC", 0.01), order("ETH", -0.5)])
    price = np.array([server.price(s) for s in SYMBOLS])
    fees = FEE * (0.01 * price[0] + 0.5 * price[1])
    server.now = NOW + pd.Timedelta(hours=3)
    mark = np.array([server.mark_price(s) for s in SYMBOLS])
    assert not np.allclose(mark, price)
    state = live.account(12_000.0, entry_basis=np.array([0.001, -0.002]))
    np.testing.assert_array_equal(state.qty, [0.01, -0.5])
    np.testing.assert_allclose(state.entry_price, price, rtol=1e-12)
    np.testing.assert_array_equal(state.mark, mark)
    np.testing.assert_array_equal(state.entry_basis, [0.001, -0.002])
    assert state.cash == pytest.approx(10_000.0 - fees, abs=1e-9)
    assert state.initial_equity == 12_000.0
    upnl = 0.01 * (mark[0] - price[0]) - 0.5 * (mark[1] - price[1])
    assert state.equity == pytest.approx(10_000.0 - fees + upnl, abs=1e-9)
    # Closing BTC (reduce only) realizes its PnL into the wallet.
    exit_price = server.price("BTC")
    ts = np.datetime64("2024-01-02T08:00")
    (closed,) = live.submit([order("BTC", -0.01, reduce_only=True, ts=ts)])
    assert closed.status == PLACED and closed.average_price == exit_price
    after = live.account(12_000.0)
    np.testing.assert_array_equal(after.qty, [0.0, -0.5])
    assert after.entry_price[0] == 0.0
    realized = 0.01 * (exit_price - price[0]) - FEE * 0.01 * exit_price
    assert after.cash == pytest.approx(state.cash + realized, abs=1e-9)


def test_a_position_in_a_symbol_it_does_not_trade_is_an_error(server):
    broker(server).submit([order("ETH", 0.5)])
    btc_only = LiveBroker(LiveConfig(live=True, base_url=server.base_url, rate_limit_ms=1),
                          ("BTC",), environ=env())  # fmt: skip
    with pytest.raises(LiveBrokerError, match=r"open position in ETH/USDT:USDT \(0.5\)"):
        btc_only.account(10_000.0)


# ---------------------------------------------------------------------- credentials
def test_bad_signatures_and_keys_are_rejected(server):
    wrong_secret = broker(server, environ=env(**{API_SECRET_ENV: "not-the-secret-0000"}))
    with pytest.raises(LiveBrokerError, match="-1022.*Signature for this request is not valid"):
        wrong_secret.account(10_000.0)
    with pytest.raises(LiveBrokerError, match="-1022"):
        wrong_secret.submit([order("BTC", 0.01)])
    wrong_key = broker(server, environ=env(**{API_KEY_ENV: "not-the-key-0000"}))
    with pytest.raises(LiveBrokerError, match="-2015"):
        wrong_key.submit([order("BTC", 0.01)])
    assert server.orders == [] and all(r["code"] is not None for r in server.order_requests)
    # The server's own checks, without ccxt: a tampered signature and a missing key header.
    url = f"{server.base_url}/fapi.binance.com/fapi/v1/order"
    body = "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.01&timestamp=1&signature=00"
    for headers, status, code in (({"X-MBX-APIKEY": KEY}, 400, -1022), ({}, 401, -2014)):
        request = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(request, timeout=2)
        assert err.value.code == status and json.loads(err.value.read())["code"] == code
    assert server.orders == []


def test_keys_never_reach_logs_errors_repr_or_results(server, caplog):
    caplog.set_level(logging.DEBUG)
    live = broker(server)
    results = live.submit([order("BTC", 0.01), order("ETH", -0.01, reduce_only=True)])
    live.account(10_000.0)
    errors = []
    for bad in (env(**{API_SECRET_ENV: "x" + SECRET}), env(**{API_KEY_ENV: KEY + "x"})):
        with pytest.raises(LiveBrokerError) as err:
            broker(server, environ=bad).submit([order("BTC", 0.01)])
        errors.append(str(err.value))
    texts = [caplog.text, repr(live), str(live), repr(results), *errors]
    assert "X-MBX-APIKEY" in caplog.text and "***" in caplog.text  # ccxt's request lines
    for text in texts:
        assert KEY not in text and SECRET not in text
    assert repr(live) == f"LiveBroker(symbols=('BTC', 'ETH'), endpoint='{live.endpoint}')"


# ---------------------------------------------------------------------- endpoints
def test_demo_trading_uses_binances_demo_endpoints(server):
    demo = LiveBroker(LiveConfig(live=True, demo=True), SYMBOLS, environ=env())
    assert demo.endpoint == "https://demo-fapi.binance.com/fapi/v1"
    production = LiveBroker(LiveConfig(live=True), SYMBOLS, environ=env())
    assert production.endpoint == "https://fapi.binance.com/fapi/v1"
    # Demo routed to the local exchange: ccxt's demo URLs, each host kept as a path part.
    (result,) = broker(server, demo=True).submit([order("BTC", 0.01)])
    assert result.status == PLACED
    assert [r["host"] for r in server.order_requests] == ["demo-fapi.binance.com"]
