"""A trained policy as an MLflow pyfunc model: the SB3 weights, their ONNX export, and what builds
and scales its observation. Serving runs the ONNX graph on onnxruntime when the version has one."""

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

from training.actions import actions_for_weights, target_weights
from training.env_config import EnvConfig
from training.observation import ObservationBuilder, ObservationScaling
from training.onnx_export import OnnxPolicy, export_policy

ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"PPO": PPO, "A2C": A2C, "SAC": SAC}

MODEL_DEPENDENCIES = ("stable-baselines3", "torch", "gymnasium", "numpy", "mlflow", "onnxruntime")
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


ONNX_BACKEND, SB3_BACKEND, FIXED_BACKEND = "onnxruntime", "sb3", "fixed"
"""What a ``PolicyModel`` acts with: the exported graph, the SB3 policy itself, or the fixed
target weights of a baseline policy (``log_baseline_policy``)."""

BASELINE_ALGORITHM = "baseline"
"""``PolicySpec.algorithm`` of a registered baseline policy."""


class PolicyModel(PythonModel):
    """pyfunc wrapper: ``predict`` maps built observations (rows) to target weights per asset.

    Acts on onnxruntime when the version carries ``policy.onnx`` (which scales observations
    inside the graph), otherwise with SB3's ``predict`` on observations scaled by ``scaling``.
    """

    spec: PolicySpec
    algorithm: BaseAlgorithm | None = None
    """The SB3 policy (None for a baseline policy)."""
    scaling: ObservationScaling | None = None
    """Observation statistics the policy was trained on (None: unscaled)."""
    onnx: OnnxPolicy | None = None
    """The exported actor on onnxruntime, when the version has one."""
    fixed_weights: np.ndarray | None = None
    """(N,) target weights of a baseline policy, whatever it observes."""

    def load_context(self, context: PythonModelContext) -> None:
        artifacts = context.artifacts
        self.spec = PolicySpec.from_dict(json.loads(Path(artifacts["spec"]).read_text()))
        if "fixed_weights" in artifacts:
            weights = json.loads(Path(artifacts["fixed_weights"]).read_text())["weights"]
            self.fixed_weights = np.asarray(weights, dtype=np.float64)
            return
        self.algorithm = ALGORITHMS[self.spec.algorithm].load(artifacts["policy"], device="cpu")
        if "scaling" in artifacts:
            scaling = json.loads(Path(artifacts["scaling"]).read_text())
            self.scaling = ObservationScaling.from_dict(scaling)
        if "onnx" in artifacts:
            self.onnx = OnnxPolicy(artifacts["onnx"])

    @property
    def backend(self) -> str:
        """``ONNX_BACKEND``, ``SB3_BACKEND`` or ``FIXED_BACKEND``: what ``act`` and ``predict``
        run."""
        if self.fixed_weights is not None:
            return FIXED_BACKEND
        return SB3_BACKEND if self.onnx is None else ONNX_BACKEND

    def act(self, observations: np.ndarray) -> np.ndarray:
        """Deterministic actions in [-1, 1] (B, N) for a (B, D) batch of built observations."""
        if self.fixed_weights is not None:
            rows = len(np.atleast_2d(observations))
            actions = actions_for_weights(self.fixed_weights, self.spec.env_config)
            return np.tile(actions, (rows, 1))
        if self.onnx is not None:
            return self.onnx.act(observations)
        assert self.algorithm is not None
        obs = np.asarray(observations, np.float32)
        if self.scaling is not None:
            obs = self.scaling.apply(obs)
        actions, _ = self.algorithm.predict(obs, deterministic=True)
        return np.asarray(actions, dtype=np.float64)

    def predict(
        self, context: Any, model_input: np.ndarray, params: dict | None = None
    ) -> np.ndarray:
        obs = np.atleast_2d(np.asarray(model_input, dtype=np.float32))
        if self.onnx is not None:
            return self.onnx.target_weights(obs)
        return target_weights(self.act(obs), self.spec.env_config)


