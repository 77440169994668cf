"""The walk-forward as a backfill would run it: features once, one run per fold partition of
``walk_forward_fold``, then ``walk_forward_report``, on a persistent instance; the project's
filesystem IO manager (``build_resources``) hands the folds' outputs to the report.

The `test` environment's 60 days of hourly bars hold the default 4 folds with the default
200-bar purge (the 32-bar observation window + the 168-bar funding z-score at 1h): the last
quarter is 4 test windows of about 80 bars, fold 0 still trains on about 750 bars. So the
walk-forward settings are the defaults, no override.
"""

from dataclasses import dataclass

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from evaluation.strategies import BASELINES
from evaluation.walkforward import DEFAULT_PURGE_BARS
from orchestration.assets.walk_forward import N_FOLDS
from orchestration.definitions import build_definitions
from orchestration.resources.market_source import FileMarketSource
from tests.support.real_data import cut_copy

pytestmark = pytest.mark.slow

STRATEGIES = {"candidate", *BASELINES}
KEYS = [f"fold-{i}" for i in range(4)]
HOUR = pd.Timedelta(hours=1)


@dataclass
class Walk:
    """What one walk-forward left behind: definitions, instance, per-fold runs and the report."""

    defs: dg.Definitions
    instance: dg.DagsterInstance
    folds: list[dg.ExecuteInProcessResult]
    report: dg.ExecuteInProcessResult

    def fold_outputs(self) -> list[dict]:
        return [r.output_for_node("walk_forward_fold") for r in self.folds]

    def summaries(self) -> list[dict]:
        return [out["fold"] for out in self.fold_outputs()]

    def report_output(self) -> dict:
        return self.report.output_for_node("walk_forward_report")

    def report_metadata(self) -> dict:
        (event,) = self.report.get_asset_materialization_events()
        return {k: v.value for k, v in event.materialization.metadata.items()}

    def ledger_counts(self) -> dict[tuple[str, str], int]:
        with self.defs.resources["warehouse"].connect(read_only=True) as con:
            rows = con.execute(
                "SELECT evaluation_id, strategy, count(*) FROM evaluation.ledger_bars "
                "WHERE evaluation_id LIKE 'walk-forward/%' GROUP BY ALL"
            ).fetchall()
        return {(e, s): n for e, s, n in rows}

    def ledger_span(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        with self.defs.resources["warehouse"].connect(read_only=True) as con:
            first, last = con.execute(
                "SELECT min(ts), max(ts) FROM evaluation.ledger_bars "
                "WHERE evaluation_id LIKE 'walk-forward/%' AND strategy = 'candidate'"
            ).fetchone()
        return pd.Timestamp(first), pd.Timestamp(last)


def _walk(home, resources: dict[str, object] | None = None):
    """Features, the 4 fold partitions (a run each) and the report, on one instance under
    ``home``; yields the ``Walk`` with the instance still open."""
    assert N_FOLDS == 4, "PERPFOLIO_WALK_FORWARD_FOLDS must be unset (default 4) for this test"
    defs = build_definitions("test", resources=resources or {})
    (home / "instance").mkdir()
    with dg.instance_for_test(temp_dir=str(home / "instance")) as instance:
        ingest = defs.resolve_job_def("ingest_features_job").execute_in_process(instance=instance)
        assert ingest.success
        job = defs.resolve_job_def("walk_forward_job")
        folds = [job.execute_in_process(partition_key=k, instance=instance) for k in KEYS]
        assert all(r.success for r in folds)
        report_job = defs.resolve_job_def("walk_forward_report_job")
        report = report_job.execute_in_process(instance=instance)
        assert report.success
        yield Walk(defs, instance, folds, report)


@pytest.fixture(scope="module")
def walk(project_home):
    yield from _walk(project_home)


def _check_windows(walk: Walk) -> list[dict]:
    """Test windows consecutive, each after its train window and the purge; returns them."""
    summaries = walk.summaries()
    assert [s["fold"] for s in summaries] == KEYS
    times = [
        {f"{k}_{e}": pd.Timestamp(s[f"{k}_{e}"]) for k in ("train", "test") for e in ("from", "to")}
        | {"train_bars": s["train_bars"], "test_bars": s["test_bars"]}
        for s in summaries
    ]
    for t in times:
        # "to" is the close of a window's last bar: the purge's 200 bars lie in between.
        assert t["test_from"] - t["train_to"] == DEFAULT_PURGE_BARS * HOUR
        assert t["test_to"] - t["test_from"] == t["test_bars"] * HOUR
        assert t["train_from"] == times[0]["train_from"], "expanding: every fold from bar 0"
    for earlier, later in zip(times[:-1], times[1:], strict=True):
        assert later["test_from"] == earlier["test_to"], "consecutive, disjoint test windows"
        assert later["train_bars"] == earlier["train_bars"] + earlier["test_bars"]
    return times


def _check_report(walk: Walk, times: list[dict]) -> dict:
    """The stitched curve spans the folds' test bars; metrics and statistics of every strategy."""
    report = walk.report_output()
    n_oos = sum(t["test_bars"] for t in times)
    assert report["folds"] == KEYS
    assert report["n_oos_bars"] == n_oos
    assert pd.Timestamp(report["first_oos_ts"]) == times[0]["test_from"]
    assert {m["n_bars"] for m in report["metrics"].values()} == {n_oos}
    first_close, last_close = walk.ledger_span()
    assert (first_close, last_close) == (times[0]["test_from"] + HOUR, times[-1]["test_to"])
    assert set(report["metrics"]) == set(report["sharpe_ci"]) == STRATEGIES
    for low, high in report["sharpe_ci"].values():
        assert low <= high
    assert report["best_baseline"] in BASELINES
    low, high = report["sharpe_difference_ci"]
    assert np.isfinite(low) and low <= high
    for name in ("probabilistic_sharpe", "deflated_sharpe"):
        assert 0.0 <= report[name] <= 1.0, (name, report[name])
    # The first report on these data is the deflated Sharpe's one trial: no deflation.
    assert report["n_trials"] == 1
    assert report["deflated_sharpe"] == pytest.approx(report["probabilistic_sharpe"])
    table = pd.DataFrame(report["fold_table"])
    assert list(table["fold"]) == KEYS
    assert list(table["test_bars"]) == [t["test_bars"] for t in times]
    for name in STRATEGIES:
        assert table[f"{name}_sharpe"].notna().all() and table[f"{name}_ror"].notna().all()
    assert (table["cash_ror"] == 0).all()
    counts = walk.ledger_counts()
    assert counts == {
        (f"walk-forward/{k}", name): t["test_bars"]
        for k, t in zip(KEYS, times, strict=True)
        for name in STRATEGIES
    }
    return report


def test_each_fold_partition_is_its_own_materialization_with_metadata(walk):
    for key, run in zip(KEYS, walk.folds, strict=True):
        (event,) = run.get_asset_materialization_events()
        assert event.partition == key
        meta = {k: v.value for k, v in event.materialization.metadata.items()}
        assert meta["fold"] == key
        assert int(meta["test_bars"]) >= 75 and int(meta["train_bars"]) >= 700
        assert np.isfinite(meta["candidate_sharpe"]) and np.isfinite(meta["candidate_ror"])
        assert {f"{n}_sharpe" for n in BASELINES} <= set(meta)
        assert meta["cash_sharpe"] == 0.0
        assert meta["train_seconds"] > 0
    records = walk.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("walk_forward_fold")), limit=10
    ).records
    assert sorted(r.partition_key for r in records) == KEYS
    for out in walk.fold_outputs():
        assert set(out["metrics"]) == set(out["ledgers"]) == STRATEGIES
        assert out["run_id"]


