"""A failing Great Expectations check on the feature mart stops training in the same run."""

from dataclasses import replace

import pandas as pd
import pytest

from orchestration.definitions import build_definitions
from orchestration.resources.market_source import SyntheticMarketSource

pytestmark = pytest.mark.slow

BAD_SYMBOL = "ETH"
BAD_BAR = pd.Timestamp("2024-01-10 05:00")


class SpotCrashSource(SyntheticMarketSource):
    """The synthetic market with one spot bar at two thirds of its price: a basis of +50%."""

    def fetch(self, start=None, end=None, resume=None):
        market = super().fetch(start, end, resume)
        ohlcv = market.ohlcv.copy()
        row = (
            (ohlcv["market"] == "spot") & (ohlcv["symbol"] == BAD_SYMBOL) & (ohlcv["ts"] == BAD_BAR)
        )
        assert row.sum() == 1
        ohlcv.loc[row, ["open", "high", "low", "close"]] *= 2 / 3
        return replace(market, ohlcv=ohlcv)


def test_a_basis_of_50_percent_fails_the_check_and_blocks_training(project_home):
    test_source = build_definitions("test").resources["market_source"]
    defs = build_definitions(
        "test",
        resources={"market_source": SpotCrashSource(**test_source.model_dump())},
    )
    result = defs.resolve_job_def("retraining_job").execute_in_process(raise_on_error=False)

    checks = {c.asset_check_key.name: c for c in result.get_asset_check_evaluations()}
    failed = checks["feature_mart_expectations_check"]
    assert not failed.passed
    assert "basis" in failed.description
    assert f"symbol={BAD_SYMBOL}" in failed.description
    assert "2024-01-10 05:00:00" in failed.description

    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "marts/fct_features" in materialized
    assert not materialized & {"trained_policy", "policy_evaluation", "champion_model"}
