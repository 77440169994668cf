"""Accounting identity, determinism, no look-ahead and the shared observation function."""

from dataclasses import replace

import numpy as np
import pytest

from tests.support.markets import make_synthetic_market
from training.env import PerpPortfolioEnv
from training.env_config import EnvConfig, RandomizationConfig
from training.observation import FeatureNormalizer, ObservationBuilder, PortfolioState


def _actions(n_steps: int, n_assets: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n_steps, n_assets)).astype(np.float32)


def test_accounting_identity_every_step():
    """equity = cash + sum(upnl), and dE = price moves on held qty - fees - slippage + funding."""
    market = make_synthetic_market(n_assets=3, n_bars=400, seed=2)
    env = PerpPortfolioEnv(market, EnvConfig(window=8, episode_length=300))
    env.reset(seed=4)
    sim = env.sim
    for action in _actions(300, 3):
        t, q_old, eq_old = int(sim.t[0]), sim.qty[0].copy(), sim.equity[0]
        *_, terminated, _, info = env.step(action)
        assert not terminated
        assert info["equity"] == pytest.approx(info["cash"] + info["unrealized_pnl"].sum(), 1e-12)
        q_new = sim.qty[0]
        o1, m0, m1 = market.open[t + 1], market.mark[t], market.mark[t + 1]
        price_pnl = q_old @ (o1 - m0) + q_new @ (m1 - o1)
        expected = eq_old + price_pnl - info["fees"] - info["slippage"] + info["funding"]
        assert info["equity"] == pytest.approx(expected, rel=1e-10)
        assert info["funding"] == pytest.approx(-(q_new * m1 * market.funding_rate[t + 1]).sum())


def _trajectory(env: PerpPortfolioEnv, seed: int, actions: np.ndarray) -> list:
    obs, info = env.reset(seed=seed)
    out = [(obs, info["bar"])]
    for a in actions:
        obs, r, term, trunc, info = env.step(a)
        out.append((obs, r, info["equity"], info["bar"]))
        if term or trunc:
            obs, info = env.reset()
            out.append((obs, info["bar"]))
    return out


def _same(a: list, b: list) -> bool:
    return all(
        all(np.array_equal(x, y) for x, y in zip(s, t, strict=True))
        for s, t in zip(a, b, strict=True)
    )


def test_same_seed_same_trajectory_including_randomization():
    market = make_synthetic_market(n_bars=400)
    config = EnvConfig(
        window=8,
        episode_length=30,
        randomization=RandomizationConfig(
            basis_noise_std=1e-4, funding_shift_max_bars=3, fee_mult_range=(0.5, 2.0)
        ),
    )
    actions = _actions(100, 3)
    first = _trajectory(PerpPortfolioEnv(market, config), 7, actions)
    second = _trajectory(PerpPortfolioEnv(market, config), 7, actions)
    other = _trajectory(PerpPortfolioEnv(market, config), 8, actions)
    assert _same(first, second)
    assert not _same(first, other)


def _perturbed_after(market, t: int, seed: int):
    rng = np.random.default_rng(seed)
    after = np.s_[t + 1 :]
    scale = np.exp(rng.normal(0, 0.05, market.close[after].shape))
    fields = {}
    for name in ("open", "high", "low", "close", "mark"):
        arr = getattr(market, name).copy()
        arr[after] *= scale
        fields[name] = arr
    for name in ("volume", "funding_rate", "hours_to_funding", "basis"):
        arr = getattr(market, name).copy()
        arr[after] = rng.permutation(arr[after].ravel()).reshape(arr[after].shape)
        fields[name] = arr
    feats = market.features.copy()
    feats[after] = rng.normal(size=feats[after].shape)
    return replace(market, features=feats, **fields).validate()


@pytest.mark.parametrize("cut_step", [0, 5, 17])
def test_observation_at_t_ignores_every_later_bar(cut_step):
    market = make_synthetic_market(n_bars=120, seed=3)
    config = EnvConfig(window=8, episode_length=None, random_start=False)
    normalizer = FeatureNormalizer.fit(market.features)
    actions = _actions(cut_step, 3, seed=1)

    def obs_at_cut(m):
        env = PerpPortfolioEnv(m, config, normalizer)
        obs, _ = env.reset(seed=0)
        seen = [obs]
        for a in actions:
            seen.append(env.step(a)[0])
        return env.sim.t[0], seen

    t, base = obs_at_cut(market)
    t2, pert = obs_at_cut(_perturbed_after(market, int(t), seed=cut_step))
    assert t == t2 == 7 + cut_step
    for a, b in zip(base, pert, strict=True):
        np.testing.assert_array_equal(a, b)


def test_env_observation_is_the_shared_builder_on_raw_features():
    market = make_synthetic_market(n_bars=200)
    env = PerpPortfolioEnv(market, EnvConfig(window=8, episode_length=20))
    env.reset(seed=0)
    for a in _actions(10, 3):
        obs, *_ = env.step(a)
    t = int(env.sim.t[0])
    rebuilt = ObservationBuilder.from_dict(env.builder.to_dict())
    np.testing.assert_array_equal(rebuilt.build(market.features, t, env.portfolio_state()), obs)


def test_normalizer_fits_training_window_and_round_trips():
    market = make_synthetic_market(n_bars=300)
    env = PerpPortfolioEnv(market, EnvConfig(window=8, episode_length=20), start=0, stop=150)
    expected = FeatureNormalizer.fit(market.features[:150])
    np.testing.assert_allclose(env.normalizer.mean, expected.mean)
    np.testing.assert_allclose(env.normalizer.std, expected.std)
    assert env.normalizer.mean.shape == (4,)
    back = FeatureNormalizer.from_dict(env.normalizer.to_dict())
    np.testing.assert_array_equal(back.mean, expected.mean)
    z = back.transform(market.features[:150])
    assert np.abs(z.reshape(-1, 4).mean(0)).max() < 1e-5
    per_asset = FeatureNormalizer.fit(market.features[:150], per_asset=True)
    assert per_asset.mean.shape == (3, 4)


def test_flat_portfolio_state_vector():
    state = PortfolioState.flat(2, hours_to_funding=np.array([8.0, 4.0]))
    np.testing.assert_array_equal(state.vector(), [0, 0, 0, 0, 0, 0, 1.0, 0.5, 0, 0, 1])
    builder = ObservationBuilder(["a"], 2, 3, FeatureNormalizer(np.zeros(1), np.ones(1)))
    obs = builder.build(np.full((5, 2, 1), 99.0), 4, state)
    assert obs[:6].tolist() == [10.0] * 6  # clipped
    with pytest.raises(ValueError, match="window"):
        builder.build(np.zeros((5, 2, 1)), 1, state)


def test_market_validate_names_field_symbol_and_time():
    market = make_synthetic_market(n_bars=50)
    close = market.close.copy()
    close[7, 1] = np.nan
    with pytest.raises(ValueError, match=r"close: .*ETHUSDT.*2024-01-01 07:00"):
        replace(market, close=close).validate()
    with pytest.raises(ValueError, match="volume: shape"):
        replace(market, volume=market.volume[:, :2]).validate()
    ts = market.timestamps.copy()
    ts[10] = ts[9]
    with pytest.raises(ValueError, match="timestamps: not strictly increasing"):
        replace(market, timestamps=ts).validate()
    part = market.slice(10, 20)
    assert part.n_bars == 10 and part.timestamps[0] == market.timestamps[10]
    np.testing.assert_array_equal(part.features, market.features[10:20])
