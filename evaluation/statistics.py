"""Statistics of daily returns: Sharpe ratio, bootstrap intervals, PSR/DSR, timeframe tests.

Every Sharpe ratio here is computed from DAILY simple returns and annualized with
``sqrt(365)`` (crypto trades every day), by one implementation (``sharpe_ratios``) that the
metrics, the bootstrap and the probabilistic ratios share.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from arch.bootstrap import StationaryBootstrap, optimal_block_length
from numpy.typing import ArrayLike
from scipy import stats

DAYS_PER_YEAR = 365
"""Days in a year of a market open every day: the annualization of daily ratios."""
ZERO_TOLERANCE = 1e-12
"""A daily mean or standard deviation below this (in absolute value) counts as zero."""
EULER_GAMMA = float(np.euler_gamma)
"""Euler–Mascheroni constant, in the expected maximum Sharpe ratio of N trials."""


def sharpe_ratios(returns: ArrayLike) -> np.ndarray:
    """Annualized Sharpe ratio of each row of a (K, D) matrix of daily returns.

    ``mean / std(ddof=1) * sqrt(365)`` per row. A row whose standard deviation is zero (below
    ``ZERO_TOLERANCE``) has Sharpe 0 if its mean is zero too (cash) and NaN otherwise; fewer
    than 2 returns give NaN (not enough data).
    """
    matrix = np.atleast_2d(np.asarray(returns, dtype=float))
    if matrix.shape[1] < 2:
        return np.full(matrix.shape[0], np.nan)
    mean = matrix.mean(axis=1)
    std = matrix.std(axis=1, ddof=1)
    zero_std = std < ZERO_TOLERANCE
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = mean / std * np.sqrt(DAYS_PER_YEAR)
    return np.where(zero_std, np.where(np.abs(mean) < ZERO_TOLERANCE, 0.0, np.nan), ratio)


def sharpe_ratio(daily_returns: ArrayLike) -> float:
    """Annualized Sharpe ratio of daily returns: ``mean / std(ddof=1) * sqrt(365)``.

    Zero standard deviation: 0 if the mean is 0 (cash), else NaN; fewer than 2 returns: NaN.
    """
    return float(sharpe_ratios(_as_1d(daily_returns))[0])


@dataclass(frozen=True)
class ConfidenceInterval:
    """A bootstrap percentile interval of an annualized Sharpe ratio (or of a difference)."""

    low: float
    """Lower bound: the ``(1 - level) / 2`` quantile of the resampled statistic."""
    high: float
    """Upper bound: the ``(1 + level) / 2`` quantile of the resampled statistic."""
    estimate: float
    """The statistic on the original series."""
    block_length: float
    """Mean block length (days) of the stationary bootstrap that drew the resamples."""


def block_length(returns: ArrayLike) -> float:
    """Stationary-bootstrap mean block length of a series: the ``stationary`` column of arch's
    ``optimal_block_length`` (Politis & White 2004), at least 1 day (1 for a constant series)."""
    x = _as_1d(returns)
    if len(x) < 2 or np.std(x) < ZERO_TOLERANCE:
        return 1.0
    value = float(optimal_block_length(x)["stationary"].iloc[0])
    return max(1.0, value) if np.isfinite(value) else 1.0


def resample_indices(n: int, block: float, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n) index sets of arch's ``StationaryBootstrap`` with mean block ``block``,
    drawn through its documented ``bootstrap`` iterator and ``index`` (same seed, same sets)."""
    # arch types block_size as int, but the stationary bootstrap only uses 1 / block_size: a
    # mean block length need not be whole (Politis & White 2004).
    bs = StationaryBootstrap(block, np.arange(n), seed=seed)  # type: ignore[arg-type]
    return np.stack([np.asarray(bs.index, dtype=np.int64) for _ in bs.bootstrap(n_resamples)])


def bootstrap_sharpe_ci(
    returns: ArrayLike, *, n_resamples: int = 1_000, level: float = 0.95, seed: int = 0
) -> ConfidenceInterval:
    """Percentile interval of the annualized Sharpe ratio of daily ``returns`` by a stationary
    block bootstrap (Politis & Romano 1994), its block length from ``block_length``.

    The resamples' Sharpe ratios are computed at once over a (resamples, days) matrix; a
    resample whose Sharpe is undefined (constant, nonzero) is left out of the quantiles. Seeded:
    the same seed gives the same interval. Fewer than 2 returns, or a NaN estimate: all NaN.
    """
    x = _as_1d(returns)
    _check_level(level)
    estimate = sharpe_ratio(x)
    if not np.isfinite(estimate):
        return ConfidenceInterval(np.nan, np.nan, estimate, np.nan)
    block = block_length(x)
    indices = resample_indices(len(x), block, n_resamples, seed)
    low, high = _percentile_interval(sharpe_ratios(x[indices]), level)
    return ConfidenceInterval(low, high, estimate, block)


