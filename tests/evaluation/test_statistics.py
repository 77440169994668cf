import math
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest
from arch.bootstrap import StationaryBootstrap
from scipy import stats

from evaluation.statistics import (
    ConfidenceInterval,
    anova_across_timeframes,
    block_length,
    bootstrap_sharpe_ci,
    bootstrap_sharpe_cis,
    bootstrap_sharpe_difference_ci,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    high_vs_low_frequency_ttest,
    probabilistic_sharpe_ratio,
    resample_indices,
    sharpe_ratio,
    sharpe_ratios,
)

PHI = NormalDist().cdf
SERIES = [0.02, 0.01, 0.015, -0.03, 0.025, 0.012, 0.018, 0.011, 0.02, 0.016]
"""A short, negatively skewed, fat-tailed daily series with a large per-day Sharpe (0.76)."""


def hand_moments(r: list[float]) -> tuple[float, float, float]:
    """Per-day Sharpe (std ddof=1), biased skewness and NON-excess kurtosis, by hand."""
    t = len(r)
    mean = sum(r) / t
    central = [x - mean for x in r]
    m2, m3, m4 = (sum(c**k for c in central) / t for k in (2, 3, 4))
    std = math.sqrt(sum(c**2 for c in central) / (t - 1))
    return mean / std, m3 / m2**1.5, m4 / m2**2


def hand_psr(r: list[float], benchmark_per_day: float) -> float:
    sr, g3, g4 = hand_moments(r)
    z = (
        (sr - benchmark_per_day)
        * math.sqrt(len(r) - 1)
        / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2)
    )
    return PHI(z)


def test_sharpe_ratio_is_daily_mean_over_std_times_sqrt_365():
    r = np.array([0.01, -0.02, 0.015, 0.005])
    assert sharpe_ratio(r) == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(365), rel=1e-12)
    assert sharpe_ratio(np.zeros(5)) == 0.0
    assert math.isnan(sharpe_ratio(np.full(5, 0.01)))
    assert math.isnan(sharpe_ratio([0.01]))
    rows = sharpe_ratios(np.vstack([r, np.zeros(4), -r]))
    assert rows.tolist() == pytest.approx([sharpe_ratio(r), 0.0, -sharpe_ratio(r)])
    with pytest.raises(ValueError, match="finite"):
        sharpe_ratio([0.01, np.nan])


def test_psr_matches_the_hand_computed_formula():
    sr, g3, g4 = hand_moments(SERIES)
    assert (sr, g3, g4) == pytest.approx((0.76123, -2.21461, 6.78398), abs=1e-5)
    assert probabilistic_sharpe_ratio(SERIES) == pytest.approx(hand_psr(SERIES, 0.0), abs=1e-9)
    # The benchmark is annualized: 2.0 per year is 2 / sqrt(365) per day.
    assert probabilistic_sharpe_ratio(SERIES, 2.0) == pytest.approx(
        hand_psr(SERIES, 2.0 / math.sqrt(365)), abs=1e-9
    )
    # At its own Sharpe ratio the probability is one half.
    assert probabilistic_sharpe_ratio(SERIES, sharpe_ratio(SERIES)) == pytest.approx(0.5)


def test_psr_uses_non_excess_kurtosis_not_excess_minus_three():
    sr, g3, g4 = hand_moments(SERIES)
    t = len(SERIES)
    # quantstats' form 1 + SR^2/2 - g3 SR + (k - 3)/4 SR^2 fed an EXCESS kurtosis k = g4 - 3.
    trap = PHI(sr * math.sqrt(t - 1) / math.sqrt(1 + sr**2 / 2 - g3 * sr + (g4 - 6) / 4 * sr**2))
    right = hand_psr(SERIES, 0.0)
    assert abs(trap - right) > 0.01
    assert probabilistic_sharpe_ratio(SERIES) == pytest.approx(right, abs=1e-9)
    assert probabilistic_sharpe_ratio(SERIES) != pytest.approx(trap, abs=1e-3)


def test_dsr_matches_the_hand_computed_expected_maximum():
    gamma = 0.5772156649015329
    n, variance = 10, 0.5  # variance of the trials' annualized Sharpe ratios
    inv = NormalDist().inv_cdf
    sr0 = math.sqrt(variance) * ((1 - gamma) * inv(1 - 1 / n) + gamma * inv(1 - 1 / (n * math.e)))
    assert expected_max_sharpe(n, variance) == pytest.approx(sr0, abs=1e-12)
    assert sr0 == pytest.approx(1.1134, abs=1e-4)
    dsr = deflated_sharpe_ratio(SERIES, n, variance)
    assert dsr == pytest.approx(hand_psr(SERIES, sr0 / math.sqrt(365)), abs=1e-9)
    assert dsr < probabilistic_sharpe_ratio(SERIES)
    assert deflated_sharpe_ratio(SERIES, 100, variance) < dsr


