"""Walk-forward folds keep test bars out of training; stitching compounds; folds train in-sample."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from evaluation.ledger import Ledger
from evaluation.strategies import BASELINES, equal_weight
from evaluation.walkforward import (
    DEFAULT_PURGE_BARS,
    FEATURE_WINDOW_BARS,
    FUNDING_ZSCORE_SETTLEMENTS,
    WalkForwardConfig,
    feature_lookback_bars,
    fold_partition_keys,
    fold_table,
    make_folds,
    min_purge_bars,
    run_fold,
    stitch,
    walk_forward,
)
from tests.support.markets import make_synthetic_market
from training.config import TrainConfig
from training.env_config import EnvConfig
from training.market import MarketData

DBT_PROJECT = Path(__file__).resolve().parents[2] / "dbt_project" / "dbt_project.yml"


def _bars(window: tuple[int, int] | None) -> set[int]:
    return set() if window is None else set(range(*window))


CONFIGS = [
    WalkForwardConfig(n_folds=4, test_bars=250, validation_bars=300, purge_bars=200),
    WalkForwardConfig(n_folds=5, test_fraction=0.4, purge_bars=200, embargo_bars=24),
    WalkForwardConfig(
        n_folds=3,
        scheme="rolling",
        train_bars=1_000,
        test_bars=333,
        validation_bars=100,
        purge_bars=200,
        embargo_bars=50,
    ),
]


@pytest.mark.parametrize("config", CONFIGS)
def test_folds_keep_test_bars_out_of_train_and_validation(config):
    n_bars = 5_000
    folds = make_folds(n_bars, config)
    assert len(folds) == config.n_folds
    for fold in folds:
        test = _bars(fold.test)
        assert not test & _bars(fold.train)
        assert not test & _bars(fold.validation)
        assert not _bars(fold.train) & _bars(fold.validation)
        # purge gaps, in time order train -> purge -> validation -> purge -> test
        if fold.validation is None:
            assert fold.test[0] - fold.train[1] >= config.purge_bars
        else:
            assert fold.validation[0] - fold.train[1] >= config.purge_bars
            assert fold.test[0] - fold.validation[1] >= config.purge_bars
            assert fold.validation[1] - fold.validation[0] > 0
    # test windows: disjoint, consecutive, ordered, and they end at the last bar
    tests = [fold.test for fold in folds]
    assert all(a[1] == b[0] for a, b in zip(tests[:-1], tests[1:], strict=True))
    assert all(start < stop for start, stop in tests)
    assert tests[-1][1] == n_bars
    covered = sum(stop - start for start, stop in tests)
    expected = config.n_folds * config.test_bars if config.test_bars else round(0.4 * n_bars)
    assert covered == expected == n_bars - tests[0][0]


@pytest.mark.parametrize("config", CONFIGS)
def test_no_train_or_validation_window_starts_in_an_embargo(config):
    folds = make_folds(5_000, config)
    for later in folds:
        for earlier in folds[: later.index]:
            zone = range(earlier.test[1], earlier.test[1] + config.embargo_bars)
            assert later.train[0] not in zone
            if later.validation is not None:
                assert later.validation[0] not in zone


def test_embargo_moves_a_start_that_falls_right_after_an_earlier_test_window():
    # test windows of 100 bars from bar 700; purge + validation + purge = 130, so fold j's
    # validation would start 10 bars after test window j - 2 ends, inside a 20-bar embargo
    base = dict(n_folds=4, test_bars=100, validation_bars=50, purge_bars=40)
    free = make_folds(1_100, WalkForwardConfig(**base))
    held = make_folds(1_100, WalkForwardConfig(**base, embargo_bars=20))
    assert [f.validation for f in free] == [(610, 660), (710, 760), (810, 860), (910, 960)]
    assert [f.validation for f in held] == [(610, 660), (710, 760), (820, 860), (920, 960)]
    assert [f.train for f in held] == [(0, 570), (0, 670), (0, 770), (0, 870)]
    assert [f.test for f in held] == [f.test for f in free]
    # rolling: fold 3's 60-bar train window would start at bar 810, 10 after test 0's end
    rolling = dict(base, scheme="rolling", train_bars=60, min_train_bars=40)
    assert make_folds(1_100, WalkForwardConfig(**rolling))[3].train == (810, 870)
    assert make_folds(1_100, WalkForwardConfig(**rolling, embargo_bars=20))[3].train == (820, 870)


def test_expanding_trains_from_bar_zero_and_rolling_keeps_its_length():
    expanding = make_folds(3_000, WalkForwardConfig(n_folds=3, test_bars=200, purge_bars=100))
    rolling = make_folds(
        3_000,
        WalkForwardConfig(
            n_folds=3, scheme="rolling", train_bars=800, test_bars=200, purge_bars=100
        ),
    )
    assert [f.train for f in expanding] == [(0, 2_300), (0, 2_500), (0, 2_700)]
    assert [f.train for f in rolling] == [(1_500, 2_300), (1_700, 2_500), (1_900, 2_700)]
    assert [f.test for f in rolling] == [f.test for f in expanding]


def test_one_fold_without_purge_is_todays_split():
    market = make_synthetic_market(n_bars=403)
    (fold,) = make_folds(market.n_bars, WalkForwardConfig(n_folds=1, purge_bars=0))
    cut = round(403 * 0.75)
    assert fold.train == (0, cut) and fold.test == (cut, 403) and fold.validation is None
    (purged,) = make_folds(market.n_bars, WalkForwardConfig(n_folds=1, purge_bars=50))
    assert purged.train == (0, cut - 50) and purged.test == (cut, 403)


def test_fold_times_and_partition_keys():
    market = make_synthetic_market(n_bars=400)
    config = WalkForwardConfig(n_folds=2, test_bars=50, validation_bars=20, purge_bars=30)
    folds = make_folds(market.n_bars, config)
    assert fold_partition_keys(config) == ["fold-0", "fold-1"] == [f.name for f in folds]
    times = folds[1].times(market)
    assert times["test"] == (market.timestamps[350], market.close_times[399])
    assert times["validation"] == (market.timestamps[300], market.close_times[319])
    row = folds[1].describe(market)
    assert row["test_bars"] == 50 and row["train_bars"] == 270
    assert row["test_from"] == "2024-01-15 14:00" and row["test_to"] == "2024-01-17 16:00"


def test_impossible_configs_name_their_numbers():
    with pytest.raises(
        ValueError,
        match=r"fold 0: 50 train bars before bar 50, fewer than min_train_bars=100 \(n_bars=500, "
        r"test windows from bar 200, validation_bars=0, purge_bars=150, embargo_bars=0\)",
    ):
        make_folds(
            500, WalkForwardConfig(n_folds=3, test_bars=100, purge_bars=150, min_train_bars=100)
        )
    with pytest.raises(ValueError, match="fold 0: 0 train bars"):
        make_folds(500, WalkForwardConfig(n_folds=3, test_bars=100, purge_bars=200))
    with pytest.raises(ValueError, match="500 bars cannot hold 6 test windows"):
        make_folds(500, WalkForwardConfig(n_folds=6, test_bars=100, purge_bars=0))
    with pytest.raises(ValueError, match="would start at bar -100"):
        make_folds(
            1_000,
            WalkForwardConfig(
                n_folds=2, scheme="rolling", train_bars=700, test_bars=100, purge_bars=200
            ),
        )
    with pytest.raises(ValueError, match="rolling scheme needs train_bars"):
        WalkForwardConfig(scheme="rolling")
    with pytest.raises(ValueError, match="n_folds must be >= 1, got 0"):
        WalkForwardConfig(n_folds=0)


def test_purge_minimum_is_the_observation_plus_the_feature_window():
    assert feature_lookback_bars("1h") == 168
    assert feature_lookback_bars("30m") == 336
    assert feature_lookback_bars("1d") == 24
    assert min_purge_bars(32, 168) == 200 == DEFAULT_PURGE_BARS
    WalkForwardConfig(purge_bars=200).check_purge(32, 168)
    with pytest.raises(ValueError, match="purge_bars=199 is below the minimum 200.* 32 .* 168"):
        WalkForwardConfig(purge_bars=199).check_purge(32, 168)


def test_feature_lookback_constants_follow_the_dbt_vars():
    variables = yaml.safe_load(DBT_PROJECT.read_text())["vars"]
    windows = [
        variables["basis_zscore_window"],
        variables["volatility_window"],
        variables["volume_zscore_window"],
        *variables["return_horizons"],
        *variables["basis_velocity_lags"],
    ]
    assert max(windows) == FEATURE_WINDOW_BARS
    assert variables["funding_zscore_window"] == FUNDING_ZSCORE_SETTLEMENTS


def _ledger(start: str, returns: np.ndarray, equity0: float, name: str = "s") -> Ledger:
    """A ledger with the given bar returns, where fees, funding and asset PnL scale with equity."""
    t = len(returns)
    start_time = np.datetime64(start, "ns")
    close_times = start_time + np.arange(1, t + 1) * np.timedelta64(1, "h")
    equity = equity0 * np.cumprod(np.r_[1.0, 1.0 + returns])
    change = np.diff(equity)
    rng = np.random.default_rng(t)
    share = rng.uniform(0.2, 0.8, t)
    return Ledger(
        name=name,
        symbols=("A", "B"),
        bar_hours=1.0,
        start_time=start_time,
        close_times=close_times,
        equity=equity,
        weights=rng.normal(size=(t, 2)),
        fees=equity[:-1] * 1e-4,
        slippage=equity[:-1] * 5e-5,
        funding=equity[:-1] * rng.normal(0, 1e-4, t),
        turnover=rng.uniform(0, 1, t),
        liquidated=np.zeros(t, dtype=bool),
        asset_pnl=np.column_stack([change * share, change * (1 - share)]),
    )


def test_stitch_compounds_the_folds_returns():
    rng = np.random.default_rng(5)
    r = [rng.normal(0, 0.01, n) for n in (10, 7, 12)]
    # each fold's backtest starts again from the initial equity (10,000 here)
    ledgers = [
        _ledger("2024-01-01T00:00", r[0], 10_000.0),
        _ledger("2024-01-01T10:00", r[1], 10_000.0),
        _ledger("2024-01-01T20:00", r[2], 10_000.0),  # a 3-bar gap after fold 1 is allowed
    ]
    out = stitch(ledgers)
    all_r = np.concatenate(r)
    np.testing.assert_allclose(out.returns, all_r, rtol=0, atol=1e-12)
    assert out.equity[-1] == pytest.approx(10_000.0 * np.prod(1 + all_r), rel=1e-12)
    assert out.start_time == ledgers[0].start_time
    np.testing.assert_array_equal(
        out.close_times, np.concatenate([lg.close_times for lg in ledgers])
    )
    # the quote-currency columns follow the equity's scale; the ratios are kept
    scale = out.equity[10] / 10_000.0
    np.testing.assert_allclose(out.fees[10:17], ledgers[1].fees * scale, rtol=1e-12)
    np.testing.assert_allclose(out.fees, out.equity[:-1] * 1e-4, rtol=1e-12)
    np.testing.assert_allclose(out.asset_pnl.sum(axis=1), np.diff(out.equity), rtol=1e-9)
    np.testing.assert_array_equal(out.weights[10:17], ledgers[1].weights)
    np.testing.assert_array_equal(out.turnover[17:], ledgers[2].turnover)


def test_stitch_rejects_overlaps_disorder_and_mixed_strategies():
    a = _ledger("2024-01-01T00:00", np.full(10, 0.001), 100.0)
    overlapping = _ledger("2024-01-01T09:00", np.full(5, 0.001), 100.0)
    with pytest.raises(ValueError, match="ledgers 0 and 1 of 's' overlap"):
        stitch([a, overlapping])
    earlier = _ledger("2023-12-31T00:00", np.full(5, 0.001), 100.0)
    with pytest.raises(ValueError, match="out of order"):
        stitch([a, earlier])
    other = _ledger("2024-01-01T10:00", np.full(5, 0.001), 100.0, name="t")
    with pytest.raises(ValueError, match="is not the strategy of ledger 0"):
        stitch([a, other])
    with pytest.raises(ValueError, match="at least one ledger"):
        stitch([])


def _train_config() -> TrainConfig:
    return TrainConfig(
        total_timesteps=256,
        seed=3,
        n_envs=2,
        n_steps=64,
        batch_size=64,
        feature_columns=("f0", "f1", "f2", "f3"),
        env=EnvConfig(window=8, episode_length=64),
    )


def _perturbed_from(market: MarketData, first: int) -> MarketData:
    """``market`` with every price, funding, basis and feature value from bar ``first`` on moved."""
    rng = np.random.default_rng(99)
    later = np.s_[first:]
    moved = {}
    for name in ("open", "high", "low", "close", "mark"):
        values = getattr(market, name).copy()
        values[later] *= 1.5
        moved[name] = values
    for name in ("funding_rate", "basis"):
        values = getattr(market, name).copy()
        values[later] += 0.01
        moved[name] = values
    features = market.features.copy()
    features[later] += rng.normal(0, 3, features[later].shape).astype(np.float32)
    return replace(market, features=features, **moved).validate()


def test_run_fold_trains_on_the_train_bars_only():
    market = make_synthetic_market(n_assets=3, n_bars=400, seed=11)
    config = WalkForwardConfig(n_folds=1, test_bars=60, validation_bars=40, purge_bars=32)
    (fold,) = make_folds(market.n_bars, config)
    assert fold.train == (0, 236) and fold.validation == (268, 308) and fold.test == (340, 400)
    train_config = _train_config()
    result = run_fold(market, fold, train_config, feature_window=24)
    other = run_fold(_perturbed_from(market, fold.test[0]), fold, train_config, feature_window=24)

    params = result.policy.algorithm.policy.state_dict()
    other_params = other.policy.algorithm.policy.state_dict()
    assert params.keys() == other_params.keys()
    for key, value in params.items():
        assert torch.equal(value, other_params[key]), key
    np.testing.assert_array_equal(
        result.policy.builder.normalizer.mean, other.policy.builder.normalizer.mean
    )
    # the validation window lies before the perturbed bars, the test window inside them
    for name, ledger in result.validation_ledgers.items():
        np.testing.assert_array_equal(ledger.equity, other.validation_ledgers[name].equity)
    assert not np.array_equal(result.ledgers["candidate"].equity, other.ledgers["candidate"].equity)

    assert set(result.ledgers) == {"candidate", *BASELINES}
    candidate = result.ledgers["candidate"]
    assert candidate.close_times[0] == market.close_times[fold.test[0]]
    assert candidate.start_time == market.close_times[fold.test[0] - 1]
    assert candidate.close_times[-1] == market.close_times[-1]
    assert candidate.n_bars == 60
    validation = result.validation_ledgers["candidate"]
    assert validation.close_times[0] == market.close_times[268]
    assert validation.close_times[-1] == market.close_times[307]
    assert result.validation_metrics["candidate"]["n_bars"] == 40
    assert result.train_seconds > 0
    assert result.summary["test_from"] == "2024-01-15 04:00"

    table = fold_table([result])
    assert table.loc[0, "candidate_total_return"] == pytest.approx(
        candidate.equity[-1] / candidate.equity[0] - 1, rel=1e-12
    )
    assert table.loc[0, "candidate_validation_total_return"] == pytest.approx(
        validation.equity[-1] / validation.equity[0] - 1, rel=1e-12
    )


def test_run_fold_refuses_a_purge_below_the_inputs_reach():
    market = make_synthetic_market(n_assets=3, n_bars=400, seed=11)
    (fold,) = make_folds(
        400, WalkForwardConfig(n_folds=1, test_bars=60, validation_bars=40, purge_bars=31)
    )
    with pytest.raises(
        ValueError,
        match="fold-0: 31 purge bars between train and the next window, below the "
        "minimum 32: the observation window 8 \\+ the longest feature window 24 bars",
    ):
        run_fold(market, fold, _train_config(), feature_window=24)


def test_walk_forward_stitches_the_folds_test_ledgers():
    market = make_synthetic_market(n_assets=3, n_bars=400, seed=11)
    config = WalkForwardConfig(n_folds=2, test_bars=40, purge_bars=32)
    result = walk_forward(
        market, config, _train_config(), {"equal_weight": equal_weight}, feature_window=24
    )
    assert [r.fold.test for r in result.folds] == [(320, 360), (360, 400)]
    stitched = result.stitched["candidate"]
    parts = [r.ledgers["candidate"] for r in result.folds]
    np.testing.assert_allclose(
        stitched.returns, np.concatenate([p.returns for p in parts]), rtol=0, atol=1e-12
    )
    assert stitched.close_times[0] == market.close_times[320]
    assert set(result.stitched) == {"candidate", "equal_weight"}
