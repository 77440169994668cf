"""The paper broker: fills priced by the environment's cost models, the ledger's accounting,
idempotent submission and bar processing, and parity with the training simulator."""

from dataclasses import replace

import duckdb
import numpy as np
import pytest

from serving.account import Order
from serving.ledger import client_order_id
from serving.paper import PaperBar, PaperBroker, fill_positions
from training.actions import actions_for_weights
from training.costs import FeeModel, SlippageModel, funding_cash_flow
from training.env_config import EnvConfig
from training.market import MarketData
from training.simulator import BatchedSimulator

T0 = np.datetime64("2024-03-01T00:00", "us")
HOUR = np.timedelta64(1, "h")
CASH = 10_000.0


def bar(
    k: int,
    open_: list[float],
    mark: list[float] | None = None,
    volume: list[float] | None = None,
    funding: list[float] | None = None,
    basis: list[float] | None = None,
) -> PaperBar:
    """Bar ``k`` (opening at T0 + k hours) of len(open_) assets."""
    n = len(open_)
    return PaperBar(
        open_time=T0 + k * HOUR,
        close_time=T0 + (k + 1) * HOUR,
        open=np.array(open_, float),
        mark=np.array(open_ if mark is None else mark, float),
        volume=np.array(volume or [1_000.0] * n, float),
        funding_rate=np.array(funding or [0.0] * n, float),
        basis=np.array(basis or [0.0] * n, float),
    )


def order(broker: PaperBroker, k: int, symbol: str, qty: float, **kw) -> Order:
    """An order decided at the close of bar ``k``."""
    ts = T0 + (k + 1) * HOUR
    return Order(client_order_id(broker.account_id, ts, symbol), ts, symbol, qty, 100.0, **kw)


@pytest.fixture
def broker(tmp_path):
    with PaperBroker(tmp_path / "ledger.duckdb", "test", ("BTC",), CASH) as b:
        yield b


def rows(broker: PaperBroker, table: str) -> int:
    return broker.con.execute(f"SELECT count(*) FROM serving.{table}").fetchone()[0]


def test_client_order_id_is_deterministic_and_fits_binance():
    ts = np.datetime64("2024-03-01T13:00")
    cid = client_order_id("paper", ts, "BTCUSDT")
    assert cid == "pf-paper-20240301T1300-BTCUSDT"
    assert (
        client_order_id("paper", np.datetime64("2024-03-01T13:00:00.000000000"), "BTCUSDT") == cid
    )
    assert len(client_order_id("paper", ts, "BTC/USDT:USDT")) == 36
    with pytest.raises(ValueError, match="36"):
        client_order_id("paper2", ts, "BTC/USDT:USDT")
    with pytest.raises(ValueError, match="no '-'"):
        client_order_id("pa-per", ts, "BTC")
    with pytest.raises(ValueError, match="whole minute"):
        client_order_id("paper", np.datetime64("2024-03-01T13:00:30"), "BTC")
    with pytest.raises(ValueError, match="BTC USDT"):
        client_order_id("paper", ts, "BTC USDT")
    assert client_order_id("paper", ts, "BTCUSDT", leg=0) == cid
    assert client_order_id("paper", ts, "BTCUSDT", leg=2) == cid + ".2"
    with pytest.raises(ValueError, match="negative"):
        client_order_id("paper", ts, "BTCUSDT", leg=-1)


def test_a_new_account_is_flat_with_its_initial_cash(broker):
    account = broker.account(np.array([100.0]))
    assert (account.cash, account.equity, account.initial_equity) == (CASH, CASH, CASH)
    np.testing.assert_array_equal(account.qty, [0.0])
    assert broker.last_bar() is None


def test_a_fill_pays_the_env_fee_and_slippage_at_the_next_open(broker):
    broker.fill_pending(bar(0, [99.0]))
    broker.submit([order(broker, 0, "BTC", 2.0)])
    (fill,) = broker.fill_pending(bar(1, [100.0], mark=[101.0], volume=[1_000.0]))
    traded, quote_volume = np.array([200.0]), np.array([100_000.0])
    assert fill.price == 100.0 and fill.qty == 2.0
    assert fill.fee == FeeModel().fee(traded)[0] == pytest.approx(0.1, rel=1e-12)
    slippage = traded[0] * SlippageModel().rate(traded, quote_volume)[0]
    assert fill.slippage == slippage
    # 200 x (1 bp half spread + 0.005 x sqrt(200 / 100,000))
    assert fill.slippage == pytest.approx(200 * (0.0001 + 0.005 * 0.002**0.5), rel=1e-12)
    account = broker.account(np.array([101.0]))
    assert account.cash == pytest.approx(CASH - 0.1 - 0.0647213595499958, rel=1e-13)
    assert account.entry_price[0] == 100.0
    assert account.equity == account.cash + 2.0 * (101.0 - 100.0)
    (snapshot,) = broker.con.execute(
        "SELECT cash, equity, fees, slippage, traded_notional FROM serving.equity WHERE ts = ?",
        [(T0 + 2 * HOUR).astype(object)],
    ).fetchall()
    assert snapshot == pytest.approx((account.cash, account.equity, 0.1, slippage, 200.0))
    assert broker.status([fill.client_order_id]) == {fill.client_order_id: "filled"}


