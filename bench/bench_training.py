"""Training speed: SB3 PPO end to end on the batched env against a DummyVecEnv of single envs.

Workload: the demo's shape, 5 assets, a 32-bar window and the 11 default features per asset
(1,783 observation floats), 256-step episodes, PPO with 64 parallel envs (n_steps 64, so a
4,096-step rollout; minibatches of 1,024; 10 epochs), MlpPolicy 64x64, one torch thread.
Prints env-steps/s end to end (rollouts and updates), the env's share of the wall time, and
the ratio of the two vec envs in the same run.

    .venv/bin/python bench/bench_training.py            # 3 rollouts each (about a minute)
    .venv/bin/python bench/bench_training.py --quick    # one rollout each
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_env import TimedVecEnv  # noqa: E402
from tests.support.markets import make_synthetic_market  # noqa: E402
from training.config import DEFAULT_FEATURES  # noqa: E402
from training.env import PerpPortfolioEnv  # noqa: E402
from training.env_config import EnvConfig  # noqa: E402
from training.vec_env import BatchedPerpPortfolioVecEnv  # noqa: E402

N_ENVS, N_STEPS, BATCH, EPOCHS = 64, 64, 1_024, 10


def ppo_rate(vec: VecEnv, timesteps: int) -> tuple[float, float]:
    """(env-steps/s end to end, env share of the wall time) of PPO for ``timesteps``."""
    timed = TimedVecEnv(vec)
    model = PPO(
        "MlpPolicy",
        timed,
        n_steps=N_STEPS,
        batch_size=BATCH,
        n_epochs=EPOCHS,
        seed=0,
        device="cpu",
        policy_kwargs={"log_std_init": -2.0},
    )
    start = time.perf_counter()
    model.learn(total_timesteps=timesteps)
    total = time.perf_counter() - start
    return model.num_timesteps / total, timed.seconds / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one rollout each")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rollouts = 1 if args.quick else 3
    timesteps = rollouts * N_ENVS * N_STEPS
    market = make_synthetic_market(5, 4_000, seed=0, n_features=len(DEFAULT_FEATURES))
    config = EnvConfig(episode_length=256, max_leverage=1.0, no_trade_band=0.1)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"PPO, {N_ENVS} envs x {N_STEPS} steps, batch {BATCH}, {EPOCHS} epochs, {timesteps}")
    print(f"timesteps; load average before: {load}")
    batched = ppo_rate(BatchedPerpPortfolioVecEnv(market, config, N_ENVS), timesteps)
    dummy = ppo_rate(DummyVecEnv([lambda: PerpPortfolioEnv(market, config)] * N_ENVS), timesteps)
    print("\n| vec env | env-steps/s end to end | env share of wall time |\n|---|---:|---:|")
    for name, (rate, share) in (
        (f"BatchedPerpPortfolioVecEnv, B={N_ENVS}", batched),
        (f"DummyVecEnv of {N_ENVS} single envs", dummy),
    ):
        print(f"| {name} | {rate:,.0f} | {share:.1%} |")
    print(f"\nbatched / dummy: {batched[0] / dummy[0]:.2f}x")
    print(f"load average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