def test_dsr_of_one_trial_or_zero_variance_is_psr_at_zero():
    psr = probabilistic_sharpe_ratio(SERIES)
    assert deflated_sharpe_ratio(SERIES, 1, 0.7) == psr
    assert deflated_sharpe_ratio(SERIES, 50, 0.0) == psr
    assert expected_max_sharpe(1, 0.7) == 0.0
    with pytest.raises(ValueError, match="n_trials"):
        deflated_sharpe_ratio(SERIES, 0, 0.1)
    with pytest.raises(ValueError, match="trial_sharpe_variance"):
        deflated_sharpe_ratio(SERIES, 3, -0.1)
    assert math.isnan(probabilistic_sharpe_ratio(np.zeros(10)))


def test_indices_are_arch_stationary_bootstrap_draws_and_the_ci_their_percentiles():
    r = np.random.default_rng(3).normal(0.001, 0.02, 300)
    block = block_length(r)
    indices = resample_indices(300, block, 200, seed=7)
    bs = StationaryBootstrap(block, r, seed=7)
    looped = [sharpe_ratio(data[0][0]) for data in bs.bootstrap(200)]
    assert np.array_equal(sharpe_ratios(r[indices]), np.array(looped))
    ci = bootstrap_sharpe_ci(r, n_resamples=200, seed=7)
    assert (ci.low, ci.high) == pytest.approx(tuple(np.percentile(looped, [2.5, 97.5])), rel=1e-12)
    assert ci.estimate == sharpe_ratio(r) and ci.block_length == block >= 1.0


def test_bootstrap_is_seeded():
    r = np.random.default_rng(4).normal(0.001, 0.02, 200)
    first, again = bootstrap_sharpe_ci(r, seed=11), bootstrap_sharpe_ci(r, seed=11)
    assert first == again
    assert bootstrap_sharpe_ci(r, seed=12) != first
    assert first.low < first.estimate < first.high


def test_batch_intervals_equal_the_single_series_ones():
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(rng.normal(0.001, 0.02, (250, 3)), columns=["a", "b", "c"])
    batch = bootstrap_sharpe_cis(frame, n_resamples=300, seed=2)
    assert list(batch) == ["a", "b", "c"]
    for name in frame:
        assert batch[name] == bootstrap_sharpe_ci(frame[name], n_resamples=300, seed=2)


def test_difference_of_a_strategy_against_itself_is_exactly_zero():
    r = pd.Series(np.random.default_rng(6).normal(0.001, 0.02, 200))
    assert bootstrap_sharpe_difference_ci(r, r) == ConfidenceInterval(
        0.0, 0.0, 0.0, block_length(r)
    )


def test_difference_ci_pairs_the_days():
    rng = np.random.default_rng(8)
    common = rng.normal(0.001, 0.02, 400)
    a, b = common + rng.normal(0.0005, 0.002, 400), common
    paired = bootstrap_sharpe_difference_ci(a, b, seed=1)
    single_a, single_b = bootstrap_sharpe_ci(a, seed=1), bootstrap_sharpe_ci(b, seed=1)
    assert paired.estimate == pytest.approx(sharpe_ratio(a) - sharpe_ratio(b))
    # Shared days cancel the common noise: the paired interval is far narrower than either one.
    assert paired.high - paired.low < 0.25 * (single_a.high - single_a.low)
    assert paired.high - paired.low < 0.25 * (single_b.high - single_b.low)
    assert paired.low > 0


def test_difference_ci_refuses_unaligned_returns():
    days = pd.date_range("2024-01-01", periods=50, freq="D")
    a = pd.Series(np.random.default_rng(9).normal(0, 0.01, 50), index=days)
    with pytest.raises(ValueError, match="same dates"):
        bootstrap_sharpe_difference_ci(a, a.shift(1, freq="D"))
    with pytest.raises(ValueError, match="same length"):
        bootstrap_sharpe_difference_ci(a.to_numpy(), a.to_numpy()[1:])