def test_a_round_trip_realizes_the_price_move_less_costs(tmp_path):
    free = PaperBroker(
        tmp_path / "l.duckdb", "rt", ("BTC",), CASH, FeeModel(0.0, 0.0), SlippageModel(0.0, 0.0)
    )
    free.fill_pending(bar(0, [100.0]))
    free.submit([order(free, 0, "BTC", 2.0)])
    free.fill_pending(bar(1, [100.0]))
    free.submit([order(free, 1, "BTC", -2.0)])
    (fill,) = free.fill_pending(bar(2, [110.0], mark=[120.0]))
    assert fill.realized_pnl == 20.0
    account = free.account(np.array([120.0]))
    assert account.cash == CASH + 20.0 and account.equity == CASH + 20.0
    assert account.qty[0] == 0.0 and account.entry_price[0] == 0.0

    costly = PaperBroker(tmp_path / "l.duckdb", "rt2", ("BTC",), CASH)
    costly.fill_pending(bar(0, [100.0]))
    costly.submit([order(costly, 0, "BTC", 2.0)])
    buy = costly.fill_pending(bar(1, [100.0]))[0]
    costly.submit([order(costly, 1, "BTC", -2.0)])
    sell = costly.fill_pending(bar(2, [110.0]))[0]
    costs = buy.fee + buy.slippage + sell.fee + sell.slippage
    assert costly.account(np.array([110.0])).cash == pytest.approx(CASH + 20.0 - costs, rel=1e-14)
    assert sell.fee == pytest.approx(0.0005 * 220.0, rel=1e-12)


def test_average_entry_after_adding_a_partial_close_and_a_flip(tmp_path):
    b = PaperBroker(
        tmp_path / "l.duckdb", "avg", ("BTC",), CASH, FeeModel(0.0, 0.0), SlippageModel(0.0, 0.0)
    )
    b.fill_pending(bar(0, [100.0], basis=[0.001]))
    steps = [  # (qty, fill price, basis at the decision, entry after, realized, position after)
        (2.0, 100.0, 0.003, 100.0, 0.0, 2.0),
        (2.0, 110.0, 0.0, 105.0, 0.0, 4.0),  # add: (2 x 100 + 2 x 110) / 4
        (-1.0, 120.0, 0.0, 105.0, 15.0, 3.0),  # partial close keeps the entry
        (-5.0, 90.0, 0.0, 90.0, -45.0, -2.0),  # flip: closes 3 at 90, opens 2 short at 90
    ]
    cash = CASH
    for k, (qty, price, next_basis, entry, realized, position) in enumerate(steps):
        b.submit([order(b, k, "BTC", qty)])
        (fill,) = b.fill_pending(bar(k + 1, [price], basis=[next_basis]))
        cash += realized
        account = b.account(np.array([price]))
        assert (fill.realized_pnl, account.entry_price[0], account.qty[0]) == (
            realized,
            entry,
            position,
        )
        assert account.cash == pytest.approx(cash, rel=1e-15)
    # entry basis: 2 at 0.001 (bar 0), 2 at 0.003 (bar 1); kept on the partial close; reset by
    # the flip to the basis of its decision bar (bar 3: 0)
    assert b.account(np.array([90.0])).entry_basis[0] == 0.0
    after_add = b.con.execute(
        "SELECT entry_basis FROM serving.positions WHERE ts = ?", [(T0 + 3 * HOUR).astype(object)]
    ).fetchone()[0]
    assert after_add == pytest.approx(0.002, rel=1e-12)