def test_folds_test_windows_are_consecutive_and_purged_after_their_train(walk):
    times = _check_windows(walk)
    # 60 days less the features' warm-up; the last quarter split in 4, the later ones longer.
    bars = [t["test_bars"] for t in times]
    assert max(bars) - min(bars) <= 1 and 300 <= sum(bars) <= 360


def test_report_stitches_the_folds_with_metrics_and_statistics(walk):
    _check_report(walk, _check_windows(walk))


def test_report_metadata_has_the_plots_and_the_fold_table(walk):
    meta = walk.report_metadata()
    assert meta["folds"] == 4
    assert meta["n_oos_bars"] == walk.report_output()["n_oos_bars"]
    plots = {k: v for k, v in meta.items() if k.startswith("plot_")}
    assert "plot_equity" in plots and len(plots) >= 2
    for image in plots.values():
        assert image.startswith("![") and "data:image/png;base64," in image
    rows = [line for line in meta["fold_table"].splitlines() if line.startswith("| fold-")]
    assert [row.split("|")[1].strip() for row in rows] == KEYS
    assert {f"{n}_sharpe" for n in STRATEGIES} <= set(meta)


def test_rerunning_one_fold_replaces_its_ledger_rows_and_the_report_counts_trials(walk):
    before = walk.ledger_counts()
    job = walk.defs.resolve_job_def("walk_forward_job")
    again = job.execute_in_process(partition_key="fold-2", instance=walk.instance)
    assert again.success
    assert walk.ledger_counts() == before
    assert sum(n for (e, _), n in before.items() if e == "walk-forward/fold-2") == 7 * int(
        walk.summaries()[2]["test_bars"]
    )
    report = walk.defs.resolve_job_def("walk_forward_report_job").execute_in_process(
        instance=walk.instance
    )
    second = report.output_for_node("walk_forward_report")
    assert second["n_oos_bars"] == walk.report_output()["n_oos_bars"]
    assert second["n_trials"] == 2, "the first report on the same data is a trial"
    assert second["deflated_sharpe"] <= second["probabilistic_sharpe"]


@pytest.fixture(scope="module")
def real_walk(tmp_path_factory):
    """The walk on BTC and ETH of 2021-03-20 .. 2021-05-19 (60 days, like `test`), in its own
    project folder; skips where the real data is absent."""
    home = tmp_path_factory.mktemp("perpfolio-home-real")
    data = cut_copy(home / "data", ("BTC", "ETH"), "2021-03-20", "2021-05-19")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PERPFOLIO_HOME", str(home))
        source = FileMarketSource(kind="freqtrade", path=str(data))
        yield from _walk(home, {"market_source": source})


def test_walk_forward_on_real_data(real_walk):
    times = _check_windows(real_walk)
    report = _check_report(real_walk, times)
    assert report["n_oos_bars"] > 300
    assert real_walk.fold_outputs()[0]["ledgers"]["candidate"].symbols == ("BTC", "ETH")
    meta = real_walk.report_metadata()
    assert "data:image/png;base64," in meta["plot_equity"]
