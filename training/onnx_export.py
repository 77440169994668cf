"""ONNX export of a policy's deterministic actor, and an onnxruntime policy that runs it.

The exported graph takes the raw built observation (float32, [batch, D]) and computes, in
order: the optional ``ObservationScaling`` (in float64, as ``ObservationScaling.apply``), the
SB3 actor's deterministic action, SB3 ``predict``'s post-processing for a Box action space
(unscaling when the policy squashes its output, clipping otherwise), and the action -> target
weight mapping of ``training.actions.target_weights`` (in float64). Its outputs are
``actions`` (float32, in [-1, 1]) and ``target_weights`` (float64).

The actor is traced as SB3's guide "Exporting models" does: ``policy(obs, deterministic=True)``
for actor-critic policies (PPO, A2C), ``policy.actor(obs, deterministic=True)`` for SAC.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort
import torch
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.distributions import DiagGaussianDistribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.preprocessing import preprocess_obs

from training.actions import LeverageLimits, baseline_weight
from training.observation import ObservationScaling

if TYPE_CHECKING:
    from training.train import TrainedPolicy

OBSERVATIONS, ACTIONS, TARGET_WEIGHTS = "observations", "actions", "target_weights"
"""Names of the graph's input and outputs."""
OPSET = 17
"""ONNX opset of the exported graph."""