def test_fill_positions_matches_the_simulators_cases():
    after = fill_positions(
        np.array([0.0, 2.0, 2.0, 2.0, -3.0]),
        np.array([0.0, 100.0, 100.0, 100.0, 50.0]),
        np.zeros(5),
        np.array([1.0, 1.0, -2.0, -3.0, 1.0]),
        np.array([10.0, 130.0, 90.0, 80.0, 40.0]),
        np.zeros(5),
    )
    np.testing.assert_array_equal(after.qty, [1.0, 3.0, 0.0, -1.0, -2.0])
    np.testing.assert_array_equal(after.entry_price, [10.0, 110.0, 0.0, 80.0, 50.0])
    np.testing.assert_array_equal(after.realized_pnl, [0.0, 0.0, -20.0, -40.0, 10.0])


def test_funding_settles_at_the_mark_and_longs_pay_a_positive_rate(tmp_path):
    b = PaperBroker(
        tmp_path / "l.duckdb",
        "fund",
        ("BTC", "ETH"),
        CASH,
        FeeModel(0.0, 0.0),
        SlippageModel(0.0, 0.0),
    )
    b.fill_pending(bar(0, [100.0, 50.0]))
    b.submit([order(b, 0, "BTC", 2.0), order(b, 0, "ETH", -4.0)])
    b.fill_pending(bar(1, [100.0, 50.0]))
    rate = [0.0001, 0.0001]
    b.fill_pending(bar(2, [100.0, 50.0], mark=[120.0, 40.0], funding=rate))
    expected = funding_cash_flow(np.array([2.0, -4.0]), np.array([120.0, 40.0]), np.array(rate))
    np.testing.assert_allclose(expected, [-0.024, 0.016], rtol=1e-12)  # long pays, short gets
    flows = b.con.execute(
        "SELECT symbol, cash_flow FROM serving.funding ORDER BY symbol"
    ).fetchall()
    assert flows == [("BTC", expected[0]), ("ETH", expected[1])]
    account = b.account(np.array([120.0, 40.0]))
    assert account.cash == pytest.approx(CASH - 0.024 + 0.016, rel=1e-15)
    unrealized = 2.0 * 20.0 + (-4.0) * (-10.0)
    assert account.equity == pytest.approx(account.cash + unrealized, rel=1e-15)
    # a negative rate: longs receive
    b.fill_pending(bar(3, [100.0, 50.0], mark=[100.0, 50.0], funding=[-0.001, 0.0]))
    assert b.account(np.array([100.0, 50.0])).cash == pytest.approx(CASH - 0.008 + 0.2, rel=1e-14)
    assert rows(b, "funding") == 3  # both symbols on the first settlement, BTC on the second


def test_account_as_of_a_bar_and_equity_equals_cash_plus_unrealized(broker):
    broker.fill_pending(bar(0, [100.0]))
    broker.submit([order(broker, 0, "BTC", 3.0)])
    broker.fill_pending(bar(1, [100.0], mark=[105.0]))
    broker.fill_pending(bar(2, [105.0], mark=[90.0]))
    then = broker.account(np.array([105.0]), T0 + 2 * HOUR)
    before = broker.account(np.array([105.0]), T0 + 1 * HOUR)
    assert before.qty[0] == 0.0 and then.qty[0] == 3.0
    now = broker.account(np.array([90.0]))
    assert now.equity == now.cash + 3.0 * (90.0 - 100.0)
    stored = broker.con.execute(
        "SELECT equity FROM serving.equity ORDER BY ts DESC LIMIT 1"
    ).fetchone()[0]
    assert stored == now.equity
    np.testing.assert_allclose(now.weights, [3.0 * 90.0 / now.equity], rtol=1e-15)
    times, equity = broker.equity_curve()
    np.testing.assert_array_equal(times, T0 + np.arange(1, 4) * HOUR)
    assert equity[0] == CASH and equity[-1] == now.equity
    assert equity[1] == pytest.approx(equity[2] + 3.0 * 15.0, rel=1e-15)  # 105 -> 90, no trade


def test_resubmitting_and_refilling_never_trade_twice(broker):
    broker.fill_pending(bar(0, [100.0]))
    first = order(broker, 0, "BTC", 2.0)
    assert broker.submit([first]) == [first]
    changed = replace(first, qty=5.0)
    assert broker.submit([changed]) == [first]  # the stored order wins
    assert rows(broker, "orders") == 1
    fills = broker.fill_pending(bar(1, [100.0]))
    cash = broker.account(np.array([100.0])).cash
    assert broker.fill_pending(bar(1, [100.0])) == fills
    assert broker.fill_pending(bar(0, [100.0])) == []  # an older processed bar: no-op
    assert broker.submit([first]) == [first]  # after the fill: still a no-op
    assert broker.account(np.array([100.0])).cash == cash
    assert (rows(broker, "fills"), rows(broker, "equity"), rows(broker, "positions")) == (1, 2, 2)


