"""The raw suites refuse times no market data can have (a misread epoch unit)."""

import duckdb
import pandas as pd
import pytest

from quality.suites import run_suite, suites
from tests.support.warehouses import synthetic_raw, write_raw


@pytest.fixture(scope="module")
def clean() -> dict:
    return synthetic_raw(n_symbols=2, days=3)


def as_if_seconds_were_read_as_milliseconds(frame: pd.DataFrame, symbol: str) -> pd.DataFrame:
    """The symbol's times as an importer reading epoch seconds as milliseconds stores them."""
    rows = frame["symbol"] == symbol
    seconds = frame.loc[rows, "ts"].astype("datetime64[s]").astype("int64")
    out = frame.copy()
    out.loc[rows, "ts"] = pd.to_datetime(seconds, unit="ms")
    return out


def validate(tmp_path, frames: dict, suite: str):
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / "warehouse.duckdb"
    write_raw(path, frames)
    with duckdb.connect(str(path), read_only=True) as con:
        return run_suite(con, suites()[suite])


@pytest.mark.parametrize(("table", "suite"), [("ohlcv", "raw_ohlcv"),
                                              ("funding_rates", "raw_funding_rates")])  # fmt: skip
def test_bars_and_settlements_in_1970_fail_the_raw_suite_naming_them(tmp_path, clean, table, suite):
    assert validate(tmp_path / "clean", clean, suite).success
    bad = as_if_seconds_were_read_as_milliseconds(clean[table], "ETH")
    result = validate(tmp_path / "bad", {**clean, table: bad}, suite)
    failed = {o.column: o for o in result.failures}
    assert failed["ts_is_plausible"].unexpected_count == int(
        (clean[table]["symbol"] == "ETH").sum()
    )
    assert "symbol=ETH" in failed["ts_is_plausible"].describe()
    assert "1970-01-" in failed["ts_is_plausible"].describe()
