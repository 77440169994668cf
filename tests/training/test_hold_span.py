"""``BatchedSimulator.hold``: a span of bars without orders in one set of numpy operations is
the same accounting as stepping bar by bar with every position held, through funding,
randomization, margin tiers and liquidations inside the span."""

from __future__ import annotations

from dataclasses import fields, replace

import numpy as np
import pytest

from tests.support.markets import make_flat_market, make_synthetic_market, to_market
from training.env_config import EnvConfig, RandomizationConfig
from training.simulator import BatchedSimulator

SPAN = 23
CONFIG = EnvConfig(window=8, episode_length=None, random_start=False, reward="sortino")
RANDOMIZED = RandomizationConfig(
    basis_noise_std=1e-4, funding_noise_std=5e-5, funding_shift_max_bars=2
)


def crash_market():
    """Three assets at 100 that lose 30% (one of them 45% at the low) 10 bars into the span."""
    fields_ = make_flat_market(n_assets=3, n_bars=60, volume=1e5)
    rng = np.random.default_rng(1)
    drift = np.exp(np.cumsum(rng.normal(0, 0.004, (60, 3)), 0))
    for key in ("open", "high", "low", "close", "mark"):
        fields_[key] = fields_[key] * drift
    fields_["low"][20:] *= 0.7
    fields_["close"][20:] *= 0.7
    fields_["mark"][20:] *= 0.7
    fields_["open"][21:] *= 0.7
    fields_["low"][20, 2] *= 0.8
    fields_["high"] *= 1.002
    fields_["funding_rate"][::8] = 3e-4
    return to_market(fields_)


def twins(market, config, n_envs, seed=0):
    """Two simulators in the same state after one leveraged decision per account."""
    sims = []
    for _ in range(2):
        sim = BatchedSimulator(market, config, n_envs)
        rng = np.random.default_rng(seed)
        for i in range(n_envs):
            sim.reset_env(i, rng)
        sim.refresh()
        sims.append(sim)
    actions = np.linspace(-1.0, 1.0, n_envs * market.n_assets).reshape(n_envs, -1)
    actions[0] = 1.0  # fully long: the account a crash liquidates
    for sim in sims:
        sim.step(actions)
    return sims


def step_through(sim, bars):
    """``bars`` calls of ``step`` holding everything, stacked like ``hold``'s rows."""
    hold = np.ones((sim.n_envs, sim.n_assets), dtype=bool)
    rows = [sim.step(np.zeros((sim.n_envs, sim.n_assets)), hold) for _ in range(bars)]
    rewards = np.stack([r for r, _, _ in rows])
    liquidated = np.stack([liq for _, liq, _ in rows])
    info = {key: np.stack([i[key] for _, _, i in rows]) for key in rows[0][2]}
    return rewards, liquidated, info


def assert_same_state(a, b):
    for name in ("t", "steps", "cash", "equity", "qty", "entry", "entry_basis"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-12, atol=1e-9)
    for field in fields(a.portfolio):
        np.testing.assert_allclose(
            getattr(a.portfolio, field.name), getattr(b.portfolio, field.name), rtol=1e-12
        )
    np.testing.assert_allclose(a.observations(), b.observations(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("n_envs", [1, 4])
@pytest.mark.parametrize("randomization", [RandomizationConfig(), RANDOMIZED])
def test_a_span_equals_stepping_bar_by_bar(n_envs, randomization):
    market = make_synthetic_market(n_assets=3, n_bars=200)
    config = replace(CONFIG, randomization=randomization)
    spanned, stepped = twins(market, config, n_envs)
    for _ in range(3):
        reward, liquidated, info = spanned.hold(SPAN)
        ref_reward, ref_liquidated, ref_info = step_through(stepped, SPAN)
        np.testing.assert_allclose(reward, ref_reward, rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(liquidated, ref_liquidated)
        assert set(info) == set(ref_info)
        for key, value in info.items():
            assert value.shape == ref_info[key].shape, key
            np.testing.assert_allclose(value, ref_info[key], rtol=1e-12, atol=1e-9, err_msg=key)
        assert_same_state(spanned, stepped)
    assert np.abs(info["funding"]).sum() > 0  # settlements inside the spans


def test_a_liquidation_inside_the_span_flattens_the_account_from_that_bar():
    market = crash_market()
    spanned, stepped = twins(market, CONFIG, n_envs=3)
    bars, start = 25, int(spanned.t[0]) + 1  # the span's first bar
    with np.errstate(divide="ignore", invalid="ignore"):  # rewards after a wiped-out equity
        reward, liquidated, info = spanned.hold(bars)
        ref_reward, ref_liquidated, ref_info = step_through(stepped, bars)
    np.testing.assert_array_equal(liquidated, ref_liquidated)
    at = np.flatnonzero(liquidated[:, 0])
    assert at.tolist() == [20 - start]  # the crash bar, counted from the span's start
    assert liquidated.any(0).tolist() == [True, False, True]  # the market-neutral one survives
    after = slice(int(at[0]), None)
    assert info["liquidation_fee"][at[0], 0] > 0
    assert (info["weights"][after, 0] == 0).all() and (info["funding"][after, 0] == 0).all()
    assert np.unique(info["equity"][after, 0]).size == 1  # flat: nothing moves its equity
    np.testing.assert_allclose(reward[: at[0] + 1], ref_reward[: at[0] + 1], rtol=1e-9)
    # stepping a wiped-out account divides 0 traded by 0 equity; a span says 0 turnover
    ref_info["turnover"] = np.nan_to_num(ref_info["turnover"], nan=0.0)
    for key, value in info.items():
        np.testing.assert_allclose(value, ref_info[key], rtol=1e-12, atol=1e-9, err_msg=key)
    assert_same_state(spanned, stepped)


def test_hold_refuses_an_empty_span():
    sim = BatchedSimulator(make_synthetic_market(), CONFIG, 1)
    with pytest.raises(ValueError, match="bars must be >= 1"):
        sim.hold(0)
