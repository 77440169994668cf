"""Serving decision latency: observation -> safety-checked orders for one bar, without I/O, with
the policy on onnxruntime (as served) and on torch (SB3's ``predict``) in the same run.

One decision is what ``serving.cycle.run_cycle`` does between the broker's reads and writes:
the account's observed state (``portfolio_state``), the observation (the policy's
``ObservationBuilder.build``), the policy's target weights, the environment's no-trade band,
and the safety layer's ``check`` turning them into lot-rounded orders. Each decision is on
another bar of the synthetic market and another account (random positions up to 1x gross).

Workload: the demo's shape, 5 assets x 11 features x a 32-bar window (1,783 floats), PPO
``MlpPolicy`` (64, 64), one torch thread.

    .venv/bin/python bench/bench_serving.py            # 10,000 decisions per runtime
    .venv/bin/python bench/bench_serving.py --quick    # 1,000
    .venv/bin/python bench/bench_serving.py --cycle    # also the Dagster jobs (a few minutes)

``--cycle`` also times whole serving runs in process on the ``test`` resources, in a temporary
project folder set up by one retraining run (not timed): ``serving_job`` (the cycle alone) and
``serving_cycle_job`` (incremental ingestion, incremental features with their checks, the
cycle). The synthetic market's window is fixed, so the incremental steps find no new bar: the
figures are the fixed cost of each step.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from stable_baselines3 import PPO

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serving.account import AccountState  # noqa: E402
from serving.cycle import market_snapshot, paper_rules, portfolio_state  # noqa: E402
from serving.ledger import client_order_id  # noqa: E402
from serving.safety import SafetyLimits, SafetyState, check  # noqa: E402
from tests.support.markets import make_synthetic_market  # noqa: E402
from training.actions import target_weights  # noqa: E402
from training.env import PerpPortfolioEnv  # noqa: E402
from training.env_config import EnvConfig  # noqa: E402
from training.onnx_export import OnnxPolicy, export_policy  # noqa: E402

N_ASSETS, N_FEATURES, N_BARS = 5, 11, 2_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 decisions per runtime")
    parser.add_argument("--cycle", action="store_true", help="also time the Dagster serving jobs")
    args = parser.parse_args()
    n = 1_000 if args.quick else 10_000
    torch.set_num_threads(1)
    market = make_synthetic_market(N_ASSETS, N_BARS, seed=0, n_features=N_FEATURES)
    config = EnvConfig(no_trade_band=0.02)
    env = PerpPortfolioEnv(market, config)
    model = PPO("MlpPolicy", env, seed=0, device="cpu")
    onnx = OnnxPolicy(export_policy(model, config))
    builder = env.sim.builder
    rng = np.random.default_rng(0)
    bars = rng.integers(env.sim.first, market.n_bars, n)
    gross = rng.uniform(0, 1, n)
    split = rng.dirichlet(np.ones(N_ASSETS), n) * rng.choice([-1.0, 1.0], (n, N_ASSETS))
    limits, state = SafetyLimits(), SafetyState()

    def torch_weights(obs: np.ndarray) -> np.ndarray:
        return target_weights(np.asarray(model.predict(obs, deterministic=True)[0]), config)

    def decide(i: int, weights_of: Callable[[np.ndarray], np.ndarray]) -> tuple[float, float]:
        """Seconds of the whole decision and of the model call, for decision ``i``."""
        start = time.perf_counter()
        t = int(bars[i])
        close = market.close[t]
        qty = split[i] * gross[i] * 10_000.0 / close
        account = AccountState(
            market.symbols, 10_000.0, qty, close, np.zeros(N_ASSETS), market.mark[t], 10_000.0
        )
        portfolio = portfolio_state(account, config, market.hours_to_funding[t])
        obs = builder.build(market.features, t, portfolio)[None]
        model_start = time.perf_counter()
        proposed = weights_of(obs)[0]
        model_seconds = time.perf_counter() - model_start
        current = account.qty * close / account.equity
        proposed = np.where(np.abs(proposed - current) < config.no_trade_band, current, proposed)
        ts = market.close_times[t]
        check(
            proposed,
            account,
            market_snapshot(market, t, ts),
            paper_rules(market.symbols, close),
            limits,
            state,
            ts,
            lambda symbol, leg, ts=ts: client_order_id("bench", ts, symbol, leg),
        )
        return time.perf_counter() - start, model_seconds

    size = builder.observation_space.shape[0]
    print(f"workload: {n:,} decisions, observation of {size:,} floats")
    print(f"load average before: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    results = {}
    for name, weights_of in (("onnxruntime", onnx.target_weights), ("torch", torch_weights)):
        for i in range(200):  # warm-up
            decide(i, weights_of)
        timings = np.array([decide(i, weights_of) for i in range(n)])
        results[name] = timings
    print()
    print("| runtime | model p50 | model p99 | decision p50 | decision p99 |")
    print("|---|---:|---:|---:|---:|")
    for name, timings in results.items():
        whole, model_part = np.percentile(timings, [50, 99], axis=0).T * 1e3
        print(
            f"| {name} | {model_part[0]:.3f} ms | {model_part[1]:.3f} ms | "
            f"{whole[0]:.3f} ms | {whole[1]:.3f} ms |"
        )
    onnx_p99 = np.percentile(results["onnxruntime"], 99, axis=0) * 1e3
    torch_p99 = np.percentile(results["torch"], 99, axis=0) * 1e3
    print()
    print(f"model p99 (onnxruntime): {onnx_p99[1]:.3f} ms (target < 1 ms)")
    print(f"whole decision p99 (onnxruntime): {onnx_p99[0]:.3f} ms (target < 5 ms)")
    print(f"torch / onnxruntime, model p99: {torch_p99[1] / onnx_p99[1]:.1f}x")
    print(f"load average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.cycle:
        time_jobs()


def time_jobs() -> None:
    """Seconds of ``serving_job`` and ``serving_cycle_job``, twice each, in process."""
    home = Path(tempfile.mkdtemp(prefix="perpfolio-bench-serving-"))
    os.environ.update(
        PERPFOLIO_HOME=str(home),
        DAGSTER_HOME=str(home / "dagster"),
        PERPFOLIO_ENV="test",
        DBT_SEND_ANONYMOUS_USAGE_STATS="False",
        DO_NOT_TRACK="1",
        MLFLOW_DISABLE_TELEMETRY="true",
        DAGSTER_DISABLE_TELEMETRY="true",
    )
    from orchestration.definitions import build_definitions

    defs = build_definitions("test")
    assert defs.resolve_job_def("retraining_job").execute_in_process().success
    print()
    print("| job | run 1 | run 2 |")
    print("|---|---:|---:|")
    for name in ("serving_job", "serving_cycle_job"):
        seconds = []
        for _ in range(2):
            start = time.perf_counter()
            assert defs.resolve_job_def(name).execute_in_process().success
            seconds.append(time.perf_counter() - start)
        print(f"| {name} | {seconds[0]:.1f} s | {seconds[1]:.1f} s |")
    print("target: a full serving cycle with incremental ingestion and features < 10 s")


if __name__ == "__main__":
    main()
