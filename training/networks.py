"""Policy networks: SB3's MLP, and an EIIE-style per-asset shared encoder with its policy.

The EIIE policy (Jiang et al. 2017, "ensemble of identical independent evaluators") applies one
network to every asset: ``PerAssetEncoder`` turns each asset's feature window, its 4 portfolio
entries and the 3 global entries into an embedding (a 1-D convolution over the window, then an
MLP); ``EIIEPolicy`` maps each embedding and the mean embedding (a permutation-invariant context)
to that asset's action mean with shared weights, and the mean embedding to the value. Permuting
the assets of an observation permutes the actions and leaves the value unchanged, and no parameter
depends on the number of assets, so the ``state_dict`` of a policy trained on N assets loads into
a policy built for any other N.

The Gaussian's log std is one shared scalar (SB3 keeps one per action dimension), and gSDE's
exploration std one (H,) vector shared by every asset with independent noise per asset, so the
action distribution, not only its mean, is permutation-equivariant. Per-entry observation
statistics (``VecNormalize``, ``per_asset`` feature normalization) are not permutation-equivariant
and are tied to N: the policy then stays equivariant in the scaled observation only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import torch
from stable_baselines3.common.distributions import (
    DiagGaussianDistribution,
    StateDependentNoiseDistribution,
)
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from training.config import TrainConfig

N_PORTFOLIO = 4
"""Per-asset portfolio entries: weight, unrealized PnL, entry basis, hours to funding."""
N_GLOBAL = 3
"""Global entries: log equity ratio, margin ratio, distance to liquidation."""
POLICIES = ("mlp", "eiie")
"""Names accepted by ``policy_kwargs_for``."""


def _mlp(sizes: Sequence[int], activation: type[nn.Module]) -> nn.Sequential:
    """Linear layers of ``sizes[0] -> ... -> sizes[-1]``, each followed by ``activation``."""
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(n_in, n_out), activation()]
    return nn.Sequential(*layers)


class TemporalConv(nn.Module):
    """A 1-D convolution over time written as shifted slices and one ``Linear``: (M, window, F)
    -> (M, channels * (window - kernel + 1)). Same function as ``nn.Conv1d``, faster on CPU for
    these small sizes, and only slice, concat and matmul in an ONNX graph."""

    def __init__(self, n_features: int, window: int, channels: int, kernel_size: int):
        super().__init__()
        self.kernel_size = kernel_size
        self.n_out = window - kernel_size + 1
        self.linear = nn.Linear(kernel_size * n_features, channels)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """Convolved windows, flattened time-major."""
        shifted = [windows[:, j : j + self.n_out, :] for j in range(self.kernel_size)]
        return self.linear(torch.cat(shifted, dim=2)).flatten(1)


class PerAssetEncoder(BaseFeaturesExtractor):
    """One network applied to every asset of the flat observation (see ``training.observation``).

    Per asset: a 1-D convolution over the (window, F) feature window (``conv_channels`` channels,
    ``kernel_size`` bars; ``conv_channels=0`` feeds the flattened window directly), concatenated
    with the asset's 4 portfolio entries and the 3 global entries, then an MLP to ``embed_dim``.
    ``forward`` returns the (B, N, E) embeddings flattened in asset order, (B, N * E), so SB3's
    standard heads also accept it. No parameter depends on ``n_assets``.
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        n_assets: int,
        window: int,
        n_features: int,
        embed_dim: int = 16,
        conv_channels: int = 8,
        kernel_size: int = 3,
        hidden: Sequence[int] = (64,),
        activation_fn: type[nn.Module] = nn.ReLU,
    ):
        expected = window * n_assets * n_features + N_PORTFOLIO * n_assets + N_GLOBAL
        if observation_space.shape != (expected,):
            raise ValueError(
                f"observation shape {observation_space.shape} is not ({expected},) for "
                f"n_assets={n_assets}, window={window}, n_features={n_features}"
            )
        super().__init__(observation_space, n_assets * embed_dim)
        self.n_assets, self.window, self.n_features = n_assets, window, n_features
        self.embed_dim = embed_dim
        self.n_window = window * n_assets * n_features
        self.temporal: nn.Module
        if conv_channels > 0:
            kernel = min(kernel_size, window)
            self.temporal = nn.Sequential(
                TemporalConv(n_features, window, conv_channels, kernel), activation_fn()
            )
            n_temporal = conv_channels * (window - kernel + 1)
        else:
            self.temporal = nn.Flatten()
            n_temporal = window * n_features
        self.head = _mlp([n_temporal + N_PORTFOLIO + N_GLOBAL, *hidden, embed_dim], activation_fn)

    def per_asset_inputs(self, observations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Unpack (B, D) observations into (B, N, window, F) windows and (B, N, 7) entries (the
        asset's 4 portfolio entries, then the 3 global entries)."""
        n, w, f = self.n_assets, self.window, self.n_features
        windows = observations[:, : self.n_window].reshape(-1, w, n, f).transpose(1, 2)
        end = self.n_window + N_PORTFOLIO * n
        portfolio = observations[:, self.n_window : end].reshape(-1, N_PORTFOLIO, n)
        glob = observations[:, end:].unsqueeze(1).expand(-1, n, -1)
        return windows, torch.cat([portfolio.transpose(1, 2), glob], dim=2)

    def embed(self, observations: torch.Tensor) -> torch.Tensor:
        """(B, N, E) per-asset embeddings."""
        n, w, f = self.n_assets, self.window, self.n_features
        windows, entries = self.per_asset_inputs(observations)
        temporal = self.temporal(windows.reshape(-1, w, f))
        x = torch.cat([temporal, entries.reshape(-1, N_PORTFOLIO + N_GLOBAL)], dim=1)
        return self.head(x).reshape(-1, n, self.embed_dim)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        """(B, N * E) embeddings, asset-major."""
        return self.embed(observations).flatten(1)


class PerAssetHeads(nn.Module):
    """The ``mlp_extractor`` of ``EIIEPolicy``: a shared per-asset actor MLP over
    ``[e_i, mean_j e_j]`` giving (B, N * H) latents, and a critic MLP over ``mean_i e_i``."""

    def __init__(
        self,
        n_assets: int,
        embed_dim: int,
        pi: Sequence[int],
        vf: Sequence[int],
        activation_fn: type[nn.Module],
    ):
        super().__init__()
        self.n_assets, self.embed_dim = n_assets, embed_dim
        self.policy_net = _mlp([2 * embed_dim, *pi], activation_fn)
        self.value_net = _mlp([embed_dim, *vf], activation_fn)
        self.latent_dim_per_asset = pi[-1] if pi else 2 * embed_dim
        self.latent_dim_pi = n_assets * self.latent_dim_per_asset
        self.latent_dim_vf = vf[-1] if vf else embed_dim

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Actor and critic latents."""
        return self.forward_actor(features), self.forward_critic(features)

    def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
        """(B, N * H) per-asset actor latents, asset-major."""
        e = features.reshape(-1, self.n_assets, self.embed_dim)
        context = e.mean(dim=1, keepdim=True).expand(-1, self.n_assets, -1)
        return self.policy_net(torch.cat([e, context], dim=2)).flatten(1)

    def forward_critic(self, features: torch.Tensor) -> torch.Tensor:
        """(B, H_vf) critic latent of the mean embedding."""
        return self.value_net(features.reshape(-1, self.n_assets, self.embed_dim).mean(dim=1))


class SharedAssetLinear(nn.Module):
    """One ``Linear(H, 1)`` applied to each asset's latent: (B, N * H) -> (B, N)."""

    def __init__(self, latent_dim_per_asset: int):
        super().__init__()
        self.latent_dim_per_asset = latent_dim_per_asset
        self.linear = nn.Linear(latent_dim_per_asset, 1)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """Per-asset action means."""
        return self.linear(latent.unflatten(1, (-1, self.latent_dim_per_asset))).squeeze(2)


class SharedAssetGaussian(DiagGaussianDistribution):
    """SB3's diagonal Gaussian with the shared per-asset action net and one shared log std."""

    def __init__(self, action_dim: int, latent_dim_per_asset: int):
        super().__init__(action_dim)
        self.latent_dim_per_asset = latent_dim_per_asset

    def proba_distribution_net(
        self, latent_dim: int, log_std_init: float = 0.0
    ) -> tuple[nn.Module, nn.Parameter]:
        """``SharedAssetLinear`` means and a (1,) log std."""
        log_std = nn.Parameter(torch.full((1,), float(log_std_init)), requires_grad=True)
        return SharedAssetLinear(self.latent_dim_per_asset), log_std


class PerAssetStateDependentNoise(StateDependentNoiseDistribution):
    """gSDE per asset: asset i's noise is ``h_i . eps_i`` with ``h_i`` its (H,) actor latent and
    ``eps_i ~ N(0, diag(std^2))`` drawn independently per asset, ``std`` (H,) shared by every
    asset (``full_std=False``: one scalar). The exploration matrix (H, N) is resampled, never
    learned, so no parameter depends on N."""

    def __init__(self, action_dim: int, latent_dim_per_asset: int, **kwargs: Any):
        super().__init__(action_dim, **kwargs)
        self.latent_dim_per_asset = latent_dim_per_asset

    def get_std(self, log_std: torch.Tensor) -> torch.Tensor:
        """(H, N) standard deviations of the exploration matrix."""
        return super().get_std(log_std).expand(self.latent_dim_per_asset, self.action_dim)

    def proba_distribution_net(
        self, latent_dim: int, log_std_init: float = -2.0, latent_sde_dim: int | None = None
    ) -> tuple[nn.Module, nn.Parameter]:
        """``SharedAssetLinear`` means and an (H, 1) log std ((1, 1) if not ``full_std``)."""
        self.latent_sde_dim = self.latent_dim_per_asset
        rows = self.latent_dim_per_asset if self.full_std else 1
        log_std = nn.Parameter(torch.full((rows, 1), float(log_std_init)), requires_grad=True)
        self.sample_weights(log_std)
        return SharedAssetLinear(self.latent_dim_per_asset), log_std

    def proba_distribution(
        self, mean_actions: torch.Tensor, log_std: torch.Tensor, latent_sde: torch.Tensor
    ) -> PerAssetStateDependentNoise:
        """Gaussian of per-asset variance ``sum_k h_ik^2 std_k^2``."""
        self._latent_sde = latent_sde if self.learn_features else latent_sde.detach()
        h2 = self._per_asset(self._latent_sde) ** 2
        variance = (h2 * self.get_std(log_std).T.pow(2)).sum(dim=2)
        self.distribution = torch.distributions.Normal(
            mean_actions, torch.sqrt(variance + self.epsilon)
        )
        return self

    def get_noise(self, latent_sde: torch.Tensor) -> torch.Tensor:
        """(B, N) noise ``h_i . eps_i``; one matrix per env when the batch matches."""
        h = self._per_asset(latent_sde if self.learn_features else latent_sde.detach())
        if len(h) == 1 or len(h) != len(self.exploration_matrices):
            return (h * self.exploration_mat.T).sum(dim=2)
        return (h * self.exploration_matrices.transpose(1, 2)).sum(dim=2)

    def _per_asset(self, latent: torch.Tensor) -> torch.Tensor:
        return latent.unflatten(1, (-1, self.latent_dim_per_asset))


class EIIEPolicy(ActorCriticPolicy):
    """Permutation-equivariant actor, permutation-invariant critic (PPO, A2C).

    Requires ``features_extractor_class=PerAssetEncoder``; ``net_arch={"pi": [...], "vf": [...]}``
    sizes the per-asset actor head and the pooled critic head. The action net is one shared
    ``Linear(H, 1)`` per asset; the log std is one shared scalar (Gaussian) or one (H,) vector
    shared by every asset (gSDE, ``use_sde=True``, with or without ``squash_output``).
    """

    def _build_mlp_extractor(self) -> None:
        """The per-asset actor and pooled critic heads over the encoder's embeddings, and the
        per-asset action distribution that SB3's ``_build`` then asks for its action net."""
        encoder = self.features_extractor
        if not isinstance(encoder, PerAssetEncoder):
            raise TypeError("EIIEPolicy needs features_extractor_class=PerAssetEncoder")
        arch = self.net_arch
        if isinstance(arch, dict):
            pi, vf = arch.get("pi", []), arch.get("vf", [])
        else:
            pi = vf = arch
        heads = PerAssetHeads(encoder.n_assets, encoder.embed_dim, pi, vf, self.activation_fn)
        self.mlp_extractor = heads.to(self.device)  # type: ignore[assignment]
        dist = self.action_dist
        h = heads.latent_dim_per_asset
        if isinstance(dist, StateDependentNoiseDistribution):
            self.action_dist = PerAssetStateDependentNoise(
                dist.action_dim,
                h,
                full_std=dist.full_std,
                use_expln=dist.use_expln,
                squash_output=dist.bijector is not None,
                learn_features=dist.learn_features,
                epsilon=dist.epsilon,
            )
        elif isinstance(dist, DiagGaussianDistribution):
            self.action_dist = SharedAssetGaussian(dist.action_dim, h)
        else:
            raise ValueError(f"EIIEPolicy supports Box actions only, got {dist}")


def eiie_policy_kwargs(
    n_assets: int,
    window: int,
    n_features: int,
    net_arch: Sequence[int] = (64,),
    **encoder_kwargs: Any,
) -> dict[str, Any]:
    """``policy_kwargs`` of ``EIIEPolicy``; ``net_arch`` sizes both heads."""
    return {
        "features_extractor_class": PerAssetEncoder,
        "features_extractor_kwargs": {
            "n_assets": n_assets,
            "window": window,
            "n_features": n_features,
            **encoder_kwargs,
        },
        "net_arch": {"pi": list(net_arch), "vf": list(net_arch)},
    }


def policy_kwargs_for(
    name: str,
    n_assets: int,
    window: int,
    n_features: int,
    net_arch: Sequence[int] | None = None,
    encoder_kwargs: dict[str, Any] | None = None,
) -> tuple[str | type[ActorCriticPolicy], dict[str, Any]]:
    """The SB3 ``policy`` argument and ``policy_kwargs`` of network ``name`` ("mlp" or "eiie").

    "mlp" is SB3's ``MlpPolicy`` with ``net_arch`` (default ``TrainConfig().net_arch``); "eiie"
    is ``EIIEPolicy`` with heads of ``net_arch`` (default (64,)) and ``PerAssetEncoder`` with
    ``encoder_kwargs`` (ignored by "mlp"). Other policy kwargs such as ``log_std_init`` are the
    caller's to add.
    """
    if name == "mlp":
        arch = TrainConfig().net_arch if net_arch is None else net_arch
        return "MlpPolicy", {"net_arch": list(arch)}
    if name == "eiie":
        arch = (64,) if net_arch is None else net_arch
        return EIIEPolicy, eiie_policy_kwargs(
            n_assets, window, n_features, arch, **(encoder_kwargs or {})
        )
    raise ValueError(f"policy name must be one of {POLICIES}, got {name!r}")


def n_parameters(module: nn.Module) -> int:
    """Number of scalar parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())
