"""The pipeline on a cut copy of real Binance data: the configured venue and symbols are trained
on, and a real spot gap (maintenance, 2021-04-25 05:00-07:00 UTC) is recorded and flagged."""

import dagster as dg
import duckdb
import pandas as pd
import pytest

from orchestration.assets.evaluation import policy_evaluation
from orchestration.assets.features import dbt_features
from orchestration.assets.ingestion import raw_market_data
from orchestration.assets.training import trained_policy
from orchestration.checks import QUALITY_CHECKS
from orchestration.definitions import build_definitions
from orchestration.project import ProjectPaths
from orchestration.resources import build_resources
from orchestration.resources.market_source import FileMarketSource
from tests.support.real_data import cut_copy
from tests.support.walk_forward import check_report, check_windows, run_walk

pytestmark = pytest.mark.slow

GAP = pd.date_range("2021-04-25 05:00", "2021-04-25 07:00", freq="h")


@pytest.fixture(scope="module")
def run(project_home):
    data = cut_copy(project_home / "data", ("BTC", "ETH"), "2021-03-20", "2021-05-19")
    resources = {
        **build_resources("test"),
        "market_source": FileMarketSource(kind="freqtrade", path=str(data)),
    }
    result = dg.materialize(
        [raw_market_data, dbt_features, trained_policy, policy_evaluation, *QUALITY_CHECKS],
        resources=resources,
        raise_on_error=False,
    )
    assert result.success, [
        str(e.event_specific_data.error) for e in result.get_step_failure_events()
    ]
    return result


def _metadata(result, key: str) -> dict:
    (event,) = [
        e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == key
    ]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def _query(sql: str) -> list[tuple]:
    with duckdb.connect(str(ProjectPaths.from_env().warehouse), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_training_uses_the_configured_venue_and_symbols(run):
    trained = run.output_for_node("trained_policy")
    assert trained["venue"] == "binance"
    assert trained["symbols"] == ["BTC", "ETH"]
    meta = _metadata(run, "trained_policy")
    assert meta["symbols"] == "BTC, ETH"
    assert meta["filled_asset_bars"] == 2 * (2 + 3), "2021-04-20 (2 h) and 2021-04-25 (3 h)"
    assert run.output_for_node("policy_evaluation")["n_oos_bars"] > 300
    ingested = _metadata(run, "raw/ohlcv")
    assert ingested["venue"] == "binance" and ingested["source"] == "freqtrade"
    assert ingested["files_read"] == 8 and ingested["mark_from_perp_close"] == "none"


def test_the_spot_gap_is_recorded_and_checks_pass(run):
    assert all(c.passed for c in run.get_asset_check_evaluations())
    gaps = _query(
        "SELECT symbol, gap_start, gap_end, missing_bars FROM raw.data_gaps "
        "WHERE market = 'spot' AND gap_start = '2021-04-25 05:00' ORDER BY symbol"
    )
    assert gaps == [(s, GAP[0], GAP[-1], 3) for s in ("BTC", "ETH")]
    assert _query("SELECT count(*) FROM raw.data_gaps WHERE market <> 'spot'") == [(0,)]


def test_the_gap_bars_are_flagged_and_carry_the_last_spot_close(run):
    rows = _query(
        "SELECT f.ts, f.filled, f.spot_close, s.close FROM marts.fct_features f "
        "JOIN raw.ohlcv s ON s.market = 'spot' AND s.symbol = f.symbol AND s.timeframe = '1h' "
        "AND s.ts = '2021-04-25 04:00' "
        "WHERE f.symbol = 'BTC' AND f.timeframe = '1h' "
        "AND f.ts BETWEEN '2021-04-25 04:00' AND '2021-04-25 08:00' ORDER BY f.ts"
    )
    assert [r[1] for r in rows] == [0, 1, 1, 1, 0]
    assert all(spot == last for _, _, spot, last in rows[:4])
    assert rows[4][2] != rows[4][3], "the 08:00 spot bar is real again"
    filled = _query("SELECT count(*) FROM marts.fct_features WHERE timeframe = '1h' AND filled = 1")
    assert filled == [(10,)]


@pytest.fixture(scope="module")
def real_walk(run, project_home):
    """The 4-fold walk on the module's real BTC and ETH bars (60 days, like `test`)."""
    source = FileMarketSource(kind="freqtrade", path=str(project_home / "data"))
    defs = build_definitions("test", resources={"market_source": source})
    yield from run_walk(defs, project_home)


def test_walk_forward_on_real_data(real_walk):
    times = check_windows(real_walk)
    report = check_report(real_walk, times)
    assert report["n_oos_bars"] > 300
    assert real_walk.fold_outputs()[0]["ledgers"]["candidate"].symbols == ("BTC", "ETH")
    meta = real_walk.report_metadata()
    assert "data:image/png;base64," in meta["plot_equity"]
