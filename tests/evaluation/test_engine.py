"""The backtest engine: hand-computed equity, hold mask, batching, policy path, liquidation, DB."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import duckdb
import numpy as np
import pytest
import torch

from evaluation.engine import PolicyActor, ScheduledWeights, backtest, write_ledgers
from evaluation.ledger import Ledger
from evaluation.strategies import BASELINES, equal_weight
from tests.support.markets import make_flat_market, make_synthetic_market, to_market
from training.costs import FeeModel, SlippageModel
from training.env import PerpPortfolioEnv
from training.env_config import EnvConfig, RandomizationConfig
from training.market import MarketData
from training.observation import FeatureNormalizer
from training.simulator import BatchedSimulator

WINDOW = 4
FREE = EnvConfig(
    window=WINDOW,
    fees=FeeModel(taker_rate=0.0, maker_rate=0.0),
    slippage=SlippageModel(half_spread=0.0, impact_coef=0.0),
)


def walk_market(n_bars: int = 80, gap: bool = False, funding: bool = False) -> MarketData:
    """Two-asset random walk; ``gap``: opens differ from the previous close, marks from closes."""
    rng = np.random.default_rng(1)
    fields = make_flat_market(n_assets=2, n_bars=n_bars)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, (n_bars, 2)), axis=0))
    open_ = np.vstack([close[:1], close[:-1]])
    mark = close
    if gap:
        open_ = open_ * np.exp(rng.normal(0, 0.002, close.shape))
        mark = close * (1 + rng.normal(0, 0.001, close.shape))
    fields.update(
        open=open_,
        close=close,
        mark=mark,
        high=np.maximum(open_, close) * 1.001,
        low=np.minimum(open_, close) * 0.999,
    )
    if funding:
        settles = (np.arange(n_bars) % 8 == 7)[:, None]
        fields["funding_rate"] = np.where(settles, rng.normal(1e-4, 2e-4, (n_bars, 2)), 0.0)
    return to_market(fields)


def constant(name: str, market: MarketData, w: list[float]) -> ScheduledWeights:
    """The same targets at every bar (a rebalance at every decision)."""
    return ScheduledWeights(name, np.tile(np.asarray(w, dtype=float), (market.n_bars, 1)))


def hand_equity(
    market: MarketData, w: np.ndarray, first_bar: int, fee: float, spread: float, e0: float
) -> dict[str, np.ndarray]:
    """Equity of rebalancing to weights ``w`` at every close, written out bar by bar."""
    equity, fees, funding, turnover = [e0], [], [], []
    q_prev = np.zeros(market.n_assets)
    for t in range(first_bar - 1, market.n_bars - 1):
        e = equity[-1]
        q = w * e / market.close[t]
        traded = np.abs(q - q_prev) * market.open[t + 1]
        pnl = q_prev @ (market.open[t + 1] - market.mark[t]) + q @ (
            market.mark[t + 1] - market.open[t + 1]
        )
        flow = -(q * market.mark[t + 1] * market.funding_rate[t + 1]).sum()
        equity.append(e + pnl - (fee + spread) * traded.sum() + flow)
        fees.append(fee * traded.sum())
        funding.append(flow)
        turnover.append(traded.sum() / e)
        q_prev = q
    return {
        "equity": np.array(equity),
        "fees": np.array(fees),
        "funding": np.array(funding),
        "turnover": np.array(turnover),
    }


def test_constant_weights_without_costs_compound_the_weighted_returns():
    market = walk_market()
    w = np.array([0.6, -0.3])
    ledger = backtest(market, FREE, None, [constant("c", market, w)], first_bar=10)["c"]
    growth = 1.0 + (market.close[10:] / market.close[9:-1] - 1.0) @ w
    expected = FREE.initial_equity * np.r_[1.0, np.cumprod(growth)]
    np.testing.assert_allclose(ledger.equity, expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(ledger.fees, 0.0, atol=0)
    assert ledger.start_time == market.close_times[9]
    np.testing.assert_array_equal(ledger.close_times, market.close_times[10:])
    short = backtest(market, FREE, None, [constant("c", market, w)], first_bar=10, stop=30)["c"]
    np.testing.assert_array_equal(short.equity, ledger.equity[:21])


def test_constant_weights_with_fees_slippage_and_funding_match_the_hand_ledger():
    market = walk_market(gap=True, funding=True)
    fee, spread = 0.0005, 0.0002
    config = replace(
        FREE,
        fees=FeeModel(taker_rate=fee),
        slippage=SlippageModel(half_spread=spread, impact_coef=0.0),
    )
    w = np.array([0.8, -0.5])
    ledger = backtest(market, config, None, [constant("c", market, w)], first_bar=6)["c"]
    hand = hand_equity(market, w, 6, fee, spread, config.initial_equity)
    np.testing.assert_allclose(ledger.equity, hand["equity"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(ledger.fees, hand["fees"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(ledger.slippage, hand["fees"] * spread / fee, rtol=0, atol=1e-9)
    np.testing.assert_allclose(ledger.funding, hand["funding"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(ledger.turnover, hand["turnover"], rtol=0, atol=1e-12)
    assert np.count_nonzero(ledger.funding) > 5
    np.testing.assert_allclose(ledger.asset_pnl.sum(axis=1), np.diff(ledger.equity), atol=1e-9)


def test_hold_mask_keeps_quantities_and_none_changes_nothing():
    market = make_synthetic_market(n_assets=3, n_bars=80)
    config = EnvConfig(window=WINDOW, episode_length=None, random_start=False)
    sims = [BatchedSimulator(market, config, 2) for _ in range(2)]
    rng = np.random.default_rng(0)
    first = rng.uniform(-1, 1, (2, 3))
    for sim in sims:
        sim.step(first)
    qty0 = sims[0].qty.copy()
    hold = np.array([[True, False, True], [False, False, False]])
    second = rng.uniform(-1, 1, (2, 3))
    _, _, held = sims[0].step(second, hold)
    _, _, plain = sims[1].step(second, None)
    np.testing.assert_array_equal(sims[0].qty[hold], qty0[hold])
    assert np.all(sims[0].qty[~hold] != qty0[~hold])
    np.testing.assert_array_equal(sims[0].qty[1], sims[1].qty[1])
    assert np.all(held["asset_fees"][hold] == 0.0) and np.all(held["asset_slippage"][hold] == 0.0)
    unheld = BatchedSimulator(market, config, 2)
    unheld.step(first)
    _, _, none = unheld.step(second, np.zeros((2, 3), dtype=bool))
    for key, value in plain.items():
        np.testing.assert_array_equal(none[key], value, err_msg=key)


def test_per_asset_info_sums_to_the_account_totals():
    market = make_synthetic_market(n_assets=3, n_bars=80)
    sim = BatchedSimulator(market, EnvConfig(window=WINDOW, episode_length=None), 4)
    rng = np.random.default_rng(3)
    settlements = 0
    for _ in range(40):
        _, _, info = sim.step(rng.uniform(-1, 1, (4, 3)))
        for key in ("fees", "slippage", "funding"):
            np.testing.assert_allclose(info[f"asset_{key}"].sum(-1), info[key], atol=1e-9)
        settlements += int(np.count_nonzero(info["asset_funding"]) > 0)
    assert settlements >= 4


def gym_path(
    market: MarketData,
    config: EnvConfig,
    normalizer: FeatureNormalizer,
    first_bar: int,
    act: Callable[[np.ndarray], np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Equity and weights of ``act`` stepped through the gym env one observation at a time, as
    ``evaluation/backtest.py`` runs it: one deterministic episode from ``first_bar - 1``."""
    config = replace(
        config, episode_length=None, random_start=False, randomization=RandomizationConfig()
    )
    env = PerpPortfolioEnv(market, config, normalizer, start=first_bar - config.window)
    obs, info = env.reset(seed=0)
    equity, weights, done = [info["equity"]], [], False
    while not done:
        obs, _, terminated, truncated, info = env.step(act(obs))
        equity.append(info["equity"])
        weights.append(np.asarray(info["weights"], dtype=float))
        done = terminated or truncated
    return np.asarray(equity), np.asarray(weights)