class _ExportedActor(torch.nn.Module):
    """Raw observation -> (actions, target weights): the module that is traced."""

    low: torch.Tensor
    high: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self, algorithm: BaseAlgorithm, limits: LeverageLimits, scaling: ObservationScaling | None
    ):
        super().__init__()
        policy = algorithm.policy
        space = policy.action_space
        if not isinstance(space, spaces.Box):
            raise ValueError(f"only Box action spaces are exported, not {space}")
        self.policy = policy
        self.squash = bool(policy.squash_output)
        # a diagonal Gaussian's deterministic action is its mean: the graph skips building the
        # distribution (a third of the nodes of a small MLP, and of its latency)
        self.gaussian_mean = isinstance(policy, ActorCriticPolicy) and (
            type(policy.action_dist) is DiagGaussianDistribution
        )
        self.register_buffer("low", torch.as_tensor(space.low, dtype=torch.float32))
        self.register_buffer("high", torch.as_tensor(space.high, dtype=torch.float32))
        self.scaled = scaling is not None
        if scaling is not None:
            mean = np.asarray(scaling.mean, np.float64)
            std = np.sqrt(np.asarray(scaling.var, np.float64) + scaling.epsilon)
            self.register_buffer("mean", torch.from_numpy(mean))
            self.register_buffer("std", torch.from_numpy(std))
            self.clip = float(scaling.clip)
        self.max_leverage = float(limits.max_leverage)
        self.gross_cap = float(limits.gross_leverage_cap)
        self.offset = baseline_weight(limits, int(np.prod(space.shape)))

    def forward(self, observations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        obs = observations
        if self.scaled:
            z = (obs.to(torch.float64) - self.mean) / self.std
            obs = torch.clamp(z, -self.clip, self.clip).to(torch.float32)
        policy, actor = self.policy, getattr(self.policy, "actor", None)
        if actor is not None:
            raw = actor(obs, deterministic=True)
        elif self.gaussian_mean:
            assert isinstance(policy, ActorCriticPolicy)
            inputs = preprocess_obs(obs, policy.observation_space, policy.normalize_images)
            latent = policy.mlp_extractor.forward_actor(policy.pi_features_extractor(inputs))
            raw = policy.action_net(latent)
        else:
            raw = policy(obs, deterministic=True)[0]
        if self.squash:
            actions = self.low + 0.5 * (raw + 1.0) * (self.high - self.low)
        else:
            actions = torch.maximum(torch.minimum(raw, self.high), self.low)
        w = torch.clamp(actions.to(torch.float64), -1.0, 1.0) * self.max_leverage
        if self.offset:
            w = torch.clamp(w + self.offset, -self.max_leverage, self.max_leverage)
        gross = torch.sum(torch.abs(w), dim=-1, keepdim=True)
        scale = torch.clamp(self.gross_cap / torch.clamp(gross, min=1e-12), max=1.0)
        return actions, w * scale


def export_policy(
    algorithm: BaseAlgorithm,
    limits: LeverageLimits,
    scaling: ObservationScaling | None = None,
    path: str | Path | None = None,
) -> bytes:
    """The serialized ONNX model of ``algorithm``'s deterministic actor with ``scaling`` and
    the target-weight mapping under ``limits`` (an ``EnvConfig``); also written to ``path``."""
    module = _ExportedActor(algorithm, limits, scaling)
    policy = algorithm.policy
    policy.set_training_mode(False)  # as ``predict`` does: batch norm and dropout in eval mode
    example = torch.zeros((1, spaces.flatdim(policy.observation_space)), dtype=torch.float32)
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad(), warnings.catch_warnings():
        # the TorchScript exporter (the one that needs no onnxscript) warns that it is legacy
        # and calls its own deprecated helpers; the action distribution's argument checks read
        # tensor values while tracing, which the graph does not depend on
        warnings.filterwarnings(
            "ignore", message="You are using the legacy TorchScript", category=DeprecationWarning
        )
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx\.")
        warnings.filterwarnings(
            "ignore", category=torch.jit.TracerWarning, module=r"torch\.distributions\."
        )
        torch.onnx.export(
            module,
            (example,),
            Path(tmp) / "policy.onnx",
            input_names=[OBSERVATIONS],
            output_names=[ACTIONS, TARGET_WEIGHTS],
            dynamic_axes={name: {0: "batch"} for name in (OBSERVATIONS, ACTIONS, TARGET_WEIGHTS)},
            opset_version=OPSET,
            dynamo=False,
        )
        model = (Path(tmp) / "policy.onnx").read_bytes()
    if path is not None:
        Path(path).write_bytes(model)
    return model


class OnnxPolicy:
    """An exported policy on onnxruntime: one thread, sequential execution (decision latency
    for one observation, and reproducible results)."""

    _actions, _weights = [ACTIONS], [TARGET_WEIGHTS]  # output lists of ``session.run``

    def __init__(self, model: str | Path | bytes):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        source = model if isinstance(model, bytes) else str(model)
        self.session = ort.InferenceSession(
            source, sess_options=options, providers=["CPUExecutionProvider"]
        )

    def run(self, observations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(actions, target weights), each (B, N) float64, for (B, D) or (D,) observations."""
        actions, weights = self.session.run(None, {OBSERVATIONS: _batch(observations)})
        return actions.astype(np.float64), weights

    def act(self, observations: np.ndarray) -> np.ndarray:
        """Deterministic actions in [-1, 1] (B, N) float64."""
        feed = {OBSERVATIONS: _batch(observations)}
        return self.session.run(self._actions, feed)[0].astype(np.float64)

    def target_weights(self, observations: np.ndarray) -> np.ndarray:
        """Target weights (B, N) float64: the actions x max leverage, gross-capped."""
        return self.session.run(self._weights, {OBSERVATIONS: _batch(observations)})[0]


def _batch(observations: np.ndarray) -> np.ndarray:
    """(B, D) C-contiguous float32 view or copy of (B, D) or (D,) observations."""
    if (
        isinstance(observations, np.ndarray)
        and observations.ndim == 2
        and observations.dtype == np.float32
        and observations.flags.c_contiguous
    ):
        return observations  # what the environment builds: no copy
    return np.ascontiguousarray(np.atleast_2d(observations), dtype=np.float32)


def onnx_policy(trained: TrainedPolicy) -> OnnxPolicy:
    """A trained policy exported in memory, with its observation scaling and its environment's
    leverage limits."""
    return OnnxPolicy(export_policy(trained.algorithm, trained.config.env, trained.scaling))