def test_undefined_sharpe_gives_an_undefined_interval():
    ci = bootstrap_sharpe_ci([0.01])
    assert all(math.isnan(v) for v in (ci.low, ci.high, ci.estimate))
    cash = bootstrap_sharpe_ci(np.zeros(30))
    assert (cash.low, cash.high, cash.estimate) == (0.0, 0.0, 0.0)


def coverage(make_series, true_sharpe: float, replications: int = 200) -> float:
    rng = np.random.default_rng(2024)
    hits = 0
    for rep in range(replications):
        ci = bootstrap_sharpe_ci(make_series(rng), n_resamples=400, seed=rep)
        hits += ci.low <= true_sharpe <= ci.high
    return hits / replications


def test_bootstrap_covers_the_true_sharpe_of_iid_returns():
    mu, sigma = 0.001, 0.02
    true = mu / sigma * math.sqrt(365)
    value = coverage(lambda rng: rng.normal(mu, sigma, 500), true)  # measured 0.955
    assert abs(value - 0.95) <= 0.05, value


def test_bootstrap_covers_the_true_sharpe_of_ar1_returns():
    mu, phi, sigma = 0.001, 0.3, 0.02
    true = mu / (sigma / math.sqrt(1 - phi**2)) * math.sqrt(365)

    def ar1(rng: np.random.Generator) -> np.ndarray:
        shocks = rng.normal(0, sigma, 600)
        x = np.empty(600)
        x[0] = shocks[0] / math.sqrt(1 - phi**2)
        for t in range(1, 600):
            x[t] = phi * x[t - 1] + shocks[t]
        return mu + x[100:]

    # Measured 0.91; resampling single days (block length 1) covers only 0.84 of these series.
    value = coverage(ar1, true)
    assert abs(value - 0.95) <= 0.05, value


def test_anova_matches_scipy_and_the_hand_computed_f():
    rors = {"10m": [0.10, 0.20, 0.15], "1h": [0.05, 0.02, 0.08, 0.04], "1d": [-0.01, 0.03]}
    result = anova_across_timeframes(rors)
    groups = [np.array(v) for v in rors.values()]
    grand = np.concatenate(groups).mean()
    between = sum(len(g) * (g.mean() - grand) ** 2 for g in groups) / (3 - 1)
    within = sum(((g - g.mean()) ** 2).sum() for g in groups) / (9 - 3)
    assert result.statistic == pytest.approx(between / within, rel=1e-12)
    assert result.pvalue == pytest.approx(stats.f.sf(between / within, 2, 6), rel=1e-9)
    assert result.pvalue == pytest.approx(stats.f_oneway(*groups).pvalue, rel=1e-12)
    assert result.group_means == pytest.approx({"10m": 0.15, "1h": 0.0475, "1d": 0.01})
    assert result.group_sizes == {"10m": 3, "1h": 4, "1d": 2}


def test_welch_ttest_matches_the_hand_computed_statistic():
    high, low = [0.10, 0.20, 0.15, 0.12], [0.05, 0.02, 0.08]
    result = high_vs_low_frequency_ttest(high, low)
    h, lo = np.array(high), np.array(low)
    vh, vl = h.var(ddof=1) / 4, lo.var(ddof=1) / 3
    t = (h.mean() - lo.mean()) / math.sqrt(vh + vl)
    df = (vh + vl) ** 2 / (vh**2 / 3 + vl**2 / 2)
    assert (result.statistic, result.df) == pytest.approx((t, df), rel=1e-12)
    assert result.pvalue == pytest.approx(2 * stats.t.sf(t, df), rel=1e-9)
    assert (result.mean_high, result.mean_low) == pytest.approx((0.1425, 0.05))
    greater = high_vs_low_frequency_ttest(high, low, alternative="greater")
    assert greater.pvalue == pytest.approx(result.pvalue / 2, rel=1e-9)


def test_group_tests_refuse_small_or_bad_groups():
    with pytest.raises(ValueError, match="at least 2 timeframes"):
        anova_across_timeframes({"1h": [0.1, 0.2]})
    with pytest.raises(ValueError, match="group '1d' needs at least 2 values, got 1"):
        anova_across_timeframes({"1h": [0.1, 0.2], "1d": [0.3]})
    with pytest.raises(ValueError, match="non-finite"):
        anova_across_timeframes({"1h": [0.1, 0.2], "1d": [0.3, np.nan]})
    with pytest.raises(ValueError, match="group 'low' needs at least 2 values"):
        high_vs_low_frequency_ttest([0.1, 0.2], [0.3])
