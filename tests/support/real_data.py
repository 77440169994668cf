"""Four years of real Binance data (``../shared/data/binance-1h-2020-2023``) and small cut copies
of it, for tests that need real gaps and real prices but not the whole history."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

REAL_1H = Path(__file__).resolve().parents[3] / "shared" / "data" / "binance-1h-2020-2023"
REAL_SYMBOLS = ("ADA", "BTC", "ETH", "LTC", "XRP")


def real_1h_dir() -> Path:
    """The real directory; skips the calling test when it is not there."""
    if not (REAL_1H / "futures").is_dir():
        pytest.skip(f"real Binance 1h data not found at {REAL_1H} (../shared/data/...)")
    return REAL_1H


def cut_copy(
    destination: Path,
    symbols: tuple[str, ...],
    start: str,
    end: str,
    with_mark: bool = True,
) -> Path:
    """A freqtrade directory under ``destination`` with the real files of ``symbols``, rows in
    [start, end) only (funding included), in the same layout and format."""
    source = real_1h_dir()
    lo, hi = pd.Timestamp(start, tz="UTC"), pd.Timestamp(end, tz="UTC")
    for path in sorted(source.rglob("*.feather")):
        symbol = path.name.split("_")[0]
        if symbol not in symbols or (not with_mark and path.name.endswith("-mark.feather")):
            continue
        frame = pd.read_feather(path)
        kept = frame[(frame["date"] >= lo) & (frame["date"] < hi)].reset_index(drop=True)
        target = destination / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        kept.to_feather(target)
    return destination
