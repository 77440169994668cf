"""Statistics that calibrate the synthetic market against real data (same code for both)."""

from __future__ import annotations

import numpy as np
import pandas as pd

STAT_NAMES = (
    "hourly_vol",
    "excess_kurtosis",
    "sq_return_acf1",
    "mean_corr",
    "basis_p01_bp",
    "basis_median_bp",
    "basis_p99_bp",
    "funding_p05_bp",
    "funding_median_bp",
    "funding_p95_bp",
)


def market_stats(ohlcv: pd.DataFrame, funding: pd.DataFrame, venue: str) -> pd.DataFrame:
    """Per-symbol statistics of one venue's 1h bars and funding (rows: symbols).

    ``mean_corr`` is the symbol's mean correlation of hourly log returns with the others;
    basis = (perp close - spot close) / spot close; funding is per settlement.
    """
    bars = ohlcv[(ohlcv["venue"] == venue) & (ohlcv["timeframe"] == "1h")]
    close = bars.pivot_table(index="ts", columns=["market", "symbol"], values="close")
    perp, spot = close["perp"], close["spot"]
    rets = np.log(perp).diff().iloc[1:]
    corr = rets.corr()
    rows = {}
    for sym in perp.columns:
        r = rets[sym].dropna()
        d = r - r.mean()
        sq = d**2
        basis = ((perp[sym] - spot[sym]) / spot[sym]).dropna() * 1e4
        f = funding[(funding["venue"] == venue) & (funding["symbol"] == sym)]["funding_rate"]
        f = f * 1e4
        others = corr[sym].drop(sym)
        rows[sym] = {
            "hourly_vol": float(r.std()),
            "excess_kurtosis": float((d**4).mean() / (d**2).mean() ** 2 - 3.0),
            "sq_return_acf1": float(np.corrcoef(sq.iloc[:-1], sq.iloc[1:])[0, 1]),
            "mean_corr": float(others.mean()) if len(others) else float("nan"),
            "basis_p01_bp": float(basis.quantile(0.01)),
            "basis_median_bp": float(basis.median()),
            "basis_p99_bp": float(basis.quantile(0.99)),
            "funding_p05_bp": float(f.quantile(0.05)),
            "funding_median_bp": float(f.median()),
            "funding_p95_bp": float(f.quantile(0.95)),
        }
    return pd.DataFrame.from_dict(rows, orient="index")[list(STAT_NAMES)]
