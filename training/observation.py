"""Observation construction shared by training, evaluation and serving.

Layout of the flat float32 vector (``window * N * F + 4 * N + 3``):

1. the normalized feature window, rows ``t - window + 1 .. t`` in time order, shape (window, N, F)
   flattened in C order;
2. per asset: weight (signed leverage), unrealized PnL / equity, entry basis x 100 (percent),
   hours to next funding / 8;
3. global: log(equity / initial equity), margin ratio (maintenance margin / equity, 1 means
   liquidation), distance to liquidation (fraction of a uniform adverse move, in [0, 1]).

Every entry is clipped to ``[-clip, clip]``. This module does not depend on the environment.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

BASIS_SCALE = 100.0
FUNDING_HOURS_SCALE = 8.0
# 0-d float64 operands: cheaper for numpy than Python floats, which it converts on every call
_BASIS_SCALE, _FUNDING_HOURS_SCALE = np.array(BASIS_SCALE), np.array(FUNDING_HOURS_SCALE)


@dataclass
class FeatureNormalizer:
    """Per-feature z-scoring fitted on the training window only.

    Statistics are pooled over time and assets by default (shape (F,)), so the normalizer stays
    valid if the asset universe changes; ``per_asset=True`` fits (N, F) statistics instead.
    Non-finite inputs become 0 after normalization (the training mean).
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, features: np.ndarray, per_asset: bool = False) -> FeatureNormalizer:
        """Fit on a (T, N, F) array, ignoring NaN; constant features get std 1."""
        axes = (0,) if per_asset else (0, 1)
        x = np.asarray(features, dtype=np.float64)
        mean = np.nan_to_num(np.nanmean(x, axis=axes))
        std = np.nan_to_num(np.nanstd(x, axis=axes))
        return cls(mean=mean, std=np.where(std > 1e-12, std, 1.0))

    def transform(self, features: np.ndarray, clip: float = 10.0) -> np.ndarray:
        """Normalized, clipped float32 copy of ``features`` (..., N, F)."""
        z = (np.asarray(features, dtype=np.float64) - self.mean) / self.std
        return np.clip(np.nan_to_num(z, nan=0.0, posinf=clip, neginf=-clip), -clip, clip).astype(
            np.float32
        )

    def to_dict(self) -> dict:
        """JSON-serializable form."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> FeatureNormalizer:
        """Inverse of ``to_dict``."""
        return cls(mean=np.asarray(d["mean"], dtype=np.float64), std=np.asarray(d["std"]))


@dataclass(frozen=True)
class ObservationScaling:
    """Running observation statistics applied on top of the built observation (SB3's
    ``VecNormalize``): ``clip((obs - mean) / sqrt(var + epsilon), -clip, clip)``. They are fitted
    during training and ship with the model, so evaluation and serving scale like training."""

    mean: np.ndarray
    """(D,) running mean of each observation entry."""
    var: np.ndarray
    """(D,) running variance of each observation entry."""
    clip: float = 10.0
    """Bound of the scaled observation."""
    epsilon: float = 1e-8
    """Added to the variance before the square root."""

    def apply(self, observations: np.ndarray) -> np.ndarray:
        """Scaled float32 copy of (..., D) observations."""
        z = (np.asarray(observations, np.float64) - self.mean) / np.sqrt(self.var + self.epsilon)
        return np.clip(z, -self.clip, self.clip).astype(np.float32)

    def to_dict(self) -> dict:
        """JSON-serializable form."""
        return {
            "mean": np.asarray(self.mean).tolist(),
            "var": np.asarray(self.var).tolist(),
            "clip": self.clip,
            "epsilon": self.epsilon,
        }

    @classmethod
    def from_dict(cls, d: dict) -> ObservationScaling:
        """Inverse of ``to_dict``."""
        return cls(
            mean=np.asarray(d["mean"], dtype=np.float64),
            var=np.asarray(d["var"], dtype=np.float64),
            clip=float(d["clip"]),
            epsilon=float(d["epsilon"]),
        )


@dataclass(frozen=True)
class PortfolioState:
    """Account state the observation needs; arrays may carry a leading batch axis."""

    weights: np.ndarray
    """(N,) signed position notional at mark / equity."""
    unrealized_pnl: np.ndarray
    """(N,) unrealized PnL at mark / equity."""
    entry_basis: np.ndarray
    """(N,) quantity-weighted basis at entry (fraction, 0 when flat)."""
    equity_ratio: float | np.ndarray
    """Equity / initial equity."""
    margin_ratio: float | np.ndarray
    """Maintenance margin / equity (0 when flat, 1 at liquidation)."""
    distance_to_liquidation: float | np.ndarray
    """(Equity - maintenance margin) / gross notional, clipped to [0, 1]; 1 when flat."""
    hours_to_funding: np.ndarray
    """(N,) hours until each asset's next funding settlement."""

    @classmethod
    def flat(cls, n_assets: int, hours_to_funding: np.ndarray | None = None) -> PortfolioState:
        """No positions, equity ratio 1 (serving starts from this)."""
        zeros = np.zeros(n_assets)
        htf = zeros if hours_to_funding is None else np.asarray(hours_to_funding, dtype=float)
        return cls(zeros, zeros, zeros, 1.0, 0.0, 1.0, htf)

    def vector(self) -> np.ndarray:
        """Unclipped portfolio part of the observation (..., 4N + 3), float64."""
        w = np.asarray(self.weights)
        out = np.empty((*w.shape[:-1], 4 * w.shape[-1] + 3))
        self.write(out)
        return out

    def write(self, out: np.ndarray) -> None:
        """Write ``vector()`` into ``out`` (..., 4N + 3) without intermediate arrays."""
        n = (out.shape[-1] - 3) // 4
        out[..., :n] = self.weights
        out[..., n : 2 * n] = self.unrealized_pnl
        np.multiply(self.entry_basis, _BASIS_SCALE, out=out[..., 2 * n : 3 * n])
        np.divide(self.hours_to_funding, _FUNDING_HOURS_SCALE, out=out[..., 3 * n : 4 * n])
        np.log(self.equity_ratio, out=out[..., 4 * n])
        out[..., 4 * n + 1] = self.margin_ratio
        out[..., 4 * n + 2] = self.distance_to_liquidation