def log_policy(
    algorithm: BaseAlgorithm,
    spec: PolicySpec,
    registered_model_name: str,
    scaling: ObservationScaling | None = None,
) -> mlflow.entities.model_registry.ModelVersion:
    """Log the policy to the active MLflow run and register it as a new model version.

    Artifacts: the SB3 model (``policy.zip``), the spec, the observation ``scaling`` the policy
    was trained with (if any) and the ONNX export (``policy.onnx``: raw observation -> actions
    and target weights, the scaling and the spec's leverage limits inside the graph), with the
    model signature observation (float32, D) -> target weights (float64, N).
    """
    with tempfile.TemporaryDirectory() as tmp:
        paths = {
            "policy": Path(tmp) / "policy.zip",
            "spec": Path(tmp) / "spec.json",
            "onnx": Path(tmp) / "policy.onnx",
        }
        algorithm.save(paths["policy"])
        paths["spec"].write_text(json.dumps(spec.to_dict(), indent=2))
        export_policy(algorithm, spec.env_config, scaling, paths["onnx"])
        if scaling is not None:
            paths["scaling"] = Path(tmp) / "scaling.json"
            paths["scaling"].write_text(json.dumps(scaling.to_dict()))
        example = _example_observation(spec)
        weights = OnnxPolicy(paths["onnx"]).target_weights(example)
        return _register(paths, example, weights, registered_model_name)


def _example_observation(spec: PolicySpec) -> np.ndarray:
    """A zero observation (1, D): the model's input example."""
    return np.zeros((1, spec.builder.observation_space.shape[0]), dtype=np.float32)


def _register(
    artifacts: dict[str, Path],
    example: np.ndarray,
    weights: np.ndarray,
    registered_model_name: str,
) -> mlflow.entities.model_registry.ModelVersion:
    """Log the pyfunc model (models from code) with ``artifacts`` to the active run, with the
    signature observation ``example`` -> target ``weights``, and register it."""
    info = mlflow.pyfunc.log_model(
        name="policy",
        python_model=str(Path(__file__).with_name("policy_model_entry.py")),
        artifacts={key: str(path) for key, path in artifacts.items()},
        pip_requirements=pip_requirements(),
        input_example=example,
        signature=mlflow.models.infer_signature(example, weights),
        registered_model_name=registered_model_name,
    )
    client = mlflow.MlflowClient()
    return client.get_model_version(registered_model_name, str(info.registered_model_version))


def log_baseline_policy(
    spec: PolicySpec, weights: np.ndarray, registered_model_name: str
) -> mlflow.entities.model_registry.ModelVersion:
    """Log a policy that always targets ``weights`` (N,) to the active MLflow run and register
    it: a conservative day-one champion that serving can run before any agent passed the gate.

    It has the spec of a trained policy (symbols, timeframe, decision interval, observation
    builder), so serving and the evaluation replay it like one; ``weights`` must respect the
    spec's leverage limits."""
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (len(spec.symbols),):
        expected = (len(spec.symbols),)
        raise ValueError(f"baseline weights: shape {weights.shape}, expected {expected}")
    limits = spec.env_config
    if not np.allclose(target_weights(actions_for_weights(weights, limits), limits), weights):
        raise ValueError(
            f"baseline weights {weights.tolist()} exceed the spec's leverage limits "
            f"(max {limits.max_leverage} per asset, gross {limits.gross_leverage_cap})"
        )
    with tempfile.TemporaryDirectory() as tmp:
        paths = {"spec": Path(tmp) / "spec.json", "fixed_weights": Path(tmp) / "weights.json"}
        paths["spec"].write_text(json.dumps(spec.to_dict(), indent=2))
        paths["fixed_weights"].write_text(json.dumps({"weights": weights.tolist()}))
        return _register(paths, _example_observation(spec), weights[None], registered_model_name)


def load_policy(model_uri: str) -> PolicyModel:
    """Load a registered policy (e.g. ``models:/perpfolio-policy@champion``)."""
    return mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