def linear_policy(dim: int, n_assets: int, seed: int = 0):
    """A random deterministic policy: tanh of a fixed linear map, for (D,) or (B, D) inputs."""
    weights = np.random.default_rng(seed).normal(0, 0.05, (dim, n_assets))
    return lambda obs: np.tanh(np.asarray(obs, dtype=np.float64) @ weights)


def all_strategies(market: MarketData, config: EnvConfig) -> list[ScheduledWeights | PolicyActor]:
    """The six baselines and a random policy."""
    sim = BatchedSimulator(market, config, 1)
    act = linear_policy(sim.observations().shape[1], market.n_assets)
    baselines: list[ScheduledWeights | PolicyActor] = [f(market) for f in BASELINES.values()]
    return [*baselines, PolicyActor("policy", act)]


@pytest.fixture(scope="module")
def synthetic() -> tuple[MarketData, EnvConfig, FeatureNormalizer]:
    market = make_synthetic_market(n_assets=4, n_bars=24 * 40)
    config = EnvConfig(window=8, no_trade_band=0.01)
    return market, config, FeatureNormalizer.fit(market.features[:400])


def test_one_batched_run_equals_separate_runs(synthetic):
    market, config, normalizer = synthetic
    strategies = all_strategies(market, config)
    batched = backtest(market, config, normalizer, strategies, first_bar=24 * 31)
    assert list(batched) == [s.name for s in strategies]
    for strategy in strategies:
        alone = backtest(market, config, normalizer, [strategy], first_bar=24 * 31)[strategy.name]
        for field in Ledger.__dataclass_fields__:
            np.testing.assert_array_equal(
                getattr(batched[strategy.name], field), getattr(alone, field), err_msg=field
            )


