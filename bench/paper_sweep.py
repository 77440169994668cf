"""Chun & Lee (2025)'s experiment as the sweep's backfill, in process, through the definitions.

Ingests the market (``--data synthetic``: the embedded default, a year of hourly bars for 5
perpetuals; ``--data real``: ``../shared/data/binance-1h-2020-2023`` through
``PERPFOLIO_MARKET_SOURCE=freqtrade:<dir>``), builds the features, then runs ``paper_sweep_job``
once per A2C partition of every timeframe the feature mart holds and every seed (as a backfill
launches them) and ``sweep_report_job``. Prints each partition's out-of-sample figures, the
report's table beside the paper's, the ANOVA and the t-test, and the wall times. State goes to
``--home`` (default: a temp folder).

    .venv/bin/python bench/paper_sweep.py --data synthetic                    # local budget
    .venv/bin/python bench/paper_sweep.py --data synthetic --timesteps 20000  # smoke run
"""

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REAL_1H = ROOT.parent / "shared" / "data" / "binance-1h-2020-2023"


def _fmt(value: float | None, digits: int = 3) -> str:
    """A number for a table cell (``nan`` kept visible)."""
    return "nan" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    """A fraction as a percentage cell."""
    return "nan" if value is None or not math.isfinite(value) else f"{100 * value:.2f}%"


def _setup_env(home: Path, data: str) -> None:
    """Point the project and the market source at this run."""
    os.environ["PERPFOLIO_HOME"] = str(home)
    if data == "real":
        if not (REAL_1H / "futures").is_dir():
            sys.exit(f"real Binance 1h data not found at {REAL_1H}")
        os.environ["PERPFOLIO_MARKET_SOURCE"] = f"freqtrade:{REAL_1H}"
    else:
        os.environ["PERPFOLIO_MARKET_SOURCE"] = "synthetic"
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "False")


def run(home: Path, data: str, timesteps: int | None, seeds: list[int]) -> None:
    """Ingest, build features, every A2C partition of the supported timeframes, the report."""
    _setup_env(home, data)
    sys.path.insert(0, str(ROOT))
    import dagster as dg

    from orchestration.assets.sweep import SweepPoint, mart_timeframes
    from orchestration.definitions import build_definitions

    defs = build_definitions("local")
    resources = defs.resources or {}
    quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
    run_config: dict = dict(quiet)
    if timesteps is not None:
        run_config["ops"] = {"training_sweep": {"config": {"total_timesteps": timesteps}}}
    print(f"data: {data} ({os.environ['PERPFOLIO_MARKET_SOURCE']})")
    print(f"home: {home}")
    print(f"training: {resources['training']}, run config {run_config.get('ops', 'none')}")
    walls: dict[str, float] = {}
    started = time.perf_counter()
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    with dg.instance_for_test(temp_dir=str(home / "dagster")) as instance:
        t0 = time.perf_counter()
        ingest = defs.resolve_job_def("ingest_features_job").execute_in_process(
            run_config=quiet, instance=instance
        )
        assert ingest.success
        walls["ingest + features"] = time.perf_counter() - t0
        venue = resources["market_source"].venue
        supported = mart_timeframes(resources["warehouse"], venue)
        print(f"timeframes in the feature mart: {', '.join(supported)}")
        job = defs.resolve_job_def("paper_sweep_job")
        for tf in supported:
            for seed in seeds:
                key = SweepPoint("A2C", tf, seed).key
                t0 = time.perf_counter()
                result = job.execute_in_process(
                    run_config=run_config, partition_key=key, instance=instance
                )
                assert result.success
                walls[key] = time.perf_counter() - t0
                _print_point(result.output_for_node("training_sweep"), walls[key])
        t0 = time.perf_counter()
        report = defs.resolve_job_def("sweep_report_job").execute_in_process(
            run_config=quiet, instance=instance
        )
        assert report.success
        walls["report"] = time.perf_counter() - t0
    walls["total"] = time.perf_counter() - started
    _print_report(report.output_for_node("training_sweep_report"))
    print("\nwall times (s)")
    for name, seconds in walls.items():
        print(f"  {name:<18} {seconds:8.1f}")


def _print_point(out: dict, wall: float) -> None:
    """One partition's windows and out-of-sample figures."""
    d = out["data"]
    print(
        f"\n== {out['partition']} (wall {wall:.1f} s, train {out['train_seconds']:.1f} s, "
        f"{out['total_timesteps']} steps, delay_k {out['delay_k']}, "
        f"episode {out['episode_length']} bars)"
    )
    print(f"  train {d['train_from']} .. {d['train_to']} ({d['train_bars']} bars)")
    print(f"  test  {d['test_from']} .. {d['test_to']} ({d['test_bars']} bars)")
    eq = out["baselines"]["equal_weight"]
    print(
        f"  candidate ROR {_pct(out['ror'])} Sharpe {_fmt(out['sharpe'])} turnover "
        f"{_fmt(out['metrics']['turnover'], 1)} | equal weight ROR {_pct(eq['ror'])} Sharpe "
        f"{_fmt(eq['sharpe'])}"
    )
    print(
        "  ROR by symbol: " + ", ".join(f"{s} {_pct(v)}" for s, v in out["ror_by_symbol"].items())
    )


def _print_report(report: dict) -> None:
    """The table beside the paper's figures, and the statistics."""
    print(f"\n== sweep report over {len(report['partitions'])} partitions")
    print(
        "| algorithm | timeframe | seeds | mean ROR | mean ROR per symbol | median Sharpe "
        "| equal weight mean ROR | paper mean ROR |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for row in report["table"]:
        print(
            f"| {row['algorithm']} | {row['timeframe']} | {row['seeds']} | {_pct(row['mean_ror'])} "
            f"| {_pct(row['mean_symbol_ror'])} | {_fmt(row['median_sharpe'], 2)} "
            f"| {_pct(row['equal_weight_mean_ror'])} | {_pct(row['paper_mean_ror'])} |"
        )
    paper = report["paper"]
    for algorithm, result in report["statistics"].items():
        anova, ttest = result["anova"], result["ttest"]
        print(f"\n{algorithm}:")
        if "F" in anova:
            print(
                f"  ANOVA across timeframes {anova['groups']}: F = {_fmt(anova['F'])}, "
                f"p = {_fmt(anova['p'], 4)} (paper: F = {paper['anova_f']})"
            )
        else:
            print(f"  ANOVA not computed: {anova['skipped']}")
        if "t" in ttest:
            print(
                f"  Welch t-test high ({', '.join(ttest['high'])}) vs 1d: t = {_fmt(ttest['t'])}, "
                f"p = {_fmt(ttest['p'], 4)}, df = {_fmt(ttest['df'], 1)}; mean symbol ROR "
                f"high {_pct(ttest['mean_high'])} vs 1d {_pct(ttest['mean_low'])} (paper: "
                f"{_pct(paper['high_frequency_mean_ror'])} vs {_pct(paper['daily_mean_ror'])})"
            )
        else:
            print(f"  t-test not computed: {ttest['skipped']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=("synthetic", "real"), default="synthetic")
    parser.add_argument("--home", type=Path, help="PERPFOLIO_HOME (default: a temp folder)")
    parser.add_argument("--timesteps", type=int, help="A2C steps per partition (default: local)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds to run")
    args = parser.parse_args()
    if args.home is not None:
        run(args.home.resolve(), args.data, args.timesteps, args.seeds)
        return
    with tempfile.TemporaryDirectory(prefix="perpfolio-sweep-") as tmp:
        run(Path(tmp), args.data, args.timesteps, args.seeds)


if __name__ == "__main__":
    main()
