"""Backtest engine speed: the six baselines in one run, a policy with inference, a loop reference.

The policy acts through its ONNX export on onnxruntime (``training.onnx_export``), as the
registered model does; SB3's ``predict`` is timed on a sample of the same calls for comparison.

Workload: 8 assets x 16,800 hourly bars (700 days), 8 features, a 32-bar window, default costs
and margin; backtests from bar 720 (after the baselines' 30-day lookbacks) to the end.

    .venv/bin/python bench/bench_evaluation.py            # full run (about half a minute)
    .venv/bin/python bench/bench_evaluation.py --quick    # smoke run (1,680 bars)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.engine import PolicyActor, backtest  # noqa: E402
from evaluation.strategies import BASELINES, equal_weight  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.env import PerpPortfolioEnv  # noqa: E402
from training.env_config import EnvConfig  # noqa: E402
from training.market import MarketData  # noqa: E402
from training.observation import FeatureNormalizer  # noqa: E402
from training.onnx_export import OnnxPolicy, export_policy  # noqa: E402

N_ASSETS, N_FEATURES, FIRST_BAR = 8, 8, 720
SYMBOLS = ("BTC", "ETH", "SOL", "XRP", "BNB", "ADA", "DOGE", "LTC")


def synthetic_market(n_bars: int, seed: int = 0) -> MarketData:
    """Random-walk hourly perps with 8-hourly funding at 00/08/16 UTC and noisy features."""
    rng = np.random.default_rng(seed)
    shape = (n_bars, N_ASSETS)
    ts = np.datetime64("2024-01-01T00:00", "ns") + np.arange(n_bars) * np.timedelta64(1, "h")
    close = 100.0 * (1 + np.arange(N_ASSETS)) * np.exp(np.cumsum(rng.normal(0, 0.006, shape), 0))
    open_ = np.vstack([close[:1], close[:-1]]) * np.exp(rng.normal(0, 0.0005, shape))
    wick = np.abs(rng.normal(0, 0.003, (2, *shape)))
    hour_close = (np.arange(n_bars) + 1) % 24
    settles = (hour_close % 8 == 0)[:, None]
    hours = np.repeat(((8 - hour_close % 8) % 8)[:, None].astype(float), N_ASSETS, axis=1)
    return MarketData(
        timestamps=ts,
        symbols=SYMBOLS,
        open=open_,
        high=np.maximum(open_, close) * (1 + wick[0]),
        low=np.minimum(open_, close) * (1 - wick[1]),
        close=close,
        mark=close * (1 + rng.normal(0, 0.0002, shape)),
        volume=rng.uniform(1e5, 5e5, shape),
        funding_rate=np.where(settles, rng.normal(1e-4, 1e-4, shape), 0.0),
        hours_to_funding=hours,
        basis=rng.normal(2e-4, 3e-4, shape),
        features=rng.normal(size=(*shape, N_FEATURES)).astype(np.float32),
        feature_names=tuple(f"f{j}" for j in range(N_FEATURES)),
    ).validate()


def loop_equal_weight(market: MarketData, config: EnvConfig, first_bar: int) -> float:
    """Final equity of daily-rebalanced equal weight, a plain Python loop over bars and assets:
    size at the decision close, fill at the next open with fees and slippage, funding at the
    settlement, mark at the close (no margin: 1x gross never comes near liquidation)."""
    n, rate, slip = market.n_assets, config.fees.rate, config.slippage
    opens, marks, closes = market.open.tolist(), market.mark.tolist(), market.close.tolist()
    volume, funding = market.volume.tolist(), market.funding_rate.tolist()
    midnight = (market.close_times.astype(np.int64) % (86_400 * 10**9) == 0).tolist()
    equity, qty = config.initial_equity, [0.0] * n
    for t in range(first_bar - 1, market.n_bars - 1):
        target = [equity / n / closes[t][i] for i in range(n)] if midnight[t] else qty
        change = 0.0
        for i in range(n):
            open1, mark1 = opens[t + 1][i], marks[t + 1][i]
            traded = abs(target[i] - qty[i]) * open1
            quote = max(volume[t + 1][i] * open1, 1e-12)
            impact = min(
                slip.impact_coef * (traded / quote) ** slip.impact_exponent, slip.max_impact
            )
            change += qty[i] * (open1 - marks[t][i]) + target[i] * (mark1 - open1)
            change -= traded * rate + traded * (slip.half_spread + impact)
            change -= target[i] * mark1 * funding[t + 1][i]
        equity, qty = equity + change, target
    return equity


CPU_SECONDS: dict[int, float] = {}
"""Process CPU seconds of each ``timed`` call, by call number: a figure other processes on the
machine disturb much less than wall time."""


def timed(fn):
    """(result, wall seconds) of one call; its CPU seconds go to ``CPU_SECONDS``."""
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    CPU_SECONDS[len(CPU_SECONDS)] = time.process_time() - cpu
    return out, time.perf_counter() - start


DEFAULT_INTERVAL = TrainConfig().env.decision_interval
"""Bars between a default-configured policy's decisions (``training.config``): daily on 1h."""

