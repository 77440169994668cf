"""Reward options (numbers by hand) and per-episode domain randomization."""

import numpy as np
import pytest

from tests.support.markets import make_flat_market, make_synthetic_market, to_market
from training.env import PerpPortfolioEnv
from training.env_config import EnvConfig, RandomizationConfig
from training.rewards import DelayedReward, PnLReward, SortinoReward

NO_LIQ = np.array([False])


def test_pnl_reward_formula():
    fn = PnLReward(1, alpha=0.5, beta=2.0)
    r = fn(np.array([100.0]), np.array([103.0]), np.array([2.0]), NO_LIQ)
    assert r[0] == pytest.approx(0.03 - 0.5 * 0.02)
    r = fn(np.array([100.0]), np.array([1.0]), np.array([0.0]), np.array([True]))
    assert r[0] == pytest.approx(-0.99 - 2.0)


def test_differential_sortino_reward_by_hand():
    fn = SortinoReward(1, alpha=0.0, beta=1.0, eta=0.1, init_dd=0.01, clip=10.0)
    eq = np.array([100.0])
    assert fn(eq, eq * 1.01, np.zeros(1), NO_LIQ)[0] == pytest.approx(0.01 / 0.01)
    a, dd2 = 0.1 * 0.01, 1e-4 * 0.9  # EMAs after the first return
    ret = -0.02
    expected = (dd2 * (ret - a / 2) - a / 2 * ret**2) / dd2**1.5
    assert fn(eq, eq * (1 + ret), np.zeros(1), NO_LIQ)[0] == pytest.approx(expected)
    assert fn.dd2[0] == pytest.approx(dd2 + 0.1 * (ret**2 - dd2))
    fn.reset(np.array([True]), eq)
    assert fn.mean[0] == 0.0 and fn.dd2[0] == pytest.approx(1e-4)


def test_delayed_reward_credits_k_bar_return_when_known():
    fn = DelayedReward(1, alpha=0.0, beta=1.0, k=2, weight=0.5)
    fn.reset(np.array([True]), np.array([100.0]))
    path = [100.0, 110.0, 121.0, 133.1]
    got = [
        fn(np.array([a]), np.array([b]), np.zeros(1), NO_LIQ)[0]
        for a, b in zip(path[:-1], path[1:], strict=True)
    ]
    assert got == pytest.approx([0.1, 0.1 + 0.5 * 0.21, 0.1 + 0.5 * 0.21])


@pytest.mark.filterwarnings("error")
def test_delayed_reward_after_a_liquidation_starts_the_next_episode_afresh():
    # k = 3 keeps k + 1 = 4 history slots; wiped out on its second step, the episode leaves 0.0
    # in the slot the next episode reads at its first step (where the delayed term is 0)
    fn = DelayedReward(1, alpha=0.0, beta=1.0, k=3, weight=1.0)
    episode = [100.0, 90.0, 0.0]
    fn.reset(np.array([True]), np.array([100.0]))
    for prev, eq in zip(episode, episode[1:], strict=False):
        fn(np.array([prev]), np.array([eq]), np.zeros(1), np.array([eq == 0.0]))
    fn.reset(np.array([True]), np.array([100.0]))
    path = [100.0, 101.0, 102.0, 103.0, 104.0]
    rewards = [
        fn(np.array([prev]), np.array([eq]), np.zeros(1), NO_LIQ)[0]
        for prev, eq in zip(path, path[1:], strict=False)
    ]
    immediate = [eq / prev - 1 for prev, eq in zip(path, path[1:], strict=False)]
    delayed = [0.0, 0.0, 103.0 / 100.0 - 1, 104.0 / 101.0 - 1]
    assert rewards == pytest.approx([i + d for i, d in zip(immediate, delayed, strict=True)])


@pytest.mark.parametrize("reward", ["sortino", "delayed"])
def test_reward_options_see_the_same_equity_path_as_pnl(reward):
    market = make_synthetic_market(n_bars=200)
    actions = np.random.default_rng(0).uniform(-1, 1, (40, 3)).astype(np.float32)
    base = PerpPortfolioEnv(market, EnvConfig(window=8, episode_length=40))
    config = EnvConfig(window=8, episode_length=40, reward=reward, delay_k=5)
    other = PerpPortfolioEnv(market, config)
    base.reset(seed=1)
    other.reset(seed=1)
    equity = [base.sim.equity[0]]
    for step, a in enumerate(actions, start=1):
        _, r_pnl, *_, info = base.step(a)
        _, r, *_, info_other = other.step(a)
        assert info_other["equity"] == info["equity"]
        equity.append(info["equity"])
        if reward == "delayed":
            delayed = equity[-1] / equity[-6] - 1 if step >= 5 else 0.0
            assert r == pytest.approx(r_pnl + delayed, rel=1e-12)
        else:
            assert np.isfinite(r) and abs(r) <= 10 + 1


def test_funding_shift_moves_settlements_and_hours():
    fields = make_flat_market(n_bars=80)
    fields["funding_rate"][40] = 1e-3
    fields["hours_to_funding"][:] = np.arange(80)[:, None] % 8
    market = to_market(fields)
    config = EnvConfig(
        window=2,
        episode_length=None,
        random_start=False,
        no_trade_band=0.5,
        randomization=RandomizationConfig(funding_shift_max_bars=3),
    )
    shifts = set()
    for seed in range(12):
        env = PerpPortfolioEnv(market, config)
        env.reset(seed=seed)
        shift = int(env.sim.shift[0])
        shifts.add(shift)
        paid = {}
        while True:
            obs, _, _, truncated, info = env.step(np.array([1 / 3]))
            if info["funding"] != 0:
                paid[info["bar"]] = info["funding"]
            if info["bar"] == 20:
                assert obs[-4] * 8 == (20 - shift) % 8  # hours_to_funding of the shifted bar
            if truncated:
                break
        assert list(paid) == [40 + shift]
    assert len(shifts) > 2


def test_funding_and_basis_noise():
    fields = make_flat_market(n_bars=60)
    fields["funding_rate"][10::8] = 1e-4
    market = to_market(fields)
    noisy = RandomizationConfig(funding_noise_std=1e-4, basis_noise_std=1e-3)
    config = EnvConfig(window=2, episode_length=None, random_start=False, randomization=noisy)
    env = PerpPortfolioEnv(market, config)
    env.reset(seed=3)
    settlements = []
    for _ in range(40):
        *_, info = env.step(np.array([1 / 3]))
        if info["funding"] != 0:
            settlements.append(info["bar"])
    assert settlements == [10, 18, 26, 34]  # noise only where a settlement happens
    assert env.portfolio_state().entry_basis[0] != 0.0  # entry basis carries the basis noise
