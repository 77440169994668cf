"""Decision latency of one observation (batch 1, one thread): the ONNX export on onnxruntime
against SB3's ``predict``.

Workload: the demo's observation size (5 assets, 11 features, a 32-bar window: 1,783 floats),
PPO ``MlpPolicy`` with the default ``net_arch`` (64, 64), observation scaling in the graph;
every call decides on another real observation of the synthetic market.

    .venv/bin/python bench/bench_onnx.py            # 20,000 calls per runtime
    .venv/bin/python bench/bench_onnx.py --quick    # 1,000 calls, for smoke tests
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from stable_baselines3 import PPO

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.markets import make_synthetic_market  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.env import PerpPortfolioEnv  # noqa: E402
from training.env_config import EnvConfig  # noqa: E402
from training.observation import ObservationScaling  # noqa: E402
from training.onnx_export import OnnxPolicy, export_policy  # noqa: E402

N_ASSETS, N_FEATURES, N_BARS = 5, 11, 2_000


def latencies(decide: Callable[[np.ndarray], np.ndarray], obs: np.ndarray) -> np.ndarray:
    """Seconds of each call ``decide(obs[i : i + 1])``, after 200 warm-up calls."""
    for i in range(200):
        decide(obs[i % len(obs) : i % len(obs) + 1])
    out = np.empty(len(obs))
    clock = time.perf_counter
    for i in range(len(obs)):
        row = obs[i : i + 1]
        start = clock()
        decide(row)
        out[i] = clock() - start
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 calls per runtime")
    args = parser.parse_args()
    n_calls = 1_000 if args.quick else 20_000
    torch.set_num_threads(1)
    market = make_synthetic_market(N_ASSETS, N_BARS, seed=0, n_features=N_FEATURES)
    config = EnvConfig()
    env = PerpPortfolioEnv(market, config)
    model = PPO(
        "MlpPolicy",
        env,
        seed=0,
        device="cpu",
        policy_kwargs={"net_arch": list(TrainConfig().net_arch)},
    )
    sim = env.sim
    t = np.arange(sim.first, sim.last)
    obs = np.concatenate(
        [sim.builder.build(market.features, int(i), sim.portfolio_of(0))[None] for i in t]
    )
    obs = obs[np.arange(n_calls) % len(obs)]
    scaling = ObservationScaling(mean=obs.mean(0), var=obs.var(0))
    onnx = OnnxPolicy(export_policy(model, config, scaling))

    def sb3(row: np.ndarray) -> np.ndarray:
        return model.predict(scaling.apply(row), deterministic=True)[0]

    print(
        f"workload: observation of {obs.shape[1]:,} floats ({N_ASSETS} assets x {N_FEATURES} "
        f"features x {config.window} bars + portfolio), PPO MlpPolicy {TrainConfig().net_arch}, "
        f"{n_calls:,} calls per runtime, batch 1, one thread"
    )
    print(f"load average before: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    rows = [
        ("ONNX on onnxruntime, OnnxPolicy.act", latencies(onnx.act, obs)),
        ("ONNX on onnxruntime, OnnxPolicy.target_weights", latencies(onnx.target_weights, obs)),
        ("SB3 predict (deterministic) after ObservationScaling.apply", latencies(sb3, obs)),
    ]
    print()
    print("| runtime | p50 | p99 | mean |")
    print("|---|---:|---:|---:|")
    for label, seconds in rows:
        p50, p99 = np.percentile(seconds, [50, 99]) * 1e6
        print(f"| {label} | {p50:.0f} us | {p99:.0f} us | {seconds.mean() * 1e6:.0f} us |")
    p99_onnx = np.percentile(rows[0][1], 99) * 1e3
    p50_ratio = np.percentile(rows[2][1], 50) / np.percentile(rows[0][1], 50)
    print()
    print(f"ONNX decision latency p99: {p99_onnx:.3f} ms (target < 1 ms)")
    print(f"SB3 predict / ONNX, p50: {p50_ratio:.1f}x")
    print(f"load average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