SB3_SAMPLE = 2_000
"""Calls of SB3's ``predict`` timed (per call, for the comparison with onnxruntime)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,680 bars, for smoke tests")
    args = parser.parse_args()
    n_bars = 1_680 if args.quick else 16_800
    market = synthetic_market(n_bars)
    config = EnvConfig()
    normalizer = FeatureNormalizer.fit(market.features[:FIRST_BAR])
    steps = n_bars - FIRST_BAR
    print(f"workload: {N_ASSETS} assets x {n_bars:,} hourly bars, {steps:,} steps per strategy")
    print(f"load average before: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")

    schedules, t_weights = timed(lambda: [make(market) for make in BASELINES.values()])
    ledgers, t_six = timed(lambda: backtest(market, config, None, schedules, FIRST_BAR))
    _, t_one = timed(lambda: backtest(market, config, None, [equal_weight(market)], FIRST_BAR))
    reference, t_loop = timed(lambda: loop_equal_weight(market, config, FIRST_BAR))
    gap = abs(reference - ledgers["equal_weight"].equity[-1])

    torch.set_num_threads(1)
    env = PerpPortfolioEnv(market, config, normalizer)
    model = PPO("MlpPolicy", DummyVecEnv([lambda: env]), seed=0, device="cpu")
    onnx = OnnxPolicy(export_policy(model, config))
    policy = PolicyActor("ppo", onnx.act)
    _, t_policy = timed(lambda: backtest(market, config, normalizer, [policy], FIRST_BAR))
    obs = env.sim.observations()
    _, t_infer = timed(lambda: [policy.act(obs) for _ in range(steps)])
    _, t_sb3 = timed(lambda: [model.predict(obs, deterministic=True) for _ in range(SB3_SAMPLE)])
    t_sb3 *= steps / SB3_SAMPLE
    CPU_SECONDS[len(CPU_SECONDS) - 1] *= steps / SB3_SAMPLE
    daily = replace(config, decision_interval=DEFAULT_INTERVAL)
    _, t_daily = timed(lambda: backtest(market, daily, normalizer, [policy], FIRST_BAR))
    flat = PolicyActor("zeros", lambda obs: np.zeros((len(obs), N_ASSETS)))
    _, t_flat = timed(lambda: backtest(market, config, normalizer, [flat], FIRST_BAR))

    print()
    print("| run | seconds | per step | CPU seconds |")
    print("|---|---:|---:|---:|")
    rows = [
        ("six baselines' weights (evaluation.strategies)", t_weights),
        ("six baselines, one engine run (B=6)", t_six),
        ("equal weight alone, engine (B=1)", t_one),
        ("equal weight, plain Python loop (reference)", t_loop),
        ("PPO MlpPolicy backtest, ONNX inference per bar (B=1)", t_policy),
        ("  ONNX inference alone, same number of calls", t_infer),
        (f"  SB3 predict instead (from {SB3_SAMPLE:,} calls)", t_sb3),
        (f"  the same policy deciding every {DEFAULT_INTERVAL} bars (the default)", t_daily),
        ("  the same backtest with an actor returning zeros", t_flat),
    ]
    cpu = [CPU_SECONDS[i] for i in range(len(rows))]
    for (label, seconds), cpu_seconds in zip(rows, cpu, strict=True):
        print(f"| {label} | {seconds:.2f} | {seconds / steps * 1e6:.0f} us | {cpu_seconds:.2f} |")
    print()
    print(
        f"six baselines total (weights + engine): {t_weights + t_six:.2f} s, "
        f"CPU {cpu[0] + cpu[1]:.2f} s (target < 5 s)"
    )
    print(f"policy backtest, hourly decisions: {t_policy:.2f} s, CPU {cpu[4]:.2f} s (target < 2 s)")
    print(
        f"policy backtest, decisions every {DEFAULT_INTERVAL} bars: {t_daily:.2f} s, "
        f"CPU {cpu[7]:.2f} s (target < 2 s)"
    )
    print(f"SB3 predict / ONNX inference per call: {t_sb3 / t_infer:.1f}x")
    print(f"loop reference / engine, equal weight alone: {t_loop / t_one:.1f}x")
    print(f"loop reference / engine per strategy in the B=6 run: {t_loop / (t_six / 6):.1f}x")
    print(f"equal weight final equity, engine vs loop: |diff| = {gap:.2e}")
    print(f"load average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
