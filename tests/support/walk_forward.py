"""The walk-forward as a backfill runs it, for the pipeline tests: one run per fold partition of
``walk_forward_fold``, then ``walk_forward_report``, on a persistent instance; the project's
filesystem IO manager (``build_resources``) hands the folds' outputs to the report. Checks of its
windows and of the stitched report shared by the synthetic and the real-data modules."""

from dataclasses import dataclass

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from evaluation.strategies import BASELINES
from evaluation.walkforward import DEFAULT_PURGE_BARS
from orchestration.assets.walk_forward import N_FOLDS

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


FOLD_RUN_CONFIG = {
    "ops": {
        "walk_forward_fold": {
            "config": {"env": {"decision_interval": 1, "window": 32, "episode_length": 128}}
        }
    }
}
"""Hourly decisions for the folds' tiny training budget: a policy that trades (a daily policy
this small stays flat, and a flat candidate has no probabilistic Sharpe to check)."""


def run_walk(defs: dg.Definitions, home):
    """The 4 fold partitions (a run each, as a backfill launches them) and the report over the
    features ``defs``' warehouse already holds, on one instance under ``home``; yields the
    ``Walk`` with the instance still open."""
    assert N_FOLDS == 4, "PERPFOLIO_WALK_FORWARD_FOLDS must be unset (default 4) for this test"
    (home / "walk-instance").mkdir()
    with dg.instance_for_test(temp_dir=str(home / "walk-instance")) as instance:
        job = defs.resolve_job_def("walk_forward_job")
        folds = [
            job.execute_in_process(run_config=FOLD_RUN_CONFIG, partition_key=k, instance=instance)
            for k in KEYS
        ]
        assert all(r.success for r in folds)
        report_job = defs.resolve_job_def("walk_forward_report_job")
        report = report_job.execute_in_process(instance=instance)
        assert report.success
        yield Walk(defs, instance, folds, report)


def check_windows(walk: Walk) -> list[dict]:
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


def check_report(walk: Walk, times: list[dict]) -> dict:
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
