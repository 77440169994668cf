"""A trained policy as an MLflow pyfunc model: the SB3 weights plus what builds its observation."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel, PythonModelContext
from stable_baselines3 import A2C, PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm

from training.actions import target_weights
from training.env_config import EnvConfig
from training.observation import ObservationBuilder

ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"PPO": PPO, "A2C": A2C, "SAC": SAC}

MODEL_DEPENDENCIES = ("stable-baselines3", "torch", "gymnasium", "numpy", "mlflow")
"""Distributions a served policy imports; their versions are the installed, pinned ones."""


def pip_requirements() -> list[str]:
    """``name==version`` of each model dependency as installed here (from ``constraints.txt``),
    without a local build tag such as torch's ``+cpu``, which no index serves by that name."""
    return [f"{name}=={metadata.version(name).split('+')[0]}" for name in MODEL_DEPENDENCIES]


@dataclass(frozen=True)
class PolicySpec:
    """Everything besides the network weights that serving needs to act like training did."""

    algorithm: str
    symbols: tuple[str, ...]
    venue: str
    timeframe: str
    env_config: EnvConfig
    builder: ObservationBuilder
    train_end: str
    """Timestamp of the last training bar (ISO, UTC)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm,
            "symbols": list(self.symbols),
            "venue": self.venue,
            "timeframe": self.timeframe,
            "env_config": self.env_config.to_dict(),
            "builder": self.builder.to_dict(),
            "train_end": self.train_end,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PolicySpec:
        return cls(
            algorithm=d["algorithm"],
            symbols=tuple(d["symbols"]),
            venue=d["venue"],
            timeframe=d["timeframe"],
            env_config=EnvConfig.from_dict(d["env_config"]),
            builder=ObservationBuilder.from_dict(d["builder"]),
            train_end=d["train_end"],
        )

    @property
    def feature_columns(self) -> tuple[str, ...]:
        return tuple(self.builder.feature_names)


class PolicyModel(PythonModel):
    """pyfunc wrapper: ``predict`` maps observations (rows) to target weights per asset."""

    spec: PolicySpec
    algorithm: BaseAlgorithm

    def load_context(self, context: PythonModelContext) -> None:
        self.spec = PolicySpec.from_dict(json.loads(Path(context.artifacts["spec"]).read_text()))
        self.algorithm = ALGORITHMS[self.spec.algorithm].load(
            context.artifacts["policy"], device="cpu"
        )

    def act(self, observations: np.ndarray) -> np.ndarray:
        """Deterministic actions in [-1, 1] for a batch of observations."""
        actions, _ = self.algorithm.predict(
            np.asarray(observations, np.float32), deterministic=True
        )
        return np.asarray(actions, dtype=np.float64)

    def predict(
        self, context: Any, model_input: np.ndarray, params: dict | None = None
    ) -> np.ndarray:
        obs = np.atleast_2d(np.asarray(model_input, dtype=np.float32))
        return target_weights(self.act(obs), self.spec.env_config)


def log_policy(
    algorithm: BaseAlgorithm, spec: PolicySpec, registered_model_name: str
) -> mlflow.entities.model_registry.ModelVersion:
    """Log the policy to the active MLflow run and register it as a new model version."""
    with tempfile.TemporaryDirectory() as tmp:
        policy_path = Path(tmp) / "policy.zip"
        spec_path = Path(tmp) / "spec.json"
        algorithm.save(policy_path)
        spec_path.write_text(json.dumps(spec.to_dict(), indent=2))
        example = np.zeros((1, spec.builder.observation_space.shape[0]), dtype=np.float32)
        info = mlflow.pyfunc.log_model(
            name="policy",
            python_model=str(Path(__file__).with_name("policy_model_entry.py")),
            artifacts={"policy": str(policy_path), "spec": str(spec_path)},
            pip_requirements=pip_requirements(),
            input_example=example,
            registered_model_name=registered_model_name,
        )
    client = mlflow.MlflowClient()
    return client.get_model_version(registered_model_name, str(info.registered_model_version))


def load_policy(model_uri: str) -> PolicyModel:
    """Load a registered policy (e.g. ``models:/perpfolio-policy@champion``)."""
    return mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
