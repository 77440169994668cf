"""The training sweep as a backfill runs it: a few partitions, a run each, then the report, on a
synthetic hourly market long enough for 1d bars (the mart holds 1h and 1d, no 10m)."""

import dagster as dg
import mlflow
import pytest

from evaluation.statistics import anova_across_timeframes, high_vs_low_frequency_ttest
from orchestration.assets.sweep import (
    SWEEP_PARTITIONS,
    SweepPoint,
    parse_sweep_key,
    sweep_partition_keys,
)
from orchestration.definitions import build_definitions
from orchestration.resources.market_source import SyntheticMarketSource

pytestmark = pytest.mark.slow

KEYS = ["A2C-1h-seed0", "A2C-1d-seed0"]
SYMBOLS = 3
RUN_CONFIG = {"ops": {"training_sweep": {"config": {"total_timesteps": 512, "env": {"window": 8}}}}}


def test_partition_keys_parse_and_cover_the_sweep():
    keys = sweep_partition_keys()
    assert len(keys) == 3 * 4 * 3
    assert SWEEP_PARTITIONS.get_partition_keys() == keys
    assert parse_sweep_key("A2C-1h-seed0") == SweepPoint("A2C", "1h", 0)
    assert parse_sweep_key("SAC-10m-seed2") == SweepPoint("SAC", "10m", 2)
    assert [parse_sweep_key(k).key for k in keys] == keys
    for bad in ("A2C-1h", "DQN-1h-seed0", "A2C-5m-seed0", "a2c-1h-seed0"):
        with pytest.raises(ValueError, match="sweep partition key"):
            parse_sweep_key(bad)


@pytest.fixture(scope="module")
def sweep(project_home):
    """Ingest and features once, the two supported A2C partitions, the 10m one, the report."""
    market = SyntheticMarketSource(n_symbols=SYMBOLS, n_bars=24 * 240, seed=7)
    defs = build_definitions("test", resources={"market_source": market})
    (project_home / "instance").mkdir()
    with dg.instance_for_test(temp_dir=str(project_home / "instance")) as instance:
        ingest = defs.resolve_job_def("ingest_features_job").execute_in_process(instance=instance)
        assert ingest.success
        job = defs.resolve_job_def("paper_sweep_job")
        runs = {
            key: job.execute_in_process(
                run_config=RUN_CONFIG, partition_key=key, instance=instance, raise_on_error=False
            )
            for key in [*KEYS, "A2C-10m-seed0"]
        }
        report = defs.resolve_job_def("sweep_report_job").execute_in_process(instance=instance)
        yield defs, runs, report


def test_each_supported_partition_trains_and_tests_its_timeframe(sweep):
    _, runs, _ = sweep
    for key in KEYS:
        assert runs[key].success, key
        out = runs[key].output_for_node("training_sweep")
        point = parse_sweep_key(key)
        assert (out["partition"], out["algorithm"], out["timeframe"]) == (
            key,
            point.algorithm,
            point.timeframe,
        )
        assert out["total_timesteps"] == 512
        assert len(out["ror_by_symbol"]) == SYMBOLS
        assert out["ror"] == out["metrics"]["ror"]
        # One day of bars for the delayed reward, the timeframe's minimum purge (8 + lookback).
        assert out["delay_k"] == {"1h": 24, "1d": 1}[point.timeframe]
        assert out["data"]["purge_bars"] == {"1h": 8 + 168, "1d": 8 + 24}[point.timeframe]
        assert out["data"]["test_from"] > out["data"]["train_to"]
        (event,) = runs[key].get_asset_materialization_events()
        meta = event.materialization.metadata
        assert event.materialization.partition == key
        assert isinstance(meta["candidate_ror"], dg.FloatMetadataValue)
        assert meta["candidate_ror"].value == pytest.approx(out["ror"])
        assert meta["mlflow_run_id"].value == out["run_id"]


def test_an_unsupported_timeframe_fails_naming_the_timeframes_present(sweep):
    _, runs, _ = sweep
    failed = runs["A2C-10m-seed0"]
    assert not failed.success
    (failure,) = [e for e in failed.all_events if e.is_step_failure]
    message = str(failure.event_specific_data.error)
    assert "timeframe '10m'" in message
    assert "it holds 1h, 1d" in message


def test_report_runs_the_statistics_on_the_materialized_partitions(sweep):
    _, runs, report = sweep
    assert report.success
    out = report.output_for_node("training_sweep_report")
    assert out["partitions"] == sorted(KEYS)
    rors = {
        tf: list(runs[k].output_for_node("training_sweep")["ror_by_symbol"].values())
        for tf, k in (("1h", KEYS[0]), ("1d", KEYS[1]))
    }
    anova = anova_across_timeframes(rors)
    ttest = high_vs_low_frequency_ttest(rors["1h"], rors["1d"])
    stats = out["statistics"]["A2C"]
    assert stats["anova"]["F"] == pytest.approx(anova.statistic)
    assert stats["anova"]["p"] == pytest.approx(anova.pvalue)
    assert stats["anova"]["groups"] == {"1h": SYMBOLS, "1d": SYMBOLS}
    assert stats["ttest"]["t"] == pytest.approx(ttest.statistic)
    assert stats["ttest"]["p"] == pytest.approx(ttest.pvalue)
    assert stats["ttest"]["high"] == ["1h"]
    rows = {row["timeframe"]: row for row in out["table"]}
    assert set(rows) == {"1h", "1d"}
    assert rows["1d"]["mean_ror"] == pytest.approx(
        runs[KEYS[1]].output_for_node("training_sweep")["ror"]
    )
    assert rows["1d"]["paper_mean_ror"] == pytest.approx(0.4306)
    assert rows["1h"]["paper_mean_ror"] == pytest.approx(0.0568)
    (event,) = report.get_asset_materialization_events()
    meta = event.materialization.metadata
    assert meta["A2C_anova_F"].value == pytest.approx(anova.statistic)
    assert meta["A2C_ttest_t"].value == pytest.approx(ttest.statistic)
    assert "| A2C" in meta["table"].value


def test_mlflow_runs_carry_the_partition_tag(sweep):
    defs, runs, _ = sweep
    registry = defs.resources["mlflow_registry"]
    experiment_id = registry.activate()
    found = registry.client().search_runs([experiment_id], "tags.stage = 'training_sweep'")
    by_key = {run.data.tags["sweep.partition"]: run for run in found}
    assert set(by_key) == set(KEYS)
    for key in KEYS:
        run = by_key[key]
        assert run.info.run_id == runs[key].output_for_node("training_sweep")["run_id"]
        assert run.data.tags["lineage.timeframe"] == parse_sweep_key(key).timeframe
        assert run.data.params["algorithm"] == "A2C"
        assert "oos_candidate_ror" in run.data.metrics
    assert mlflow.active_run() is None