def test_ledgers_attribute_every_bar_to_assets(synthetic):
    market, config, normalizer = synthetic
    ledgers = backtest(market, config, normalizer, all_strategies(market, config), 24 * 31)
    for ledger in ledgers.values():
        assert not ledger.liquidated.any()
        np.testing.assert_allclose(
            ledger.asset_pnl.sum(axis=1), np.diff(ledger.equity), rtol=0, atol=1e-9
        )
    assert np.abs(ledgers["cash"].equity - config.initial_equity).max() == 0.0
    moved = [n for n, ledger in ledgers.items() if np.ptp(ledger.equity) > 1.0]
    assert sorted(moved) == sorted(set(ledgers) - {"cash"})


def test_policy_row_equals_the_gym_env_path(synthetic):
    market, config, normalizer = synthetic
    strategies = all_strategies(market, config)
    policy = strategies[-1]
    assert isinstance(policy, PolicyActor)
    ledger = backtest(market, config, normalizer, strategies, first_bar=500)["policy"]
    equity, weights = gym_path(market, config, normalizer, 500, policy.act)
    assert len(equity) == len(ledger.equity) == market.n_bars - 500 + 1
    np.testing.assert_allclose(ledger.equity, equity, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ledger.weights, weights, rtol=0, atol=1e-12)
    assert ledger.turnover.sum() > 10.0  # the policy trades


def test_scheduled_equal_weight_equals_the_gym_env_actor_when_rebalanced_every_bar(synthetic):
    market, config, normalizer = synthetic
    ledger = backtest(market, config, None, [equal_weight(market, "1h")], first_bar=100)
    action = np.full(market.n_assets, 1.0 / market.n_assets / config.max_leverage)
    equity, _ = gym_path(market, config, normalizer, 100, lambda _obs: action)
    np.testing.assert_allclose(ledger["equal_weight"].equity, equity, rtol=0, atol=1e-9)