def bootstrap_sharpe_cis(
    returns: pd.DataFrame | Mapping[str, ArrayLike],
    *,
    n_resamples: int = 1_000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, ConfidenceInterval]:
    """``bootstrap_sharpe_ci`` of each strategy's daily returns (a DataFrame's columns or a
    mapping), each with its own block length and the same ``seed``: strategy ``s``'s interval
    equals ``bootstrap_sharpe_ci(returns[s], seed=seed)``."""
    return {
        str(name): bootstrap_sharpe_ci(r, n_resamples=n_resamples, level=level, seed=seed)
        for name, r in returns.items()
    }


def bootstrap_sharpe_difference_ci(
    a: ArrayLike | pd.Series,
    b: ArrayLike | pd.Series,
    *,
    n_resamples: int = 1_000,
    level: float = 0.95,
    seed: int = 0,
) -> ConfidenceInterval:
    """Percentile interval of ``Sharpe(a) - Sharpe(b)`` on paired daily returns.

    Both series are resampled with the same stationary-bootstrap index sets, so their
    dependence is kept (a series against itself gives exactly ``[0, 0]``). Two ``pd.Series``
    must have the same index (dates), two arrays the same length; otherwise ``ValueError``. The
    block length is the larger of the two series' ``block_length``.
    """
    _check_level(level)
    if isinstance(a, pd.Series) and isinstance(b, pd.Series) and not a.index.equals(b.index):
        raise ValueError(
            f"paired returns need the same dates: {len(a)} days "
            f"({_span(a.index)}) vs {len(b)} days ({_span(b.index)})"
        )
    x, y = _as_1d(a), _as_1d(b)
    if len(x) != len(y):
        raise ValueError(f"paired returns need the same length: {len(x)} vs {len(y)}")
    estimate = sharpe_ratio(x) - sharpe_ratio(y)
    if not np.isfinite(estimate):
        return ConfidenceInterval(np.nan, np.nan, estimate, np.nan)
    block = max(block_length(x), block_length(y))
    indices = resample_indices(len(x), block, n_resamples, seed)
    low, high = _percentile_interval(sharpe_ratios(x[indices]) - sharpe_ratios(y[indices]), level)
    return ConfidenceInterval(low, high, estimate, block)


def probabilistic_sharpe_ratio(returns: ArrayLike, benchmark_sharpe: float = 0.0) -> float:
    """Probability that the true Sharpe ratio exceeds ``benchmark_sharpe`` (Bailey & López de
    Prado 2012).

    Units: ``returns`` are daily simple returns; ``benchmark_sharpe`` is ANNUALIZED (like
    ``sharpe_ratio``) and is turned into a daily one by ``/ sqrt(365)``. With the daily Sharpe
    ``SR = mean / std(ddof=1)``, the biased sample skewness ``g3 = m3 / m2**1.5`` and the
    NON-excess kurtosis ``g4 = m4 / m2**2`` (3 for a normal law; ``m_k`` the central moments)
    over ``T`` returns:

        PSR = Phi((SR - SR*) * sqrt(T - 1) / sqrt(1 - g3 * SR + (g4 - 1) / 4 * SR**2))

    NaN when the Sharpe ratio is undefined, the series is constant or has fewer than 2 returns.
    """
    x = _as_1d(returns)
    sr = sharpe_ratio(x) / np.sqrt(DAYS_PER_YEAR)
    if not np.isfinite(sr) or len(x) < 2 or np.std(x) < ZERO_TOLERANCE:
        return float("nan")
    g3 = float(stats.skew(x, bias=True))
    g4 = float(stats.kurtosis(x, fisher=False, bias=True))
    variance = 1.0 - g3 * sr + (g4 - 1.0) / 4.0 * sr**2
    if not variance > 0:
        return float("nan")
    target = benchmark_sharpe / np.sqrt(DAYS_PER_YEAR)
    z = (sr - target) * np.sqrt(len(x) - 1) / np.sqrt(variance)
    return float(stats.norm.cdf(z))


def expected_max_sharpe(n_trials: int, trial_sharpe_variance: float) -> float:
    """Expected maximum Sharpe ratio of ``n_trials`` independent trials of true Sharpe 0:

        SR0 = sqrt(V) * ((1 - gamma) * Phi^-1(1 - 1/N) + gamma * Phi^-1(1 - 1/(N e)))

    with ``gamma`` the Euler–Mascheroni constant, in the units of ``V``'s Sharpe ratios;
    ``N = 1`` or ``V = 0`` gives 0.
    """
    if n_trials < 1:
        raise ValueError(f"n_trials must be at least 1, got {n_trials}")
    if not trial_sharpe_variance >= 0:
        raise ValueError(f"trial_sharpe_variance must be >= 0, got {trial_sharpe_variance}")
    if n_trials == 1 or trial_sharpe_variance == 0:
        return 0.0
    quantiles = (
        (1 - EULER_GAMMA) * stats.norm.ppf(1 - 1 / n_trials)
        + EULER_GAMMA * stats.norm.ppf(1 - 1 / (n_trials * np.e))
    )  # fmt: skip
    return float(np.sqrt(trial_sharpe_variance) * quantiles)