def test_submit_refuses_orders_it_cannot_trade(broker):
    with pytest.raises(ValueError, match="call fill_pending"):
        broker.submit([order(broker, 0, "BTC", 1.0)])  # the account was never marked
    broker.fill_pending(bar(0, [100.0]))
    with pytest.raises(ValueError, match="ETH"):
        broker.submit([order(broker, 0, "ETH", 1.0)])
    good = order(broker, 0, "BTC", 1.0)
    with pytest.raises(ValueError, match="id should be 'pf-test-20240301T0100-BTC'"):
        broker.submit([replace(good, client_order_id="pf-x-20240301T0100-BTC")])
    with pytest.raises(ValueError, match="non-zero"):
        broker.submit([replace(good, qty=float("nan"))])
    with pytest.raises(ValueError, match="decided at"):
        broker.submit([order(broker, 1, "BTC", 1.0)])  # a bar the account is not marked at
    with pytest.raises(ValueError, match="twice"):
        broker.submit([good, good])
    assert rows(broker, "orders") == 0


def test_bars_go_in_order(broker):
    broker.fill_pending(bar(0, [100.0]))
    with pytest.raises(ValueError, match="last marked at 2024-03-01T01:00"):
        broker.fill_pending(bar(2, [100.0]))
    with pytest.raises(ValueError, match="mark of the bar closing at .* BTC"):
        broker.fill_pending(bar(1, [100.0], mark=[float("nan")]))
    assert rows(broker, "equity") == 1


def test_reduce_only_orders_only_reduce(broker):
    broker.fill_pending(bar(0, [100.0]))
    broker.submit([order(broker, 0, "BTC", -1.0, reduce_only=True)])
    assert broker.fill_pending(bar(1, [100.0])) == []
    (cid,) = [o.client_order_id for o in broker.orders()]
    assert broker.status([cid]) == {cid: "rejected: reduce-only with position 0.0"}
    broker.submit([order(broker, 1, "BTC", 2.0)])
    broker.fill_pending(bar(2, [100.0]))
    broker.submit([order(broker, 2, "BTC", -5.0, reduce_only=True)])
    (fill,) = broker.fill_pending(bar(3, [100.0]))
    assert fill.qty == -2.0 and broker.account(np.array([100.0])).qty[0] == 0.0


def test_the_legs_of_a_split_order_fill_as_one_and_share_its_costs(broker):
    broker.fill_pending(bar(0, [100.0]))
    ts = T0 + HOUR
    legs = [
        Order(client_order_id(broker.account_id, ts, "BTC", leg), ts, "BTC", qty, 100.0)
        for leg, qty in enumerate((3.0, 1.0))
    ]
    broker.submit(legs)
    fills = broker.fill_pending(bar(1, [100.0], volume=[1_000.0]))
    assert [f.qty for f in fills] == [3.0, 1.0]
    traded, quote_volume = np.array([400.0]), np.array([100_000.0])
    fee = FeeModel().fee(traded)[0]
    slippage = traded[0] * SlippageModel().rate(traded, quote_volume)[0]  # of the 4 together
    assert [f.fee for f in fills] == pytest.approx([0.75 * fee, 0.25 * fee], rel=1e-12)
    assert sum(f.slippage for f in fills) == pytest.approx(slippage, rel=1e-12)
    assert fills[0].slippage == pytest.approx(3 * fills[1].slippage, rel=1e-12)
    assert broker.account(np.array([100.0])).cash == pytest.approx(CASH - fee - slippage)
    # two reduce-only legs larger together than the position close it, no more
    ts = T0 + 2 * HOUR
    closing = [
        Order(client_order_id(broker.account_id, ts, "BTC", leg), ts, "BTC", -3.0, 100.0, True)
        for leg in range(2)
    ]
    broker.submit(closing)
    first, second = broker.fill_pending(bar(2, [100.0]))
    assert (first.qty, second.qty) == (-3.0, -1.0)
    assert broker.account(np.array([100.0])).qty[0] == 0.0


