"""Point-in-time correctness: changing everything after t changes no feature known by t."""

import numpy as np
import pandas as pd
import pytest

from tests.support.warehouses import KEY, read_mart, run_dbt, write_raw

pytestmark = pytest.mark.slow

CUTOFF = pd.Timestamp("2024-01-12 16:00")  # a funding settlement; known at this close


def _perturbed(frames: dict) -> dict:
    """Every raw value timestamped after the cutoff (bars opening at or after it) is changed."""
    rng = np.random.default_rng(1)
    ohlcv = frames["ohlcv"].copy()
    later = ohlcv.ts >= CUTOFF
    shock = np.exp(rng.normal(0, 0.05, later.sum()))
    for col in ("open", "high", "low", "close"):
        ohlcv.loc[later, col] *= shock
    ohlcv.loc[later, "volume"] *= 3.0
    funding = frames["funding_rates"].copy()
    funding.loc[funding.ts > CUTOFF, "funding_rate"] = -0.002
    book = frames["order_book_snapshots"].copy()
    book.loc[book.ts > CUTOFF, "amount"] *= rng.uniform(0.1, 10, (book.ts > CUTOFF).sum())
    return {"ohlcv": ohlcv, "funding_rates": funding, "order_book_snapshots": book}


def test_features_at_or_before_t_ignore_everything_after_t(tmp_path, raw_frames, built_warehouse):
    path = tmp_path / "warehouse.duckdb"
    write_raw(path, _perturbed(raw_frames))
    run_dbt(path, "build")
    base, perturbed = read_mart(built_warehouse), read_mart(path)
    known = base[base.close_ts <= CUTOFF].set_index(KEY).sort_index()
    after = perturbed[perturbed.close_ts <= CUTOFF].set_index(KEY).sort_index()
    assert len(known) > 1000 and known.index.equals(after.index)
    assert set(known.index.get_level_values("timeframe")) == {"1h", "1d"}
    # Not exact: DuckDB's parallel aggregates round in whatever order its threads finish, and the
    # dispersion of two nearly equal bases (a std of 1e-8 from bases of 1e-4) keeps about 12
    # digits of that. A leak of the 5% shocks would differ in the second digit.
    pd.testing.assert_frame_equal(known, after, check_exact=False, rtol=1e-9, atol=0)
    # The perturbation is visible right after t, so the comparison has teeth.
    first_after = (base.close_ts > CUTOFF) & (base.close_ts <= CUTOFF + pd.Timedelta(hours=1))
    changed = base[first_after].set_index(KEY).sort_index()
    assert not np.allclose(
        changed.basis, perturbed.set_index(KEY).loc[changed.index].basis, rtol=1e-9
    )
