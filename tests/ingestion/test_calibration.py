"""The synthetic market against two months of real Binance data, per asset.

Tolerances (synthetic: one year of hourly bars, seed 7; real: Jan-Feb 2026):
- hourly return volatility within 25 % (relative);
- excess kurtosis fat-tailed (> 1) and within a factor 3 of the real one;
- lag-1 autocorrelation of squared returns within 0.15 (absolute; both estimates are noisy);
- mean cross-asset return correlation within 0.10 (absolute);
- basis median within 3 bp; basis 1st and 99th percentiles within max(8 bp, 50 %);
- funding median within 1 bp, 5th percentile within 3 bp, 95th percentile within 1 bp.
"""

import pandas as pd
import pytest

from ingestion.calibration import market_stats
from ingestion.importers import import_freqtrade_frames
from ingestion.synthetic import SyntheticMarketConfig, generate_market
from ingestion.universe import BINANCE_SAMPLE


@pytest.fixture(scope="module")
def stats(sample_dir):
    real = import_freqtrade_frames(sample_dir)
    synthetic = generate_market(
        SyntheticMarketConfig(symbols=BINANCE_SAMPLE, n_bars=24 * 365, seed=7, order_book_levels=0)
    )
    return (
        market_stats(real.ohlcv, real.funding_rates, "binance"),
        market_stats(synthetic.ohlcv, synthetic.funding_rates, "synthetic"),
    )


def within(real: pd.Series, syn: pd.Series, ok: pd.Series, what: str) -> None:
    bad = pd.DataFrame({"real": real, "synthetic": syn})[~ok]
    assert bad.empty, f"{what} off for:\n{bad}"


def test_volatility_tails_and_clustering(stats):
    real, syn = stats
    ratio = syn["hourly_vol"] / real["hourly_vol"]
    within(real["hourly_vol"], syn["hourly_vol"], (ratio - 1).abs() <= 0.25, "hourly vol")
    k_real, k_syn = real["excess_kurtosis"], syn["excess_kurtosis"]
    ok = (k_syn > 1) & (k_syn <= 3 * k_real) & (k_syn >= k_real / 3)
    within(k_real, k_syn, ok, "excess kurtosis")
    a_real, a_syn = real["sq_return_acf1"], syn["sq_return_acf1"]
    within(a_real, a_syn, (a_syn - a_real).abs() <= 0.15, "squared-return autocorrelation")


def test_cross_asset_correlation(stats):
    real, syn = stats
    ok = (syn["mean_corr"] - real["mean_corr"]).abs() <= 0.10
    within(real["mean_corr"], syn["mean_corr"], ok, "mean correlation")


def test_basis_distribution(stats):
    real, syn = stats
    med = (syn["basis_median_bp"] - real["basis_median_bp"]).abs() <= 3
    within(real["basis_median_bp"], syn["basis_median_bp"], med, "basis median")
    for col in ("basis_p01_bp", "basis_p99_bp"):
        tol = (real[col].abs() * 0.5).clip(lower=8.0)
        within(real[col], syn[col], (syn[col] - real[col]).abs() <= tol, col)


def test_funding_distribution(stats):
    real, syn = stats
    for col, tol in (("funding_median_bp", 1.0), ("funding_p05_bp", 3.0), ("funding_p95_bp", 1.0)):
        within(real[col], syn[col], (syn[col] - real[col]).abs() <= tol, col)