def test_first_decision_takes_the_latest_targets_and_holds_between_rebalances(synthetic):
    market, config, _ = synthetic
    first_bar = 24 * 31 + 5  # not a midnight: the daily schedule's last rebalance came before
    ledgers = backtest(
        market,
        config,
        None,
        [BASELINES["btc_buy_and_hold"](market), BASELINES["equal_weight"](market)],
        first_bar,
    )
    btc = ledgers["btc_buy_and_hold"]
    assert btc.weights[0, 0] == pytest.approx(1.0, abs=0.02)
    np.testing.assert_array_equal(btc.weights[:, 1:], 0.0)
    assert btc.fees[0] > 0 and np.all(btc.fees[1:] == 0.0)
    ew = ledgers["equal_weight"]
    np.testing.assert_allclose(ew.weights[0], 0.25, atol=0.01)
    traded = np.flatnonzero(ew.fees > 0)
    decision_closes = market.close_times[first_bar - 1 : -1].astype(np.int64)
    midnights = np.flatnonzero(decision_closes % (86_400 * 10**9) == 0)
    assert traded[0] == 0 and set(traded[1:]) <= set(midnights)
    assert len(traded) > 3


def test_liquidated_account_stays_flat():
    fields = make_flat_market(n_assets=1, n_bars=40)
    fields["low"][20] = 50.0  # a wick 50% down: 3x long is wiped out
    market = to_market(fields)
    config = EnvConfig(window=WINDOW)
    strategies = [constant("levered", market, [3.0]), constant("cash", market, [0.0])]
    ledgers = backtest(market, config, None, strategies, first_bar=10)
    levered = ledgers["levered"]
    k = 20 - 10
    np.testing.assert_array_equal(np.flatnonzero(levered.liquidated), [k])
    assert levered.equity[k + 1] < 0.1 * config.initial_equity
    np.testing.assert_array_equal(levered.weights[k:], 0.0)
    np.testing.assert_array_equal(levered.equity[k + 1 :], levered.equity[k + 1])
    np.testing.assert_array_equal(levered.fees[k + 1 :], 0.0)
    np.testing.assert_array_equal(levered.turnover[k + 1 :], 0.0)
    assert levered.weights[k - 1, 0] == pytest.approx(3.0)
    np.testing.assert_array_equal(ledgers["cash"].equity, config.initial_equity)


def test_bad_strategy_sets_are_refused():
    market = walk_market()
    a = constant("a", market, [0.5, 0.5])
    with pytest.raises(ValueError, match="'a': duplicate"):
        backtest(market, FREE, None, [a, a], first_bar=10)
    short = ScheduledWeights("short", a.targets[:-1])
    with pytest.raises(ValueError, match="'short': targets have shape"):
        backtest(market, FREE, None, [short], first_bar=10)
    with pytest.raises(ValueError, match="normalizer"):
        backtest(market, FREE, None, [PolicyActor("p", lambda o: o[:, :2])], first_bar=10)
    with pytest.raises(ValueError, match="first_bar 2"):
        backtest(market, FREE, None, [a], first_bar=2)


