"""The 4-fold walk-forward over the full real development set, through the Dagster definitions.

Ingests ``../shared/data/binance-1h-2020-2023`` (5 perpetuals, 2020-02 to 2023-12, hourly)
with ``PERPFOLIO_MARKET_SOURCE=freqtrade:<dir>``, builds the features, runs ``walk_forward_job``
once per fold partition (as a backfill would) and then ``walk_forward_report_job``, with the
``local`` training budget (100k PPO steps per fold) unless ``--timesteps`` says otherwise.
Prints each fold's windows, every strategy's out-of-sample Sharpe and ROR per fold, the stitched
metrics, the statistics and the wall times. State goes to ``--home`` (default: a temp folder).

    .venv/bin/python bench/walk_forward_real.py                    # 100k steps per fold
    .venv/bin/python bench/walk_forward_real.py --timesteps 4096   # smoke run
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REAL_1H = ROOT.parent / "shared" / "data" / "binance-1h-2020-2023"
N_FOLDS = 4


def _fmt(value: float, digits: int = 3) -> str:
    """A number for a table cell (``nan`` kept visible)."""
    return "nan" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _setup_env(home: Path, data: Path) -> None:
    """Point the project, the market source and the fold count at this run."""
    os.environ["PERPFOLIO_HOME"] = str(home)
    os.environ["PERPFOLIO_MARKET_SOURCE"] = f"freqtrade:{data}"
    os.environ["PERPFOLIO_WALK_FORWARD_FOLDS"] = str(N_FOLDS)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "False")


def run(home: Path, data: Path, timesteps: int | None) -> None:
    """Ingest, build features, run every fold partition, then the report; print the figures."""
    _setup_env(home, data)
    sys.path.insert(0, str(ROOT))
    import dagster as dg

    from orchestration.definitions import build_definitions
    from orchestration.resources import build_resources
    from orchestration.resources.settings import TrainingSettings

    overrides: dict[str, object] = {}
    if timesteps is not None:
        local = build_resources("local")["training"]
        assert isinstance(local, TrainingSettings)
        fields = {n: getattr(local, n) for n in TrainingSettings.model_fields}
        overrides["training"] = TrainingSettings(**{**fields, "total_timesteps": timesteps})
    defs = build_definitions("local", resources=overrides)
    resources = defs.resources or {}
    print(f"data: {data}")
    print(f"home: {home}")
    print(f"training: {resources['training']}")
    print(f"walk forward: {resources['walk_forward']}, {N_FOLDS} folds")
    walls: dict[str, float] = {}
    started = time.perf_counter()
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    with dg.instance_for_test(temp_dir=str(home / "dagster")) as instance:
        t0 = time.perf_counter()
        ingest = defs.resolve_job_def("ingest_features_job").execute_in_process(instance=instance)
        assert ingest.success
        walls["ingest + features"] = time.perf_counter() - t0
        job = defs.resolve_job_def("walk_forward_job")
        folds = []
        for i in range(N_FOLDS):
            t0 = time.perf_counter()
            result = job.execute_in_process(partition_key=f"fold-{i}", instance=instance)
            assert result.success
            walls[f"fold-{i}"] = time.perf_counter() - t0
            folds.append(result.output_for_node("walk_forward_fold"))
            _print_fold(folds[-1], walls[f"fold-{i}"])
        t0 = time.perf_counter()
        report_run = defs.resolve_job_def("walk_forward_report_job").execute_in_process(
            instance=instance
        )
        assert report_run.success
        walls["report"] = time.perf_counter() - t0
        report = report_run.output_for_node("walk_forward_report")
    walls["total"] = time.perf_counter() - started
    _print_report(report)
    print("\nwall times (s)")
    for name, seconds in walls.items():
        print(f"  {name:<18} {seconds:8.1f}")
    print("  train seconds per fold: " + ", ".join(f"{f['train_seconds']:.1f}" for f in folds))


def _print_fold(fold: dict, wall: float) -> None:
    """A fold's windows and every strategy's out-of-sample Sharpe and ROR."""
    summary = fold["fold"]
    print(f"\n== {summary['fold']} (wall {wall:.1f} s, train {fold['train_seconds']:.1f} s)")
    for window in ("train", "validation", "test"):
        if f"{window}_bars" in summary:
            print(
                f"  {window:<10} {summary[f'{window}_from']} .. {summary[f'{window}_to']} "
                f"({summary[f'{window}_bars']} bars)"
            )
    print(f"  {'strategy':<18} {'sharpe':>8} {'ror':>8} {'return':>8}")
    for name, m in fold["metrics"].items():
        print(
            f"  {name:<18} {_fmt(m['sharpe']):>8} {_fmt(m['ror']):>8} {_fmt(m['total_return']):>8}"
        )


def _print_report(report: dict) -> None:
    """The stitched metrics table and the statistics."""
    print(f"\n== stitched out-of-sample: {report['n_oos_bars']} bars from {report['first_oos_ts']}")
    header = (
        f"  {'strategy':<18} {'sharpe':>8} {'sharpe 95% CI':>18} {'return':>8} {'ror':>8} "
        f"{'max DD':>8} {'turn.cost':>9}"
    )
    print(header)
    for name, m in report["metrics"].items():
        low, high = report["sharpe_ci"][name]
        print(
            f"  {name:<18} {_fmt(m['sharpe']):>8} {f'[{_fmt(low)}, {_fmt(high)}]':>18} "
            f"{_fmt(m['total_return']):>8} {_fmt(m['ror']):>8} {_fmt(m['max_drawdown']):>8} "
            f"{_fmt(m['turnover_cost'], 4):>9}"
        )
    low, high = report["sharpe_difference_ci"]
    print(f"\n  best baseline: {report['best_baseline']}")
    print(f"  Sharpe difference (candidate - best baseline) 95% CI: [{_fmt(low)}, {_fmt(high)}]")
    print(f"  probabilistic Sharpe ratio: {_fmt(report['probabilistic_sharpe'])}")
    print(f"  deflated Sharpe ratio ({len(report['folds'])} trials): "
          f"{_fmt(report['deflated_sharpe'])}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REAL_1H, help="freqtrade directory")
    parser.add_argument("--home", type=Path, help="PERPFOLIO_HOME (default: a temp folder)")
    parser.add_argument("--timesteps", type=int, help="PPO steps per fold (default: local)")
    args = parser.parse_args()
    if not (args.data / "futures").is_dir():
        sys.exit(f"real Binance 1h data not found at {args.data}")
    if args.home is not None:
        run(args.home.resolve(), args.data.resolve(), args.timesteps)
        return
    with tempfile.TemporaryDirectory(prefix="perpfolio-wf-") as tmp:
        run(Path(tmp), args.data.resolve(), args.timesteps)


if __name__ == "__main__":
    main()
