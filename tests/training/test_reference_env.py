"""The pandas reference env and the fast env are two implementations of the same MDP."""

from dataclasses import replace

import numpy as np
import pytest

from tests.support.markets import make_synthetic_market
from tests.support.reference_env import ReferencePerpEnv
from training.env import PerpPortfolioEnv
from training.env_config import EnvConfig


@pytest.mark.parametrize(
    ("leverage", "untradable_share"), [(3.0, 0.0), (60.0, 0.0), (3.0, 0.3), (60.0, 0.3)]
)
def test_reference_env_matches_fast_env(leverage, untradable_share):
    market = make_synthetic_market(n_assets=3, n_bars=300, seed=9)
    if untradable_share:
        mask = np.random.default_rng(4).uniform(size=market.close.shape) >= untradable_share
        market = replace(market, tradable=mask).validate()
    config = EnvConfig(
        window=8,
        episode_length=60,
        max_leverage=leverage,
        gross_leverage_cap=leverage,
        no_trade_band=0.02,
    )
    fast, ref = PerpPortfolioEnv(market, config), ReferencePerpEnv(market, config)
    low = 0.5 if leverage > 10 else -1.0  # one-sided at high leverage, to get liquidations
    actions = np.random.default_rng(3).uniform(low, 1, (150, 3)).astype(np.float32)
    obs_f, _ = fast.reset(seed=5)
    obs_r, _ = ref.reset(seed=5)
    liquidations = 0
    for a in actions:
        np.testing.assert_allclose(obs_r, obs_f, rtol=1e-5, atol=1e-5)
        obs_f, r_f, term_f, trunc_f, info_f = fast.step(a)
        obs_r, r_r, term_r, trunc_r, info_r = ref.step(a)
        assert (term_r, trunc_r) == (term_f, trunc_f)
        assert r_r == pytest.approx(r_f, rel=1e-9, abs=1e-12)
        for key in ("equity", "cash", "fees", "slippage", "funding", "turnover", "liquidation_fee"):
            assert info_r[key] == pytest.approx(info_f[key], rel=1e-9, abs=1e-9), key
        liquidations += info_f["liquidated"]
        if term_f or trunc_f:
            obs_f, _ = fast.reset()
            obs_r, _ = ref.reset()
    if leverage > 10:
        assert liquidations > 0