def trial_sharpe_variance(sharpes: Sequence[float]) -> float:
    """Variance (ddof 1) of the trials' annualized Sharpe ratios, the deflated ratio's ``V``:
    non-finite ones left out, 0 with fewer than two finite ones."""
    finite = [float(v) for v in sharpes if np.isfinite(v)]
    return float(np.var(finite, ddof=1)) if len(finite) >= 2 else 0.0


def deflated_sharpe_ratio(returns: ArrayLike, n_trials: int, trial_sharpe_variance: float) -> float:
    """Deflated Sharpe ratio (Bailey & López de Prado 2014): ``PSR(SR0)``, the probability that
    the true Sharpe ratio exceeds the maximum expected from ``n_trials`` trials of no skill.

    Units: ``returns`` are daily simple returns; ``trial_sharpe_variance`` is the variance
    across the trials of their ANNUALIZED Sharpe ratios (``PerformanceMetrics.sharpe``);
    ``SR0 = expected_max_sharpe(n_trials, trial_sharpe_variance)`` is annualized too and enters
    ``probabilistic_sharpe_ratio`` as its benchmark, i.e. ``SR0 / sqrt(365)`` per day. One
    trial or zero variance: ``SR0 = 0`` and ``DSR = PSR(0)``.
    """
    return probabilistic_sharpe_ratio(returns, expected_max_sharpe(n_trials, trial_sharpe_variance))


@dataclass(frozen=True)
class AnovaResult:
    """One-way ANOVA of RORs grouped by timeframe."""

    statistic: float
    """F statistic."""
    pvalue: float
    """p-value of equal group means."""
    group_means: dict[str, float]
    """Mean ROR of each group (timeframe)."""
    group_sizes: dict[str, int]
    """Number of RORs (folds or symbols) in each group."""


@dataclass(frozen=True)
class TTestResult:
    """Welch's two-sample t-test of high- against low-frequency RORs."""

    statistic: float
    """t statistic of ``mean(high) - mean(low)``."""
    pvalue: float
    """p-value under ``alternative``."""
    df: float
    """Welch–Satterthwaite degrees of freedom."""
    mean_high: float
    """Mean ROR of the high-frequency group."""
    mean_low: float
    """Mean ROR of the low-frequency group."""
    alternative: str
    """``two-sided``, ``greater`` (high > low) or ``less``."""


def anova_across_timeframes(rors: Mapping[str, Sequence[float]]) -> AnovaResult:
    """One-way ANOVA (``scipy.stats.f_oneway``) of per-fold or per-symbol RORs, one group per
    timeframe (Chun & Lee 2025). At least 2 groups of at least 2 finite values each."""
    if len(rors) < 2:
        raise ValueError(f"ANOVA needs at least 2 timeframes, got {len(rors)}")
    groups = {name: _group(name, values) for name, values in rors.items()}
    result = stats.f_oneway(*groups.values())
    return AnovaResult(
        statistic=float(result.statistic),
        pvalue=float(result.pvalue),
        group_means={name: float(g.mean()) for name, g in groups.items()},
        group_sizes={name: len(g) for name, g in groups.items()},
    )


def high_vs_low_frequency_ttest(
    high: Sequence[float], low: Sequence[float], *, alternative: str = "two-sided"
) -> TTestResult:
    """Welch's t-test (``scipy.stats.ttest_ind(equal_var=False)``) of the RORs of high- against
    low-frequency timeframes (Chun & Lee 2025). Each group needs at least 2 finite values."""
    h, lo = _group("high", high), _group("low", low)
    result = stats.ttest_ind(h, lo, equal_var=False, alternative=alternative)
    return TTestResult(
        statistic=float(result.statistic),
        pvalue=float(result.pvalue),
        df=float(result.df),
        mean_high=float(h.mean()),
        mean_low=float(lo.mean()),
        alternative=alternative,
    )


def _as_1d(values: ArrayLike | pd.Series) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    if x.ndim != 1:
        raise ValueError(f"expected a 1-D series of daily returns, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("daily returns must be finite")
    return x


def _group(name: str, values: Sequence[float]) -> np.ndarray:
    g = np.asarray(values, dtype=float)
    if g.ndim != 1 or len(g) < 2:
        raise ValueError(f"group {name!r} needs at least 2 values, got {np.size(g)}")
    if not np.all(np.isfinite(g)):
        raise ValueError(f"group {name!r} has non-finite values")
    return g


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")


def _percentile_interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    finite = samples[np.isfinite(samples)]
    if len(finite) == 0:
        return float("nan"), float("nan")
    low, high = np.percentile(finite, [50 * (1 - level), 50 * (1 + level)])
    return float(low), float(high)


def _span(index: pd.Index) -> str:
    return f"{index[0]} to {index[-1]}" if len(index) else "empty"
