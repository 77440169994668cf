"""The training ablation: lever combinations x seeds through the 4-fold walk-forward.

Every variant of ``configs/ablation.yaml`` (TrainConfig overrides over the base preset) is
trained with each seed on every fold's train window, scored on the fold's validation window
(which also keeps the best checkpoint when the variant validates) and backtested on the fold's
test window; the folds' test windows are stitched into one out-of-sample ledger per run.
The variant to make the default is the one with the best median validation Sharpe: the test
windows are reported, never used to choose. Baselines (and a random policy acting under each
variant's environment) run on the same bars.

    .venv/bin/python bench/ablation.py --data synthetic                 # the embedded default
    .venv/bin/python bench/ablation.py --data real                      # binance-1h-2020-2023
    .venv/bin/python bench/ablation.py --data real --variants daily --seeds 0 --timesteps 4096

Data are ingested and featurized once per ``--home`` (default: a folder in the temp dir) with
the project's own Dagster job. Each run's result is appended to ``--out`` (JSON lines) as it
ends; a markdown table is printed, and ``--table FILE`` prints the table of an earlier run.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REAL_1H = ROOT.parent / "shared" / "data" / "binance-1h-2020-2023"
VARIANTS = ROOT / "configs" / "ablation.yaml"

_MARKET: Any = None  # the loaded market, inherited by forked workers


def prepare(data: str, home: Path) -> tuple[Any, str, str]:
    """Ingest and featurize ``data`` into ``home`` (once), then load the feature mart."""
    os.environ["PERPFOLIO_HOME"] = str(home)
    if data == "real":
        if not REAL_1H.is_dir():
            raise SystemExit(f"real data not found at {REAL_1H}")
        os.environ["PERPFOLIO_MARKET_SOURCE"] = f"freqtrade:{REAL_1H}"
    else:
        os.environ.pop("PERPFOLIO_MARKET_SOURCE", None)
    for key, value in {
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DAGSTER_DISABLE_TELEMETRY": "true",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
    }.items():
        os.environ.setdefault(key, value)
    import dagster as dg

    from orchestration.definitions import build_definitions
    from orchestration.project import ProjectPaths
    from training.config import TrainConfig
    from training.data import load_market

    defs = build_definitions("local")
    source = (defs.resources or {})["market_source"]
    paths = ProjectPaths.from_env()
    stamp = home / "features.done"
    if not stamp.exists():
        (home / "dagster").mkdir(parents=True, exist_ok=True)
        with dg.instance_for_test(temp_dir=str(home / "dagster")) as instance:
            job = defs.resolve_job_def("ingest_features_job")
            assert job.execute_in_process(instance=instance).success
        stamp.touch()
    config = TrainConfig()
    market = load_market(
        paths.warehouse,
        source.venue,
        config.timeframe,
        config.feature_columns,
        symbols=source.universe(),
    )
    return market, source.venue, ",".join(source.universe())


def run_one(job: tuple[str, dict, int, int, int | None]) -> dict[str, Any]:
    """One variant with one seed through the walk-forward; metrics of every window."""
    from evaluation.metrics import compute_metrics, daily_returns
    from evaluation.statistics import bootstrap_sharpe_ci
    from evaluation.walkforward import WalkForwardConfig, validation_bars, walk_forward
    from training.config import TrainConfig

    name, overrides, seed, folds, timesteps = job
    config = TrainConfig.from_dict(overrides, source=f"variant {name}")
    config = replace(config, seed=seed)
    if timesteps is not None:
        config = replace(config, total_timesteps=timesteps)
    market = _MARKET
    wf = WalkForwardConfig(n_folds=folds, validation_bars=validation_bars(config.timeframe))
    n_assets = market.n_assets
    rng = np.random.default_rng(1_000 + seed)

    def random_policy(obs: np.ndarray) -> np.ndarray:
        return rng.uniform(-1.0, 1.0, (len(obs), n_assets))

    started = time.perf_counter()
    result = walk_forward(market, wf, config)
    random_result = _random_walk(market, wf, config, random_policy)
    out: dict[str, Any] = {"variant": name, "seed": seed, "seconds": time.perf_counter() - started}
    out["validation_sharpe"] = [
        f.validation_metrics["candidate"]["sharpe"] for f in result.folds if f.validation_metrics
    ]
    out["validation_best_baseline"] = [
        max(m["sharpe"] for k, m in f.validation_metrics.items() if k != "candidate")
        for f in result.folds
        if f.validation_metrics
    ]
    out["best_timesteps"] = [f.policy.best_timesteps for f in result.folds]
    out["train_seconds"] = [f.train_seconds for f in result.folds]
    ledgers = {**result.stitched, "random_policy": random_result}
    out["test"] = {k: _metrics(compute_metrics(v)) for k, v in ledgers.items()}
    ci = bootstrap_sharpe_ci(daily_returns(result.stitched["candidate"]).to_numpy())
    out["test"]["candidate"]["sharpe_ci"] = [ci.low, ci.high]
    out["folds_test_sharpe"] = [
        compute_metrics(f.ledgers["candidate"]).sharpe for f in result.folds
    ]
    return out


def _random_walk(market: Any, wf: Any, config: Any, act: Any) -> Any:
    """A random policy under ``config.env`` on every fold's test window, stitched."""
    from evaluation.engine import PolicyActor, backtest
    from evaluation.walkforward import make_folds, stitch
    from training.observation import FeatureNormalizer

    ledgers = []
    for fold in make_folds(market.n_bars, wf):
        visible = market.slice(0, fold.test[1])
        normalizer = FeatureNormalizer.fit(market.features[fold.train[0] : fold.train[1]])
        run = backtest(
            visible, config.env, normalizer, [PolicyActor("random_policy", act)], fold.test[0]
        )
        ledgers.append(run["random_policy"])
    return stitch(ledgers)


