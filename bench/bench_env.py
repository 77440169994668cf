"""Environment speed: single env, batched VecEnv, pandas reference, and env share of PPO time.

Workload: 10 assets, a 32-bar window, 8 features per asset (2,560 window floats + 43 portfolio
floats), uniformly random actions, default costs and margin, 256-step episodes.

    .venv/bin/python bench/bench_env.py            # full run (about a minute)
    .venv/bin/python bench/bench_env.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecEnvWrapper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.markets import make_synthetic_market  # noqa: E402
from tests.support.reference_env import ReferencePerpEnv  # noqa: E402
from training.env import PerpPortfolioEnv  # noqa: E402
from training.env_config import EnvConfig  # noqa: E402
from training.market import MarketData  # noqa: E402
from training.vec_env import BatchedPerpPortfolioVecEnv  # noqa: E402

N_ASSETS, WINDOW, N_FEATURES = 10, 32, 8


def synthetic_market(n_bars: int) -> MarketData:
    """The test suite's synthetic market (``tests.support.markets``)."""
    return make_synthetic_market(N_ASSETS, n_bars, seed=0, n_features=N_FEATURES)


def single_steps_per_s(env, n_steps: int) -> float:
    """Steps/s of one gym env with pre-drawn random actions (resets included)."""
    actions = np.random.default_rng(0).uniform(-1, 1, (n_steps, N_ASSETS)).astype(np.float32)
    env.reset(seed=0)
    start = time.perf_counter()
    for a in actions:
        *_, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            env.reset()
    return n_steps / (time.perf_counter() - start)


def batched_steps_per_s(vec: VecEnv, n_steps: int) -> float:
    """Env-steps/s of a VecEnv (auto-resets and SB3 info dicts included)."""
    b = vec.num_envs
    actions = np.random.default_rng(0).uniform(-1, 1, (n_steps, b, N_ASSETS)).astype(np.float32)
    vec.seed(0)
    vec.reset()
    start = time.perf_counter()
    for a in actions:
        vec.step(a)
    return n_steps * b / (time.perf_counter() - start)


class TimedVecEnv(VecEnvWrapper):
    """Accumulates wall time spent inside the wrapped env's reset/step."""

    def __init__(self, venv: VecEnv):
        super().__init__(venv)
        self.seconds = 0.0

    def reset(self):
        start = time.perf_counter()
        obs = self.venv.reset()
        self.seconds += time.perf_counter() - start
        return obs

    def step_wait(self):
        start = time.perf_counter()
        out = self.venv.step_wait()
        self.seconds += time.perf_counter() - start
        return out


def ppo_env_share(vec: VecEnv, timesteps: int) -> tuple[float, float]:
    """(env share of PPO wall time, total seconds) for ``timesteps`` of PPO on ``vec``."""
    timed = TimedVecEnv(vec)
    model = PPO("MlpPolicy", timed, n_steps=256, batch_size=256, seed=0, device="cpu")
    start = time.perf_counter()
    model.learn(total_timesteps=timesteps)
    total = time.perf_counter() - start
    return timed.seconds / total, total


def _load() -> str:
    """1, 5 and 15 minute load averages (the machine is shared; figures depend on them)."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few steps, for smoke tests")
    args = parser.parse_args()
    scale = 0.05 if args.quick else 1.0
    market = synthetic_market(4_000)
    config = EnvConfig(window=WINDOW, episode_length=256)
    obs_dim = PerpPortfolioEnv(market, config).observation_space.shape[0]
    print(f"workload: {N_ASSETS} assets x {WINDOW} bars x {N_FEATURES} features, obs {obs_dim}")
    print(f"load average before: {_load()}")

    single = single_steps_per_s(PerpPortfolioEnv(market, config), int(60_000 * scale))
    vec64 = BatchedPerpPortfolioVecEnv(market, config, n_envs=64)
    batched = batched_steps_per_s(vec64, int(3_000 * scale))
    reference = single_steps_per_s(ReferencePerpEnv(market, config), int(1_500 * scale))
    dummy = DummyVecEnv([lambda: PerpPortfolioEnv(market, config)] * 64)
    dummy_rate = batched_steps_per_s(dummy, int(300 * scale))

    rows = [
        ("single PerpPortfolioEnv", single, "steps/s"),
        ("BatchedPerpPortfolioVecEnv, B=64", batched, "env-steps/s"),
        ("DummyVecEnv of 64 single envs", dummy_rate, "env-steps/s"),
        ("pandas ReferencePerpEnv", reference, "steps/s"),
    ]
    print("\n| environment | rate | vs pandas reference |\n|---|---:|---:|")
    for name, rate, unit in rows:
        print(f"| {name} | {rate:,.0f} {unit} | {rate / reference:,.0f}x |")
    print(f"load average after: {_load()}")

    timesteps = int(16_384 * scale) or 512
    print(f"\nPPO ({timesteps} timesteps, MlpPolicy 64x64, n_steps=256, CPU):")
    print("| vec env | env share of wall time | total s |\n|---|---:|---:|")
    for name, make in (
        ("BatchedPerpPortfolioVecEnv, B=8", lambda: BatchedPerpPortfolioVecEnv(market, config, 8)),
        (
            "DummyVecEnv of 8 single envs",
            lambda: DummyVecEnv([lambda: PerpPortfolioEnv(market, config)] * 8),
        ),
    ):
        share, total = ppo_env_share(make(), timesteps)
        print(f"| {name} | {share:.1%} | {total:.1f} |")


if __name__ == "__main__":
    main()