def test_write_ledgers_twice_leaves_the_same_rows(synthetic, tmp_path):
    market, config, _ = synthetic
    strategies = [f(market) for name, f in BASELINES.items() if name != "btc_buy_and_hold"]
    ledgers = backtest(market, config, None, strategies, first_bar=24 * 35)
    con = duckdb.connect(str(tmp_path / "eval.duckdb"))
    write_ledgers(con, "other", list(ledgers.values())[:1])
    bars_sql = "SELECT * FROM evaluation.ledger_bars ORDER BY ALL"
    assets_sql = "SELECT * FROM evaluation.ledger_assets ORDER BY ALL"
    write_ledgers(con, "run-1", ledgers.values())
    first = (con.execute(bars_sql).fetchall(), con.execute(assets_sql).fetchall())
    write_ledgers(con, "run-1", ledgers.values())
    assert (con.execute(bars_sql).fetchall(), con.execute(assets_sql).fetchall()) == first
    t, s, n = ledgers["cash"].n_bars, len(ledgers), market.n_assets
    counts = con.execute(
        "SELECT evaluation_id, count(*) FROM evaluation.ledger_bars GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert counts == [("other", t), ("run-1", t * s)]
    assert con.execute(
        "SELECT count(*) FROM evaluation.ledger_assets WHERE evaluation_id = 'run-1'"
    ).fetchone() == (t * s * n,)
    ew = ledgers["equal_weight"]
    stored = con.execute(
        "SELECT equity, fees FROM evaluation.ledger_bars "
        "WHERE evaluation_id = 'run-1' AND strategy = 'equal_weight' ORDER BY ts"
    ).fetchnumpy()
    np.testing.assert_array_equal(stored["equity"], ew.equity[1:])
    np.testing.assert_array_equal(stored["fees"], ew.fees)
    pnl = con.execute(
        "SELECT sum(pnl) FROM evaluation.ledger_assets "
        "WHERE evaluation_id = 'run-1' AND strategy = 'momentum'"
    ).fetchone()
    assert pnl is not None
    momentum = ledgers["momentum"]
    assert pnl[0] == pytest.approx(momentum.equity[-1] - momentum.equity[0], abs=1e-6)


def test_ledgers_keep_the_simulators_step_info_bar_by_bar():
    fields = make_flat_market(n_assets=2, n_bars=60)
    close = 100.0 * np.exp(np.linspace(0, 0.2, 60))[:, None] * [1, 2]
    fields.update(close=close, mark=close, open=np.vstack([close[:1], close[:-1]]))
    fields["high"], fields["low"] = close * 1.001, fields["open"] * 0.999
    fields["low"][40, 0] = 40.0  # a wick: the 3x long in asset 0 is liquidated at bar 40
    fields["funding_rate"][::8] = 2e-4
    market = to_market(fields)
    config = EnvConfig(window=WINDOW)
    targets = np.tile([3.0, 0.0], (60, 1))
    policy = linear_policy(4 * 2 * 2 + 4 * 2 + 3, 2)
    strategies: list[ScheduledWeights | PolicyActor] = [
        ScheduledWeights("levered", targets),
        PolicyActor("policy", policy),
    ]
    ledgers = backtest(market, config, FeatureNormalizer.fit(market.features), strategies, 10)

    plain = replace(config, episode_length=None, random_start=False)
    sim = BatchedSimulator(market, plain, 2, FeatureNormalizer.fit(market.features), 10 - WINDOW)
    for i in range(2):
        sim.reset_env(i, np.random.default_rng(0))
    sim.refresh()
    infos, dead = [], np.zeros(2, dtype=bool)
    for _ in range(sim.length):
        actions = np.vstack(
            [targets[0] / config.max_leverage, policy(sim.observations(np.array([1])))[0]]
        )
        actions[dead] = 0.0
        with np.errstate(divide="ignore", invalid="ignore"):
            _, liquidated, info = sim.step(actions)
        dead |= liquidated
        infos.append(info)
    for i, name in enumerate(("levered", "policy")):
        ledger = ledgers[name]
        for key in ("fees", "slippage", "funding", "liquidated"):
            column = np.array([info[key][i] for info in infos])
            np.testing.assert_array_equal(getattr(ledger, key), column, err_msg=key)
            assert getattr(ledger, key).dtype == column.dtype
        np.testing.assert_array_equal(ledger.equity[1:], [info["equity"][i] for info in infos])
        np.testing.assert_array_equal(ledger.weights, [info["weights"][i] for info in infos])
    assert ledgers["levered"].liquidated.sum() == 1 and ledgers["levered"].funding.any()


def test_a_policy_on_its_onnx_export_books_the_sb3_policys_ledger(synthetic):
    from stable_baselines3 import PPO

    from training.onnx_export import OnnxPolicy, export_policy

    market, config, normalizer = synthetic
    model = PPO("MlpPolicy", PerpPortfolioEnv(market, config, normalizer), seed=0, device="cpu")
    output = model.policy.get_submodule("action_net")
    assert isinstance(output, torch.nn.Linear)
    with torch.no_grad():  # actions far from 0, so that the book moves
        output.weight.mul_(30.0)
    onnx = OnnxPolicy(export_policy(model, config))
    strategies = [
        PolicyActor("sb3", lambda obs: model.predict(obs, deterministic=True)[0]),
        PolicyActor("onnx", onnx.act),
    ]
    ledgers = backtest(market, config, normalizer, strategies, first_bar=500)
    sb3, exported = ledgers["sb3"], ledgers["onnx"]
    assert sb3.turnover.sum() > 5.0
    np.testing.assert_allclose(exported.weights, sb3.weights, rtol=0, atol=1e-6)
    np.testing.assert_allclose(exported.equity, sb3.equity, rtol=1e-6)