class ObservationBuilder:
    """Builds the flat observation from raw features and the portfolio state."""

    def __init__(
        self,
        feature_names: tuple[str, ...] | list[str],
        n_assets: int,
        window: int,
        normalizer: FeatureNormalizer,
        clip: float = 10.0,
    ):
        if window < 1:
            raise ValueError("window must be >= 1")
        self.feature_names = tuple(feature_names)
        self.n_assets, self.window, self.normalizer, self.clip = n_assets, window, normalizer, clip
        self.n_window = window * n_assets * len(self.feature_names)
        self.n_portfolio = 4 * n_assets + 3
        self.observation_space = gym.spaces.Box(
            -clip, clip, (self.n_window + self.n_portfolio,), np.float32
        )
        self._offsets = np.arange(-window + 1, 1)
        self._bounds = np.array(-clip), np.array(clip)  # 0-d: cheaper operands than floats

    def normalize(self, features: np.ndarray) -> np.ndarray:
        """Normalize a whole (T, N, F) array once (element-wise, so windows can be sliced)."""
        return self.normalizer.transform(features, self.clip)

    def build(self, features: np.ndarray, t: int, portfolio: PortfolioState) -> np.ndarray:
        """Observation at the close of bar ``t`` from raw (T, N, F) features (rows <= t only)."""
        self._check_t(t)
        return self._assemble(self.normalize(features[t - self.window + 1 : t + 1]), portfolio)

    def build_batch(
        self, normalized: np.ndarray, t: np.ndarray, portfolio: PortfolioState
    ) -> np.ndarray:
        """(B, D) observations at bars ``t`` (B,) from normalized features and a batched state."""
        if len(t) == 1:  # a slice is much cheaper than a gather
            t0 = int(t[0])
            return self._assemble(normalized[None, t0 - self.window + 1 : t0 + 1], portfolio)
        return self._assemble(normalized[t[:, None] + self._offsets], portfolio)

    def _assemble(self, rows: np.ndarray, portfolio: PortfolioState) -> np.ndarray:
        """Flatten the (..., window, N, F) rows and append the clipped portfolio vector."""
        lead = rows.shape[:-3]
        out = np.empty((*lead, self.n_window + self.n_portfolio), np.float32)
        out[..., : self.n_window] = rows.reshape(*lead, self.n_window)
        part = np.empty((*lead, self.n_portfolio))  # float64, cast once: ufuncs that cast are slow
        portfolio.write(part)
        np.minimum(part, self._bounds[1], out=part)
        np.maximum(part, self._bounds[0], out=part)
        out[..., self.n_window :] = part  # rounding is monotone: same as clipping in float32
        return out

    def _check_t(self, t: int) -> None:
        if t < self.window - 1:
            raise ValueError(f"bar {t} has fewer than window={self.window} bars of history")

    def to_dict(self) -> dict:
        """JSON-serializable form (serving rebuilds the builder from it)."""
        return {
            "feature_names": list(self.feature_names),
            "n_assets": self.n_assets,
            "window": self.window,
            "clip": self.clip,
            "normalizer": self.normalizer.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> ObservationBuilder:
        """Inverse of ``to_dict``."""
        return cls(
            d["feature_names"],
            d["n_assets"],
            d["window"],
            FeatureNormalizer.from_dict(d["normalizer"]),
            d["clip"],
        )