def _metrics(m: Any) -> dict[str, Any]:
    """The table's metrics, with the cost share of gross PnL."""
    d = m.as_dict()
    keep = (
        "sharpe",
        "total_return",
        "annualized_return",
        "max_drawdown",
        "turnover",
        "turnover_cost",
        "fees_paid",
        "slippage_paid",
        "funding_paid",
        "liquidated",
        "n_days",
    )
    out = {k: d[k] for k in keep}
    gross = d["total_return"] + d["turnover_cost"]
    out["cost_share_of_gross"] = d["turnover_cost"] / gross if gross > 0 else math.inf
    return out


def _validation_excess(run: dict[str, Any]) -> float:
    """Mean over folds of the candidate's validation Sharpe minus the best baseline's on the
    same window (NaN for a run recorded without the baselines' scores)."""
    if "validation_best_baseline" not in run:
        return math.nan
    return float(np.mean(np.subtract(run["validation_sharpe"], run["validation_best_baseline"])))


def table(results: list[dict[str, Any]], variants: dict[str, dict]) -> str:
    """Markdown: one row per variant (median and range over seeds), then every baseline."""
    lines = [
        "| variant | val. Sharpe (median) | val. Sharpe - best baseline's (median) "
        "| OOS Sharpe median [min, max] | 95% CI (median seed) "
        "| return | max DD | turnover | turnover cost | cost / gross PnL | liquidated "
        "| random policy Sharpe |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    by_variant: dict[str, list[dict]] = {}
    for r in results:
        by_variant.setdefault(r["variant"], []).append(r)
    for name in variants:
        runs = by_variant.get(name, [])
        if not runs:
            continue
        runs.sort(key=lambda r: r["test"]["candidate"]["sharpe"])
        mid = runs[len(runs) // 2]["test"]["candidate"]
        sharpes = [r["test"]["candidate"]["sharpe"] for r in runs]
        val = float(np.median([np.mean(r["validation_sharpe"]) for r in runs]))
        excess = float(np.median([_validation_excess(r) for r in runs]))
        rnd = float(np.median([r["test"]["random_policy"]["sharpe"] for r in runs]))
        lo, hi = mid["sharpe_ci"]
        liquidated = any(r["test"]["candidate"]["liquidated"] for r in runs)
        lines.append(
            f"| {name} | {val:.2f} | {excess:.2f} | {np.median(sharpes):.2f} [{min(sharpes):.2f}, "
            f"{max(sharpes):.2f}] | [{lo:.2f}, {hi:.2f}] | {mid['total_return']:.1%} "
            f"| {mid['max_drawdown']:.1%} | {mid['turnover']:.1f} | {mid['turnover_cost']:.1%} "
            f"| {mid['cost_share_of_gross']:.2f} | {liquidated} "
            f"| {rnd:.2f} |"
        )
    first = results[0]["test"]
    lines += [
        "",
        "| baseline | OOS Sharpe | return | max DD | turnover | turnover cost |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in first.items():
        if name in ("candidate", "random_policy"):
            continue
        lines.append(
            f"| {name} | {m['sharpe']:.2f} | {m['total_return']:.1%} | {m['max_drawdown']:.1%} "
            f"| {m['turnover']:.1f} | {m['turnover_cost']:.1%} |"
        )
    return "\n".join(lines)


def main() -> None:
    global _MARKET
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=("synthetic", "real"), default="synthetic")
    parser.add_argument("--variants", help="comma-separated names from configs/ablation.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--timesteps", type=int, help="override every variant's budget")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--home", type=Path)
    parser.add_argument("--out", type=Path, help="JSON lines, one run each, appended as they end")
    parser.add_argument("--table", type=Path, help="a JSON-lines file to print the table of")
    args = parser.parse_args()
    loaded: dict[str, dict] = yaml.safe_load(VARIANTS.read_text())
    all_variants = {k: v for k, v in loaded.items() if not k.startswith("_")}  # "_": anchors
    names = args.variants.split(",") if args.variants else list(all_variants)
    variants = {n: all_variants[n] or {} for n in names}
    if args.table:
        rows = [json.loads(line) for line in args.table.read_text().splitlines() if line]
        print(table([r for r in rows if r["variant"] in variants], variants))
        return
    home = args.home or Path(tempfile.gettempdir()) / f"perpfolio-ablation-{args.data}"
    home.mkdir(parents=True, exist_ok=True)
    _MARKET, venue, symbols = prepare(args.data, home)
    print(f"data: {args.data} ({venue}: {symbols}, {_MARKET.n_bars} bars), home: {home}")
    jobs = [(n, v, s, args.folds, args.timesteps) for n, v in variants.items() for s in args.seeds]
    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    with multiprocessing.get_context("fork").Pool(args.workers, maxtasksperchild=1) as pool:
        for r in pool.imap_unordered(run_one, jobs):
            results.append(r)
            if args.out:
                with args.out.open("a") as out:
                    out.write(json.dumps(r) + "\n")
            c = r["test"]["candidate"]
            print(
                f"  {r['variant']:<24} seed {r['seed']}: OOS Sharpe {c['sharpe']:.2f}, "
                f"return {c['total_return']:.1%}, turnover {c['turnover']:.1f}, val Sharpe "
                f"{np.mean(r['validation_sharpe']):.2f} ({r['seconds']:.0f} s)",
                flush=True,
            )
    print(f"\n{len(jobs)} runs in {time.perf_counter() - started:.0f} s\n")
    print(table(results, variants))


if __name__ == "__main__":
    main()