def test_an_existing_account_must_match(tmp_path):
    path = tmp_path / "l.duckdb"
    PaperBroker(path, "same", ("BTC",), CASH).close()
    with pytest.raises(ValueError, match="symbols"):
        PaperBroker(path, "same", ("BTC", "ETH"), CASH)
    with pytest.raises(ValueError, match="initial_cash"):
        PaperBroker(path, "same", ("BTC",), 5.0)
    con = duckdb.connect(str(path))
    PaperBroker(con, "same", ("BTC",), CASH).close()  # a caller's connection stays open
    assert con.execute("SELECT count(*) FROM serving.accounts").fetchone()[0] == 1
    con.close()


def _market(n_assets: int, n_bars: int, seed: int) -> MarketData:
    """A small hourly market with funding every 4 bars and non-zero basis."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, (n_bars, n_assets)), 0))
    open_ = np.vstack([close[:1], close[:-1]]) * (1 + rng.normal(0, 0.001, close.shape))
    funding = np.zeros_like(close)
    funding[3::4] = rng.normal(0.0001, 0.0002, funding[3::4].shape)
    return MarketData(
        timestamps=np.datetime64("2024-03-01T00:00", "ns") + np.arange(n_bars) * HOUR,
        symbols=("BTC", "ETH")[:n_assets],
        open=open_,
        high=np.maximum(open_, close) * 1.002,
        low=np.minimum(open_, close) * 0.998,
        close=close,
        mark=close * (1 + rng.normal(0, 0.0005, close.shape)),
        volume=rng.uniform(50, 500, close.shape),
        funding_rate=funding,
        hours_to_funding=np.full(close.shape, 4.0),
        basis=rng.normal(0, 0.001, close.shape),
        features=np.zeros((n_bars, n_assets, 1), np.float32),
        feature_names=("zero",),
    )


@pytest.mark.parametrize("n_assets", [1, 2])
def test_parity_with_the_training_simulator(tmp_path, n_assets):
    """The broker and ``BatchedSimulator`` (B = 1) trade the same targets to the same account."""
    market = _market(n_assets, 14, seed=n_assets)
    config = EnvConfig(window=1, episode_length=None, random_start=False)
    sim = BatchedSimulator(market, config, 1)
    sim.reset_env(0, np.random.default_rng(0))
    sim.refresh()
    plan = [1.0, 2.0, 0.5, -1.0, -1.0, 0.0, 1.5, 1.5, -0.5, 0.25, 1.0, -2.0, 0.0]
    weights = np.array(plan)[:, None] * np.array([1.0, -0.5])[:n_assets]
    broker = PaperBroker(
        tmp_path / "l.duckdb",
        "parity",
        market.symbols,
        config.initial_equity,
        config.fees,
        config.slippage,
    )
    broker.fill_pending(PaperBar.from_market(market, 0))
    funded = 0
    for t, w in enumerate(weights):
        account = broker.account(market.mark[t], market.close_times[t])
        assert account.equity == pytest.approx(sim.equity[0], rel=1e-9)
        delta = w * account.equity / market.close[t] - account.qty
        ts = market.close_times[t]
        broker.submit(
            [
                Order(client_order_id("parity", ts, s), ts, s, float(delta[i]), market.close[t, i])
                for i, s in enumerate(market.symbols)
                if delta[i] != 0.0
            ]
        )
        _, liquidated, info = sim.step(actions_for_weights(w[None], config))
        assert not liquidated[0]
        fills = broker.fill_pending(PaperBar.from_market(market, t + 1))
        funded += int(np.count_nonzero(market.funding_rate[t + 1]) > 0)
        after = broker.account(market.mark[t + 1])
        assert after.cash == pytest.approx(sim.cash[0], rel=1e-9, abs=0)
        assert after.equity == pytest.approx(sim.equity[0], rel=1e-9, abs=0)
        np.testing.assert_allclose(after.qty, sim.qty[0], rtol=1e-9)
        np.testing.assert_allclose(after.entry_price, sim.entry[0], rtol=1e-9)
        np.testing.assert_allclose(after.entry_basis, sim.entry_basis[0], rtol=1e-9, atol=1e-15)
        assert sum(f.fee for f in fills) == pytest.approx(info["fees"][0], rel=1e-9)
        assert sum(f.slippage for f in fills) == pytest.approx(info["slippage"][0], rel=1e-9)
        assert sum(f.realized_pnl for f in fills) == pytest.approx(
            info["asset_realized"][0].sum(), rel=1e-9, abs=1e-9
        )
    assert funded == 3  # settlements at bars 3, 7, 11 while positioned
    assert abs(sim.equity[0] - config.initial_equity) > 1.0  # the account did move
