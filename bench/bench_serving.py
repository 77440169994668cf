"""Serving decision latency: observation -> safety-checked orders for one bar, without I/O, with
the policy on onnxruntime (as served) and on torch (SB3's ``predict``) in the same run.

One decision is ``serving.cycle.run_cycle`` on an execution without I/O (a given account,
orders kept in memory): the account's observed state, the observation (the policy's
``ObservationBuilder.build``), the policy's target weights (a ``PolicyModel`` on onnxruntime,
or on SB3), the environment's no-trade band, and the safety layer's ``check`` turning them into
lot-rounded orders. Each decision is on
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
from pathlib import Path

import numpy as np
import torch
from stable_baselines3 import PPO

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serving.account import AccountState, MarketRules, Order  # noqa: E402
from serving.cycle import paper_rules, run_cycle  # noqa: E402
from serving.safety import SafetyState  # noqa: E402
from tests.support.markets import make_synthetic_market  # noqa: E402
from training.env import PerpPortfolioEnv  # noqa: E402
from training.env_config import EnvConfig  # noqa: E402
from training.market import MarketData  # noqa: E402
from training.onnx_export import OnnxPolicy, export_policy  # noqa: E402
from training.policy_model import PolicyModel, PolicySpec  # noqa: E402

N_ASSETS, N_FEATURES, N_BARS = 5, 11, 2_000


class InMemory:
    """An execution without I/O: a given account, the paper rules, orders kept in memory."""

    account_id = "bench"

    def __init__(self, account: AccountState):
        self.account, self.symbols = account, account.symbols

    def catch_up(self, market: MarketData, t: int) -> tuple[list, int]:
        return [], 0

    def account_at(self, market: MarketData, t: int) -> AccountState:
        return self.account

    def rules(self, market: MarketData, t: int) -> MarketRules:
        return paper_rules(market.symbols, market.close[t])

    def submit(self, orders: list[Order]) -> list[Order]:
        return orders


class TimedPolicy:
    """A policy whose ``predict`` calls are timed (``seconds``)."""

    def __init__(self, policy: PolicyModel):
        self.policy, self.spec, self.seconds = policy, policy.spec, 0.0

    def predict(self, context: object, observations: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        out = self.policy.predict(context, observations)
        self.seconds += time.perf_counter() - start
        return out


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
    spec = PolicySpec("PPO", market.symbols, "synthetic", "1h", config, builder, "")
    served = PolicyModel()
    served.spec, served.algorithm, served.onnx = spec, model, onnx
    on_torch = PolicyModel()
    on_torch.spec, on_torch.algorithm = spec, model

    def decide(i: int, policy: PolicyModel) -> tuple[float, float]:
        """Seconds of the whole decision (``run_cycle`` without I/O) and of the model call in
        it, for decision ``i``."""
        t = int(bars[i])
        close = market.close[t]
        qty = split[i] * gross[i] * 10_000.0 / close
        account = AccountState(
            market.symbols, 10_000.0, qty, close, np.zeros(N_ASSETS), market.mark[t], 10_000.0
        )
        timed = TimedPolicy(policy)
        start = time.perf_counter()
        run_cycle(timed, market.slice(0, t + 1), InMemory(account), SafetyState())
        return time.perf_counter() - start, timed.seconds

    size = builder.observation_space.shape[0]
    print(f"workload: {n:,} decisions, observation of {size:,} floats")
    print(f"load average before: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    results = {}
    for name, policy in (("onnxruntime", served), ("torch", on_torch)):
        for i in range(200):  # warm-up
            decide(i, policy)
        timings = np.array([decide(i, policy) for i in range(n)])
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
