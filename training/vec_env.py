"""B trading environments stepped with one set of numpy operations, as an SB3 ``VecEnv``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from stable_baselines3.common.vec_env.base_vec_env import (
    VecEnv,
    VecEnvIndices,
    VecEnvObs,
    VecEnvStepReturn,
)

from training.env_config import EnvConfig
from training.market import MarketData
from training.observation import FeatureNormalizer
from training.simulator import BatchedSimulator


class BatchedPerpPortfolioVecEnv(VecEnv):
    """``n_envs`` copies of ``PerpPortfolioEnv`` in one ``BatchedSimulator``.

    Env i reset with seed s + i follows exactly the trajectory of a single ``PerpPortfolioEnv``
    reset with seed s + i: each sub-env owns a generator created like gymnasium's, and draws
    from it only at its resets. Finished sub-envs reset automatically (SB3 convention:
    ``info["terminal_observation"]`` and ``info["TimeLimit.truncated"]``).
    """

    def __init__(
        self,
        market: MarketData,
        config: EnvConfig | None = None,
        n_envs: int = 8,
        normalizer: FeatureNormalizer | None = None,
        start: int = 0,
        stop: int | None = None,
    ):
        self.config = config or EnvConfig()
        self.market = market
        self.sim = BatchedSimulator(market, self.config, n_envs, normalizer, start, stop)
        self.render_mode = None
        action_space = gym.spaces.Box(-1.0, 1.0, (market.n_assets,), np.float32)
        super().__init__(n_envs, self.sim.builder.observation_space, action_space)
        self._rngs: list[np.random.Generator | None] = [None] * n_envs
        self._actions = np.zeros((n_envs, market.n_assets))

    @property
    def normalizer(self) -> FeatureNormalizer:
        """Feature normalizer (fitted on the training window unless given)."""
        return self.sim.builder.normalizer

    def _reset_one(self, i: int) -> None:
        rng = self._rngs[i]
        if self._seeds[i] is not None or rng is None:
            rng, _ = seeding.np_random(self._seeds[i])
            self._rngs[i] = rng
        self.sim.reset_env(i, rng)

    def reset(self) -> VecEnvObs:
        """Reset every sub-env (with the seeds given to ``seed()``, if any)."""
        for i in range(self.num_envs):
            self._reset_one(i)
        self._reset_seeds()
        self._reset_options()
        self.sim.refresh()
        self.reset_infos = [self._reset_info(i) for i in range(self.num_envs)]
        return self.sim.observations()

    def _reset_info(self, i: int) -> dict[str, Any]:
        t = int(self.sim.t[i])
        return {
            "equity": float(self.sim.equity[i]),
            "timestamp": self.market.timestamps[t],
            "bar": t,
        }

    def step_async(self, actions: np.ndarray) -> None:
        """Store the actions of the next ``step_wait``."""
        self._actions = np.asarray(actions, dtype=np.float64).reshape(self.num_envs, -1)

    def step_wait(self) -> VecEnvStepReturn:
        """Step all sub-envs; auto-reset the finished ones."""
        sim = self.sim
        reward, terminated, arrays = sim.decide(self._actions)
        truncated = ~terminated & (sim.steps >= sim.length)
        done = terminated | truncated
        obs = sim.observations()
        columns = {k: v.tolist() if v.ndim == 1 else list(v) for k, v in arrays.items()}
        stamps = self.market.timestamps[sim.t]
        bars = sim.t.tolist()
        keys = list(columns)
        infos: list[dict[str, Any]] = []
        for i in range(self.num_envs):
            info = {k: columns[k][i] for k in keys}
            info["timestamp"] = stamps[i]
            info["bar"] = bars[i]
            infos.append(info)
        if done.any():
            finished = np.flatnonzero(done)
            for j in finished.tolist():
                infos[j]["terminal_observation"] = obs[j].copy()
                infos[j]["TimeLimit.truncated"] = bool(truncated[j])
                self._reset_one(j)
            sim.refresh(done)
            obs[finished] = sim.observations(finished)
            for j in finished.tolist():
                self.reset_infos[j] = self._reset_info(j)
        return obs, reward.astype(np.float32), done, infos

    def close(self) -> None:
        """Nothing to release."""

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """Attribute of this object, once per selected sub-env."""
        return [getattr(self, attr_name) for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set an attribute of this object (shared by all sub-envs)."""
        setattr(self, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **kwargs: Any
    ) -> list[Any]:
        """Call a method of this object once per selected sub-env."""
        method = getattr(self, method_name)
        return [method(*method_args, **kwargs) for _ in self._get_indices(indices)]

    def env_is_wrapped(
        self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None
    ) -> list[bool]:
        """Sub-envs are never wrapped."""
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        """No rendering."""
        return [None] * self.num_envs
